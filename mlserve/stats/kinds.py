"""The registry of metric kinds: what the engine knows how to compare.

A kind turns the looks of a snapshot into one metric's :class:`~mlserve.stats.evidence.Track`
(always-valid evidence at every look): it picks the metric's counts or histograms out of the
looks and hands them to the analysis' test unit (:class:`~mlserve.stats.evidence.Evidence`,
per request or per interval), so every kind works with either unit. The engine asks the registry for the kind of every
metric in the family, so adding a kind is one object registered here (and its section in
docs/statistics.md); its name must also be accepted by the manifest's ``MetricKind``
(``tests/stats/test_kinds.py`` says so when it is not).

Today's kinds: ``error_rate`` (errors per request), ``ratio`` (a custom numerator over a
denominator, e.g. conversions per user), ``latency`` (a quantile, from histogram
buckets) and ``prediction`` (the share of positive predictions, either way, from the
gateway's or the drift collector's prediction counts). The shadow agreement gate is not a comparison between arms but a one-sample test
of the agreement rate; it lives beside these in :mod:`mlserve.stats.agreement`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from mlserve.errors import UsageError
from mlserve.stats.evidence import Array, Counts, Evidence, Histograms, Track, absent
from mlserve.stats.prediction import UNIT as PREDICTION_UNIT
from mlserve.stats.prediction import prediction_track
from mlserve.stats.snapshot import VariantStats
from mlserve.stats.spec import MetricSpec


@dataclass(frozen=True)
class LookData:
    """The snapshot's looks as arrays (one entry per look), built once per analysis."""

    baseline: tuple[VariantStats, ...]
    candidate: tuple[VariantStats, ...]
    requests_b: Array
    requests_c: Array
    errors_b: Array
    errors_c: Array
    traffic: NDArray[np.bool_]  # both arms have requests
    regime: Array  # the candidate's configured share, rounded: intervals of one split

    @property
    def looks(self) -> int:
        return len(self.baseline)


class MetricKind(Protocol):
    name: str
    unit: str  # of the metric's values, for display (see mlserve.format.value)
    shadow: bool  # meaningful on mirrored traffic (nobody sees a mirror's answers)

    def track(self, spec: MetricSpec, data: LookData, evidence: Evidence) -> Track: ...

    def better(self, spec: MetricSpec) -> str: ...


class ErrorRate:
    name = "error_rate"
    unit = "errors/request"
    shadow = True

    def track(self, spec: MetricSpec, data: LookData, evidence: Evidence) -> Track:
        counts = Counts(data.errors_b, data.requests_b, data.errors_c, data.requests_c, self.unit)
        return evidence.counts(spec, data.traffic, counts, data.regime)

    def better(self, spec: MetricSpec) -> str:
        return spec.better


class Ratio:
    name = "ratio"
    unit = "per unit"
    shadow = False

    def track(self, spec: MetricSpec, data: LookData, evidence: Evidence) -> Track:
        n = spec.name
        has = np.array(
            [n in b.custom and n in c.custom for b, c in zip(data.baseline, data.candidate, strict=True)], dtype=bool
        )
        num_b = np.array([b.custom[n].numerator if n in b.custom else 0.0 for b in data.baseline])
        den_b = np.array([b.custom[n].denominator if n in b.custom else 0.0 for b in data.baseline])
        num_c = np.array([c.custom[n].numerator if n in c.custom else 0.0 for c in data.candidate])
        den_c = np.array([c.custom[n].denominator if n in c.custom else 0.0 for c in data.candidate])
        present = has & (den_b > 0) & (den_c > 0)
        return evidence.counts(spec, present, Counts(num_b, den_b, num_c, den_c, self.unit), data.regime)

    def better(self, spec: MetricSpec) -> str:
        return spec.better


class Latency:
    name = "latency"
    unit = "s"
    shadow = True

    def track(self, spec: MetricSpec, data: LookData, evidence: Evidence) -> Track:
        vb, vc = data.baseline, data.candidate
        has = np.array([b.latency is not None and c.latency is not None for b, c in zip(vb, vc, strict=True)])
        first = next((i for i in range(data.looks) if has[i]), None)
        if first is None:
            return absent(spec, data.looks)
        hist = vb[first].latency
        assert hist is not None
        le = np.asarray(hist.le, dtype=float)
        empty = (0,) * len(le)
        base_cum = np.array([b.latency.counts if b.latency is not None else empty for b in vb], dtype=float)
        cand_cum = np.array([c.latency.counts if c.latency is not None else empty for c in vc], dtype=float)
        return evidence.latency(spec, has & data.traffic, Histograms(base_cum, cand_cum, le), data.regime)

    def better(self, spec: MetricSpec) -> str:
        return "lower"


class Prediction:
    """The candidate's share of positive predictions against the control's, within a factor
    either way (:mod:`mlserve.stats.prediction`). Its counts are the look's custom ratio under
    the metric's name: positive predictions over predictions, which :mod:`mlserve.metrics`
    reads from ``mlserve_predictions_total`` when the look request names the metric."""

    name = "prediction"
    unit = PREDICTION_UNIT
    shadow = False  # a shadow step's looks collect no prediction counts

    def track(self, spec: MetricSpec, data: LookData, evidence: Evidence) -> Track:
        n = spec.name

        def counts(arm: tuple[VariantStats, ...], part: str) -> Array:
            return np.array([float(getattr(x.custom[n], part)) if n in x.custom else 0.0 for x in arm])

        pos_b, n_b = counts(data.baseline, "numerator"), counts(data.baseline, "denominator")
        pos_c, n_c = counts(data.candidate, "numerator"), counts(data.candidate, "denominator")
        present = (n_b > 0) & (n_c > 0)
        return prediction_track(spec, present, Counts(pos_b, n_b, pos_c, n_c, self.unit), data.regime, evidence)

    def better(self, spec: MetricSpec) -> str:
        return "equal"  # a change either way beyond the margin fails


KINDS: dict[str, MetricKind] = {}


def register(kind: MetricKind) -> MetricKind:
    KINDS[kind.name] = kind
    return kind


def kind_of(spec: MetricSpec) -> MetricKind:
    try:
        return KINDS[spec.kind]
    except KeyError:
        raise UsageError(
            f"metric {spec.name!r}: unknown kind {spec.kind!r} (known: {', '.join(sorted(KINDS))})"
        ) from None


def shadow_kinds() -> tuple[str, ...]:
    return tuple(name for name, kind in KINDS.items() if kind.shadow)


for _kind in (ErrorRate(), Ratio(), Latency(), Prediction()):
    register(_kind)
