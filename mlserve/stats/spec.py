"""What an analysis is asked: the metric family, its margins and the error rates.

These frozen dataclasses are the only configuration the statistics take. They are built
from the manifest's ``[endpoints.NAME.rollout]`` table outside ``stats``
(:func:`mlserve.manifest.analysis.analysis_spec`), so the statistics never see a pydantic
model, and a batch comparison or a monitor can build one from anything else. Standard
library only: the manifest imports :class:`Margin` from here at every CLI start.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Better = Literal["lower", "higher"]
OnInconclusive = Literal["rollback", "promote", "hold"]
# what one piece of evidence is: a request (independent trials) or an interval (one bet per
# look, valid when the requests of an interval are dependent); see mlserve.stats.evidence.UNITS
TestUnit = Literal["request", "interval"]


@dataclass(frozen=True)
class Margin:
    """A non-inferiority margin: absolute (in the metric's unit) or relative to the baseline."""

    value: float
    relative: bool

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the family. ``kind`` names an entry of :data:`mlserve.stats.kinds.KINDS`."""

    name: str
    kind: str
    margin: Margin = Margin(0.0, relative=False)
    critical: bool = False
    better: Better = "lower"
    quantile: float | None = None  # latency kinds: the quantile compared


@dataclass(frozen=True)
class AnalysisSpec:
    """The family of metrics and the error rates of one comparison."""

    metrics: tuple[MetricSpec, ...]
    alpha: float = 0.05
    min_requests: int = 200
    srm_p_value: float = 0.001
    # a candidate whose error share in a step reaches this (over at least
    # mlserve.stats.engine.HARD_FAILURE_MIN_REQUESTS requests, its comparison arm below half of
    # it) is rolled back at once, without waiting for the sequential tests (see hard_failures)
    max_error_rate: float = 0.5
    on_inconclusive: OnInconclusive = "rollback"
    shadow_agreement: float = 0.99  # shadow: least share of agreeing predictions (0: gate off)
    # None: "interval" when the snapshot compares the candidate with a concurrent control,
    # "request" otherwise (see mlserve.stats.evidence.unit_name)
    test_unit: TestUnit | None = None
    # interval tests: the looks their stakes are planned for (the policy's max_duration / interval)
    horizon: float = 60.0

    def only(self, kinds: tuple[str, ...]) -> AnalysisSpec:
        """The same spec restricted to metrics of the given kinds (all of them when none match)."""
        kept = tuple(m for m in self.metrics if m.kind in kinds)
        return replace(self, metrics=kept) if kept else self
