"""Drift summaries: per endpoint and variant, fixed-bin histograms of the inputs a model
receives and the predictions it returns, over a sliding window. The local gateway feeds them
from its request path, the Kubernetes drift collector (:mod:`mlserve.monitoring.collector`)
from the serving platform's payload logger.

Only counts are kept, never payloads: each answered request (HTTP 200) adds its rows to
the bins of the current sub-window (a ring of ``slots`` sub-windows spanning ``window``
seconds), so the window slides by dropping whole sub-windows, at a cost of a few list
increments per row. Bin edges come from the reference profile named in the manifest
(written by ``mlserve profile``) or, with ``reference = "baseline"``, are learned from the
baseline's first ``reference_size`` answered rows (kept in memory only until then).
Predictions are compared with the profile's prediction section when it has one, else with a
reference learned the same way from the baseline.

Statistics are computed when Prometheus scrapes (:class:`DriftCollector`), not per request:
``mlserve_drift_psi``, ``mlserve_drift_jensen_shannon``, ``mlserve_drift_wasserstein``
(reference standard deviations) and ``mlserve_drift_p_value`` (chi-square, only where the
window allows it), labelled ``endpoint, variant, feature, kind`` (``kind`` is ``input`` or
``prediction``), exported once a variant's window holds ``min_samples`` rows (or predictions);
``mlserve_drift_window_samples{endpoint,variant,kind}`` always. The counter
``mlserve_predictions_total{endpoint,variant,class}`` (``positive`` when the prediction is
above ``positive_threshold``) is the sufficient statistic of the prediction rollout gate.
"""

from __future__ import annotations

import json
import math
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlserve.monitoring.profile import FeatureProfile, Profile, ProfileError, load_profile, summarise, v2_rows

MAX_ROWS_PER_REQUEST = 4096  # a larger batch is summarised by its first rows


class MonitorConfigError(ValueError):
    """The gateway config's ``monitoring`` block is invalid; the message names the key."""


@dataclass(frozen=True)
class MonitorConfig:
    """``endpoints.NAME.monitoring`` of the gateway config (from the manifest's table)."""

    profile: Path | None = None  # None: learn the reference from the baseline's traffic
    window: float = 300.0
    slots: int = 30
    min_samples: int = 200
    reference_size: int = 1000
    positive_threshold: float = 0.5
    output: str | None = None  # the V2 output to watch (default: the first)
    bins: int = 10

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": str(self.profile) if self.profile else None,
            "window": self.window,
            "slots": self.slots,
            "min_samples": self.min_samples,
            "reference_size": self.reference_size,
            "positive_threshold": self.positive_threshold,
            "output": self.output,
            "bins": self.bins,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str, base_dir: Path | None = None) -> MonitorConfig:
        if not isinstance(data, Mapping):
            raise MonitorConfigError(f"{where}: must be an object")
        allowed = {
            "profile",
            "window",
            "slots",
            "min_samples",
            "reference_size",
            "positive_threshold",
            "output",
            "bins",
        }
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise MonitorConfigError(f"{where}.{unknown[0]}: unknown key")

        def num(key: str, default: float, lo: float, hi: float, integer: bool = False) -> float:
            v = data.get(key, default)
            ok = not isinstance(v, bool) and isinstance(v, int if integer else int | float)
            if not ok or not lo <= v <= hi:
                kind = "an integer" if integer else "a number"
                raise MonitorConfigError(f"{where}.{key}: must be {kind} between {lo:g} and {hi:g} (got {v!r})")
            return float(v)

        profile = data.get("profile")
        if profile is not None and (not isinstance(profile, str) or not profile):
            raise MonitorConfigError(f"{where}.profile: must be a file path or null")
        path = None if profile is None else Path(profile)
        if path is not None and not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        output = data.get("output")
        if output is not None and (not isinstance(output, str) or not 0 < len(output) <= 64):
            raise MonitorConfigError(f"{where}.output: must be an output name (got {output!r})")
        return cls(
            profile=path,
            window=num("window", 300.0, 1.0, 7 * 86400.0),
            slots=int(num("slots", 30, 1, 600, integer=True)),
            min_samples=int(num("min_samples", 200, 1, 10**9, integer=True)),
            reference_size=int(num("reference_size", 1000, 10, 10**7, integer=True)),
            positive_threshold=num("positive_threshold", 0.5, -1e12, 1e12),
            output=output,
            bins=int(num("bins", 10, 2, 64, integer=True)),
        )


# ---------------------------------------------------------------------------
# One endpoint's window
# ---------------------------------------------------------------------------


