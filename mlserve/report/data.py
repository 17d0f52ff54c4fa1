"""The data every report shows, built from a run by :func:`mlserve.report.build.build_data`
(report.json is exactly :meth:`ReportData.to_dict`; the plots read it too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlserve.stats.engine import Result
from mlserve.status import Status, Verdict

REPORT_FORMAT = "mlserve.rollout-report/v1"


@dataclass(frozen=True)
class Summary:
    """The head of every report."""

    run_id: str
    endpoint: str
    env: str
    target: str | None
    baseline: str
    candidate: str
    strategy: str
    status: Status
    verdict: Verdict | None
    reason: str
    forced: bool
    started: str | None
    finished: str | None
    looks: int
    held_looks: int
    last_hold: dict[str, Any] | None
    alpha: float
    min_requests: int
    interval_seconds: float
    srm: dict[str, Any]
    agreement: dict[str, Any] | None
    # what the candidate was compared with: a control arm's name, or None for the primary
    control: str | None = None
    control_mode: str = "primary"  # the policy's control key: replica | primary
    test_unit: str = ""  # request | interval
    # every arm's own figures at the latest analysis (the primary's health is shown here)
    arms: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["arms"] = list(self.arms)
        if self.control is None and not self.test_unit and not self.arms:
            # a run recorded before the control arm existed: its report as it was written
            for key in ("control", "control_mode", "test_unit", "arms"):
                out.pop(key)
        return out


@dataclass(frozen=True)
class StepRow:
    step: int
    phase: str
    weights: dict[str, int]
    shadow_percent: int
    looks: int
    held: int
    requests: dict[str, int]
    errors: dict[str, int]
    verdict: Verdict | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ReportData:
    """Everything the reports show (report.json is exactly ``to_dict``)."""

    summary: Summary
    metrics: tuple[Result, ...]
    steps: tuple[StepRow, ...]
    timeline: list[dict[str, Any]]
    weights: list[dict[str, Any]]  # [{"t": seconds since start, "weights": {...}}]
    history: list[dict[str, Any]]  # per look: {"t", "step", "look", "at", "verdict", "metrics": [...]}
    histograms: dict[str, dict[str, Any]]  # variant -> latency_seconds (cumulative over the run)
    gpu: dict[str, dict[str, float]]
    load: dict[str, Any] | None
    queries: list[dict[str, Any]] = field(default_factory=list)  # per look: {"step", "look", "queries"}
    # LLM shadows: a few (routed, mirrored) generation pairs, redacted and truncated by the gateway
    shadow_samples: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": REPORT_FORMAT,
            "summary": self.summary.to_dict(),
            "metrics": [m.to_dict() for m in self.metrics],
            "steps": [st.to_dict() for st in self.steps],
            "timeline": self.timeline,
            "weights": self.weights,
            "looks": self.history,
            "latency_histograms": self.histograms,
            "gpu": self.gpu,
            "load": self.load,
            "queries": self.queries,
        }
        if self.shadow_samples:  # only LLM shadows have them
            out["shadow_samples"] = [dict(x) for x in self.shadow_samples]
        return out
