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
gateway's or the drift collector's prediction counts); for LLM endpoints ``ttft`` (time to
first token) and ``inter_token`` (a request's mean gap between tokens) at a quantile,
``tokens_per_second`` (a request's generation rate, higher is better) at a quantile, and
``stream_errors`` (streams broken off mid-way, per stream), read from the snapshot's ``llm``
field (:mod:`mlserve.stats.llm` says how each is tested and why its unit is the request,
never the token). The shadow agreement gate is not a comparison between arms but a
one-sample test of the agreement rate; it lives beside these in :mod:`mlserve.stats.agreement`.

Each kind also says how :mod:`mlserve.stats.power` plans it (``planned_as``: like errors on
the baseline's error rate, like a latency quantile, or not at all) and on which scale
(``oriented``: a kind compared through a transformation is planned on the same one).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from mlserve.errors import UsageError
from mlserve.stats import llm
from mlserve.stats.evidence import Array, Counts, Evidence, Histograms, Summary, Track, absent
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


PlannedAs = Literal["errors", "latency", ""]


class MetricKind(Protocol):
    name: str
    unit: str  # of the metric's values, for display (see mlserve.format.value)
    shadow: bool  # meaningful on mirrored traffic (nobody sees a mirror's answers)
    planned_as: PlannedAs  # how stats.power plans it ("": not planned)
    token_streams: bool  # read from an LLM endpoint's token streams (the snapshot's llm field)

    def track(self, spec: MetricSpec, data: LookData, evidence: Evidence) -> Track: ...

    def better(self, spec: MetricSpec) -> str: ...

    def oriented(self, spec: MetricSpec) -> MetricSpec:
        """The metric on the scale it is compared on (quantile and margin), for planning."""
        ...


class _AsIs:
    token_streams = False

    def oriented(self, spec: MetricSpec) -> MetricSpec:
        return spec


class ErrorRate(_AsIs):
    name = "error_rate"
    unit = "errors/request"
    shadow = True
    planned_as: PlannedAs = "errors"

    def track(self, spec: MetricSpec, data: LookData, evidence: Evidence) -> Track:
        counts = Counts(data.errors_b, data.requests_b, data.errors_c, data.requests_c, self.unit, share=True)
        return evidence.counts(spec, data.traffic, counts, data.regime)

    def better(self, spec: MetricSpec) -> str:
        return spec.better


class Ratio(_AsIs):
    name = "ratio"
    unit = "per unit"
    shadow = False
    planned_as: PlannedAs = ""  # no baseline rate to plan from

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


class Latency(_AsIs):
    name = "latency"
    unit = "s"
    shadow = True
    planned_as: PlannedAs = "latency"

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


def _no_token_streams(_j: int) -> Summary:
    return None, None, None, None, "s", "no token-stream histogram in the snapshot (an LLM endpoint's llm field)"


class _TokenStreamQuantile(_AsIs):
    """A quantile of a per-request histogram of the snapshot's ``llm`` field, compared like a
    latency. Mirrored streams are not measured token by token (the gateway times the streams
    it answers), so these kinds do not apply to a shadow."""

    name = ""
    unit = "s"
    shadow = False
    planned_as: PlannedAs = "latency"
    token_streams = True
    histogram = ""  # the key in the snapshot's llm histograms
    reciprocal = False  # compared on the histogram of 1/X (see :func:`llm.mirror`)

    def track(self, spec: MetricSpec, data: LookData, evidence: Evidence) -> Track:
        got = llm.histogram_input(self.histogram, data.baseline, data.candidate, reciprocal=self.reciprocal)
        if got is None:
            k = data.looks
            return Track(spec, np.zeros(k, dtype=bool), np.ones(k), np.ones(k), _no_token_streams)
        hists = Histograms(got.base_cum, got.cand_cum, got.le)
        track = evidence.latency(self.oriented(spec), got.present & data.traffic, hists, data.regime)
        return replace(track, spec=spec)

    def better(self, spec: MetricSpec) -> str:
        return "lower"


class Ttft(_TokenStreamQuantile):
    name = "ttft"
    histogram = "ttft_seconds"


class InterToken(_TokenStreamQuantile):
    name = "inter_token"
    histogram = "time_per_output_token_seconds"


class TokensPerSecond(_TokenStreamQuantile):
    """Compared as the latency of its reciprocal, seconds per token (:func:`llm.mirror`), and
    reported back in tokens per second."""

    name = "tokens_per_second"
    unit = "tokens/s"
    histogram = "tokens_per_second"
    reciprocal = True

    def track(self, spec: MetricSpec, data: LookData, evidence: Evidence) -> Track:
        track = super().track(spec, data, evidence)
        inner = track.summary
        return replace(track, summary=lambda j: llm.rate_summary(inner(j)))

    def better(self, spec: MetricSpec) -> str:
        return "higher"

    def oriented(self, spec: MetricSpec) -> MetricSpec:
        return llm.seconds_per_token(spec)


class StreamErrors(_AsIs):
    """Streams that broke off after their first tokens, per stream (a request's answer)."""

    name = "stream_errors"
    unit = "errors/request"
    shadow = False
    planned_as: PlannedAs = "errors"
    token_streams = True

    def track(self, spec: MetricSpec, data: LookData, evidence: Evidence) -> Track:
        present, xb, nb, xc, nc = llm.stream_counts(data.baseline, data.candidate)
        return evidence.counts(spec, present & data.traffic, Counts(xb, nb, xc, nc, self.unit, share=True), data.regime)

    def better(self, spec: MetricSpec) -> str:
        return "lower"


class Prediction(_AsIs):
    """The candidate's share of positive predictions against the control's, within a factor
    either way (:mod:`mlserve.stats.prediction`). Its counts are the look's custom ratio under
    the metric's name: positive predictions over predictions, which :mod:`mlserve.metrics`
    reads from ``mlserve_predictions_total`` when the look request names the metric."""

    name = "prediction"
    unit = PREDICTION_UNIT
    shadow = False  # a shadow step's looks collect no prediction counts
    planned_as: PlannedAs = ""  # a change either way: no one-sided plan from a baseline rate

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


def token_stream_kinds() -> tuple[str, ...]:
    """The kinds a look must read token-stream statistics for (LookRequest.token_streams)."""
    return tuple(name for name, kind in KINDS.items() if kind.token_streams)


for _kind in (ErrorRate(), Ratio(), Latency(), Ttft(), InterToken(), TokensPerSecond(), StreamErrors(), Prediction()):
    register(_kind)