class _Ring:
    """Flat bin counts per sub-window; slot ``i % n`` holds sub-window ``i`` (time // width)."""

    def __init__(self, n: int, width: float, size: int) -> None:
        self.n = n
        self.width = width
        self.size = size
        self.stamps = [-1] * n
        self.counts = [[0] * size for _ in range(n)]
        self.rows = [0] * n

    def slot(self, now: float) -> int:
        i = int(now // self.width)
        pos = i % self.n
        if self.stamps[pos] != i:
            self.stamps[pos] = i
            self.counts[pos] = [0] * self.size
            self.rows[pos] = 0
        return pos

    def total(self, now: float) -> tuple[list[int], int]:
        i = int(now // self.width)
        out = [0] * self.size
        rows = 0
        for pos in range(self.n):
            if i - self.n < self.stamps[pos] <= i:
                c = self.counts[pos]
                for k in range(self.size):
                    out[k] += c[k]
                rows += self.rows[pos]
        return out, rows


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # input | prediction
    samples: int
    psi: float
    jensen_shannon: float
    wasserstein: float
    p_value: float | None


class EndpointMonitor:
    """The drift state of one endpoint (all its variants); fed from the event loop only."""

    def __init__(
        self,
        endpoint: str,
        variants: Sequence[str],
        baseline: str,
        config: MonitorConfig,
        profile: Profile | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.variants = list(variants)
        self.baseline = baseline
        self.config = config
        self.clock = clock
        self.inputs: tuple[FeatureProfile, ...] | None = profile.features if profile else None
        self.prediction: FeatureProfile | None = profile.prediction if profile else None
        self.width: int | None = len(self.inputs) if self.inputs else None
        # reference learning from the baseline (raw values in memory until reference_size rows)
        self._learn_inputs: list[list[float]] | None = None if self.inputs else []
        self._learn_pred: list[float] | None = None if self.prediction else []
        self.positives = dict.fromkeys(self.variants, 0)
        self.negatives = dict.fromkeys(self.variants, 0)
        self.skipped: dict[tuple[str, str], int] = {}
        self._layout()

    # -- bins: one ring of flat input bins and one of prediction bins per variant ------

    def _layout(self) -> None:
        width = self.config.window / self.config.slots
        self.offsets: list[int] = []
        size = 0
        for f in self.inputs or ():
            self.offsets.append(size)
            size += f.size
        self.edges = [list(f.edges) for f in self.inputs or ()]
        self.pred_edges = list(self.prediction.edges) if self.prediction else None
        old_in = getattr(self, "in_rings", {})
        old_pred = getattr(self, "pred_rings", {})
        # a ring is rebuilt only when its reference changed (learned), so windows already
        # counted on a loaded reference are kept
        self.in_rings: dict[str, _Ring] = {
            v: old_in[v] if v in old_in and old_in[v].size == size else _Ring(self.config.slots, width, size)
            for v in self.variants
        }
        psize = self.prediction.size if self.prediction else 0
        self.pred_rings: dict[str, _Ring] = {
            v: old_pred[v] if v in old_pred and old_pred[v].size == psize else _Ring(self.config.slots, width, psize)
            for v in self.variants
        }

    def set_variants(self, variants: Sequence[str]) -> None:
        """A reload added or removed versions: windows, references and prediction counts of
        the versions that stay are kept; a new one starts empty."""
        self.variants = list(variants)
        for v in self.variants:
            self.positives.setdefault(v, 0)
            self.negatives.setdefault(v, 0)
        self._layout()

    @property
    def ready(self) -> bool:
        return self.inputs is not None and self.prediction is not None

    def _skip(self, variant: str, reason: str) -> None:
        key = (variant, reason)
        self.skipped[key] = self.skipped.get(key, 0) + 1

    # -- the hot path ---------------------------------------------------------------

    def observe(self, variant: str, payload: Any, answer: bytes) -> None:
        """One answered request: its input rows and the predictions returned."""
        got = v2_rows(payload)
        rows = got[1][:MAX_ROWS_PER_REQUEST] if got else None
        preds = self._predictions(answer)
        if preds is not None:
            thr = self.config.positive_threshold
            pos = sum(1 for p in preds if p > thr)
            self.positives[variant] = self.positives.get(variant, 0) + pos
            self.negatives[variant] = self.negatives.get(variant, 0) + len(preds) - pos
        else:
            self._skip(variant, "output")
        if rows is None:
            self._skip(variant, "input")
        elif self.width is not None and len(rows[0]) != self.width:
            self._skip(variant, "width")
            rows = None
        if variant == self.baseline and (self._learn_inputs is not None or self._learn_pred is not None):
            self._learn(rows, preds)
        now = self.clock()
        if rows is not None and self.inputs is not None:
            ring = self.in_rings.get(variant)
            if ring is not None:
                pos_ = ring.slot(now)
                counts = ring.counts[pos_]
                offsets, edges = self.offsets, self.edges
                for row in rows:
                    for j, x in enumerate(row):
                        if x == x:  # NaN is skipped
                            counts[offsets[j] + bisect_right(edges[j], x)] += 1
                ring.rows[pos_] += len(rows)
        if preds is not None and self.pred_edges is not None:
            ring = self.pred_rings.get(variant)
            if ring is not None:
                pos_ = ring.slot(now)
                counts, pe = ring.counts[pos_], self.pred_edges
                for p in preds:
                    if p == p:
                        counts[bisect_right(pe, p)] += 1
                ring.rows[pos_] += len(preds)

    def _predictions(self, answer: bytes) -> list[float] | None:
        try:
            data = json.loads(answer)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        outputs = data.get("outputs") if isinstance(data, dict) else None
        if not isinstance(outputs, list) or not outputs:
            return None
        chosen = outputs[0]
        if self.config.output is not None:
            chosen = next((o for o in outputs if isinstance(o, dict) and o.get("name") == self.config.output), None)
        if not isinstance(chosen, dict):
            return None
        values = chosen.get("data")
        if not isinstance(values, list):
            return None
        if values and isinstance(values[0], list):
            values = [v for row in values for v in (row if isinstance(row, list) else [row])]
        shape = chosen.get("shape")
        try:
            flat = [float(v) for v in values[: MAX_ROWS_PER_REQUEST * 16]]
        except (TypeError, ValueError):
            return None
        # probabilities of two classes per row: the positive class is the last column
        if isinstance(shape, list) and len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 1:
            k = shape[1]
            flat = flat[k - 1 :: k]
        return flat

    def _learn(self, rows: list[list[float]] | None, preds: list[float] | None) -> None:
        need = self.config.reference_size
        if self._learn_inputs is not None and rows is not None:
            if self._learn_inputs and len(rows[0]) != len(self._learn_inputs[0]):
                return
            self._learn_inputs.extend(rows[: need - len(self._learn_inputs)])
        if self._learn_pred is not None and preds is not None:
            self._learn_pred.extend(preds[: need - len(self._learn_pred)])
        changed = False
        if self._learn_inputs is not None and len(self._learn_inputs) >= need:
            cols = list(zip(*self._learn_inputs, strict=True))
            self.inputs = tuple(summarise(f"input[{j}]", col, self.config.bins) for j, col in enumerate(cols))
            self.width = len(cols)
            self._learn_inputs = None
            changed = True
        if self._learn_pred is not None and len(self._learn_pred) >= need:
            self.prediction = summarise(self.config.output or "prediction", self._learn_pred, self.config.bins)
            self._learn_pred = None
            changed = True
        if changed:
            self._layout()  # the learned part's window starts here: earlier rows had no bins yet

    # -- at scrape time -------------------------------------------------------------

    def samples(self, variant: str) -> dict[str, int]:
        """Rows in the current window, per kind (input, prediction)."""
        now = self.clock()
        out = {}
        for kind, rings in (("input", self.in_rings), ("prediction", self.pred_rings)):
            ring = rings.get(variant)
            out[kind] = ring.total(now)[1] if ring is not None and ring.size else 0
        return out

    def drift(self, variant: str) -> list[FeatureDrift]:
        """Statistics per feature (and the prediction) whose window holds min_samples rows."""
        from mlserve.stats.drift import compare

        now = self.clock()
        out = []
        parts: list[tuple[FeatureProfile, list[int], str]] = []
        ring = self.in_rings.get(variant)
        if ring is not None and self.inputs is not None:
            counts, rows = ring.total(now)
            if rows >= self.config.min_samples:
                parts += [
                    (f, counts[off : off + f.size], "input") for f, off in zip(self.inputs, self.offsets, strict=True)
                ]
        pring = self.pred_rings.get(variant)
        if pring is not None and self.prediction is not None:
            counts, rows = pring.total(now)
            if rows >= self.config.min_samples:
                parts.append((self.prediction, counts, "prediction"))
        for f, cur, kind in parts:
            if sum(cur) == 0:
                continue
            s = compare(f.counts, cur, f.centres, f.std if f.std > 0 else math.nan)
            out.append(FeatureDrift(f.name, kind, s.samples, s.psi, s.jensen_shannon, s.wasserstein, s.chi2_p_value))
        return out


# ---------------------------------------------------------------------------
# Prometheus export
# ---------------------------------------------------------------------------


class DriftCollector:
    """A prometheus-client collector: statistics computed on every scrape, from the windows."""

    def __init__(self, monitors: Mapping[str, EndpointMonitor]) -> None:
        self.monitors = monitors

    def describe(self) -> list[Any]:
        return []  # computed on collect; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["endpoint", "variant", "feature", "kind"]
        fams = {
            "psi": GaugeMetricFamily(
                "mlserve_drift_psi", "Population stability index of the window against the reference", labels=labels
            ),
            "js": GaugeMetricFamily(
                "mlserve_drift_jensen_shannon",
                "Jensen-Shannon distance (base 2) of the window against the reference",
                labels=labels,
            ),
            "w": GaugeMetricFamily(
                "mlserve_drift_wasserstein",
                "Wasserstein-1 distance of the window from the reference, in reference standard deviations",
                labels=labels,
            ),
            "p": GaugeMetricFamily(
                "mlserve_drift_p_value",
                "Chi-square p-value of the window against the reference (only where the window allows the test)",
                labels=labels,
            ),
        }
        samples = GaugeMetricFamily(
            "mlserve_drift_window_samples",
            "Rows (inputs) or predictions in the drift window per endpoint and variant",
            labels=[*labels[:2], "kind"],
        )
        ready = GaugeMetricFamily(
            "mlserve_drift_reference_ready",
            "1 once the endpoint's drift references (inputs and prediction) are known: loaded, or learned",
            labels=["endpoint"],
        )
        preds = CounterMetricFamily(
            "mlserve_predictions", "Predictions returned per endpoint, variant and class", labels=[*labels[:2], "class"]
        )
        skipped = CounterMetricFamily(
            "mlserve_drift_skipped",
            "Answered requests whose input or output could not be summarised, by reason",
            labels=[*labels[:2], "reason"],
        )
        for ep, mon in self.monitors.items():
            ready.add_metric([ep], 1.0 if mon.ready else 0.0)
            for v in mon.variants:
                preds.add_metric([ep, v, "positive"], float(mon.positives.get(v, 0)))
                preds.add_metric([ep, v, "negative"], float(mon.negatives.get(v, 0)))
                for kind, n in mon.samples(v).items():
                    samples.add_metric([ep, v, kind], float(n))
                for s in mon.drift(v):
                    key = [ep, v, s.feature, s.kind]
                    fams["psi"].add_metric(key, s.psi)
                    fams["js"].add_metric(key, s.jensen_shannon)
                    if math.isfinite(s.wasserstein):
                        fams["w"].add_metric(key, s.wasserstein)
                    if s.p_value is not None:
                        fams["p"].add_metric(key, s.p_value)
            for (v, reason), n in sorted(mon.skipped.items()):
                skipped.add_metric([ep, v, reason], float(n))
        yield from fams.values()
        yield samples
        yield ready
        yield preds
        yield skipped


def build_monitors(endpoints: Mapping[str, Any]) -> dict[str, EndpointMonitor]:
    """Monitors for the gateway config's endpoints that opt in (``monitoring`` set); a
    missing or invalid profile raises ProfileError naming the file."""
    out: dict[str, EndpointMonitor] = {}
    for name, ep in endpoints.items():
        cfg: MonitorConfig | None = getattr(ep, "monitoring", None)
        if cfg is None:
            continue
        profile = load_profile(cfg.profile) if cfg.profile is not None else None
        out[name] = EndpointMonitor(name, list(ep.versions), ep.baseline, cfg, profile)
    return out


def rebuild_monitors(
    current: Mapping[str, EndpointMonitor], endpoints: Mapping[str, Any]
) -> dict[str, EndpointMonitor]:
    """The monitors for a reloaded gateway config. An endpoint whose ``monitoring`` and
    baseline are unchanged keeps its monitor (windows, learned references, prediction
    counts), with its versions brought up to date; any other gets a new one, which carries
    the prediction counts of the versions that stay over (counters never go back). Every
    profile is read before anything changes, so a ProfileError leaves ``current`` as it was."""
    plans: list[tuple[str, Any, MonitorConfig, EndpointMonitor | None, Profile | None]] = []
    for name, ep in endpoints.items():
        cfg: MonitorConfig | None = getattr(ep, "monitoring", None)
        if cfg is None:
            continue
        old = current.get(name)
        if old is not None and old.config == cfg and old.baseline == ep.baseline:
            plans.append((name, ep, cfg, old, None))
        else:
            plans.append((name, ep, cfg, None, load_profile(cfg.profile) if cfg.profile is not None else None))
    out: dict[str, EndpointMonitor] = {}
    for name, ep, cfg, kept, profile in plans:
        if kept is not None:
            if kept.variants != list(ep.versions):
                kept.set_variants(list(ep.versions))
            out[name] = kept
            continue
        mon = EndpointMonitor(name, list(ep.versions), ep.baseline, cfg, profile)
        before = current.get(name)
        if before is not None:
            for v in mon.variants:
                mon.positives[v] = before.positives.get(v, 0)
                mon.negatives[v] = before.negatives.get(v, 0)
        out[name] = mon
    return out


__all__ = [
    "DriftCollector",
    "EndpointMonitor",
    "FeatureDrift",
    "MonitorConfig",
    "MonitorConfigError",
    "ProfileError",
    "build_monitors",
    "rebuild_monitors",
]
