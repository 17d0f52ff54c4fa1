"""Snapshot + analysis spec -> verdict, look by look, in one pass over all looks.

At every look, in this order: a critical metric that fails rolls back (even with a
sample-ratio mismatch: a crashing candidate itself skews the split); a sample-ratio
mismatch halts (the data cannot be trusted); a metric that shows the candidate worse than
the baseline beyond its margin, with always-valid evidence after Holm's correction across
the metric family, rolls back; every metric non-inferior within its margin with
always-valid evidence, both variants at ``min_requests`` or more, promotes (unless the
caller says promotion is not allowed yet); otherwise the rollout continues. The first
decisive look wins, so replaying a snapshot gives the decision a live rollout would have
taken at that look. Missing data is never a pass.

``harm_first`` is for a step that was made to wait (a minimum duration, an A/B horizon):
a promote found at an earlier look must not hide harm found later, so a rollback or halt
at any look wins over an earlier promote. Both answers come from the same pass.

The metric family is dispatched through the registry of :mod:`mlserve.stats.kinds`, each
kind on the spec's test unit (:data:`mlserve.stats.evidence.UNITS`: per request or per
interval).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlserve import format as fmt
from mlserve.stats.agreement import AgreementResult
from mlserve.stats.evidence import Array, Track, evidence_for, increments
from mlserve.stats.kinds import LookData, kind_of
from mlserve.stats.multiple import holm_columns, holm_weight
from mlserve.stats.snapshot import Snapshot
from mlserve.stats.spec import AnalysisSpec
from mlserve.stats.srm import chisquare_p_values, srm_p_values, srm_p_values_after_retries, srm_p_values_arms
from mlserve.status import Verdict


@dataclass(frozen=True)
class MetricResult:
    name: str
    kind: str
    verdict: str  # pass | fail | inconclusive | no_data
    estimate: float | None  # relative change of the candidate vs the baseline
    ci: tuple[float | None, float | None]  # confidence sequence for the estimate, at 1 - alpha
    p_value: float | None  # always-valid p for "worse beyond the margin"
    p_value_holm: float | None
    p_value_pass: float | None  # always-valid p for "not non-inferior"
    baseline: float | None  # the metric's value for each variant, in its unit
    candidate: float | None
    unit: str
    margin: str
    critical: bool
    better: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "verdict": self.verdict,
            "estimate": _clean(self.estimate),
            "ci": [_clean(self.ci[0]), _clean(self.ci[1])],
            "p_value": _clean(self.p_value),
            "p_value_holm": _clean(self.p_value_holm),
            "p_value_pass": _clean(self.p_value_pass),
            "baseline": _clean(self.baseline),
            "candidate": _clean(self.candidate),
            "unit": self.unit,
            "margin": self.margin,
            "critical": self.critical,
            "better": self.better,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricResult:
        ci = data.get("ci") or [None, None]
        return cls(
            name=str(data["name"]),
            kind=str(data.get("kind", "")),
            verdict=str(data.get("verdict", "no_data")),
            estimate=data.get("estimate"),
            ci=(ci[0], ci[1]),
            p_value=data.get("p_value"),
            p_value_holm=data.get("p_value_holm"),
            p_value_pass=data.get("p_value_pass"),
            baseline=data.get("baseline"),
            candidate=data.get("candidate"),
            unit=str(data.get("unit", "")),
            margin=str(data.get("margin", "")),
            critical=bool(data.get("critical", False)),
            better=str(data.get("better", "lower")),
            note=str(data.get("note", "")),
        )


# what a decision lists per metric: the comparisons, and the shadow gate on agreement
Result = MetricResult | AgreementResult


def result_from_dict(data: Mapping[str, Any]) -> Result:
    if data.get("kind") == "agreement":
        return AgreementResult.from_dict(data)
    return MetricResult.from_dict(data)


@dataclass(frozen=True)
class SrmResult:
    p_value: float | None
    ok: bool
    candidate_share: float | None = None
    expected_share: float | None = None
    chi2_p_value: float | None = None  # fixed-sample diagnostic (not valid across looks)
    # with a control arm: every arm's observed and configured share of the step's requests
    arms: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "p_value": _clean(self.p_value),
            "ok": self.ok,
            "candidate_share": _clean(self.candidate_share),
            "expected_share": _clean(self.expected_share),
            "chi2_p_value": _clean(self.chi2_p_value),
        }
        if self.arms:
            out["arms"] = {k: {"share": _clean(a), "expected": _clean(b)} for k, (a, b) in self.arms.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SrmResult:
        d = data or {}
        arms = {str(k): (v.get("share"), v.get("expected")) for k, v in dict(d.get("arms") or {}).items()}
        return cls(
            d.get("p_value"), bool(d.get("ok", True)), d.get("candidate_share"), d.get("expected_share"),
            d.get("chi2_p_value"), arms,
        )  # fmt: skip


@dataclass(frozen=True)
class ArmHealth:
    """One arm's own figures at the reported look: the primary is watched this way (it is no
    comparison arm when there is a control), and the control and the candidate are shown beside it."""

    name: str
    role: str  # primary | control | candidate
    version: str
    requests: int
    errors: int
    error_rate: float | None
    p50: float | None  # seconds, interpolated from the arm's histogram
    p99: float | None
    weight: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "role": self.role, "version": self.version, "requests": self.requests,
            "errors": self.errors, "error_rate": _clean(self.error_rate), "p50": _clean(self.p50),
            "p99": _clean(self.p99), "weight": _clean(self.weight),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ArmHealth:
        return cls(
            str(d.get("name", "")), str(d.get("role", "")), str(d.get("version", "")), int(d.get("requests") or 0),
            int(d.get("errors") or 0), d.get("error_rate"), d.get("p50"), d.get("p99"), d.get("weight"),
        )  # fmt: skip


@dataclass(frozen=True)
class Decision:
    """What one analysis decided, as a rollout records it (the projection of an :class:`Analysis`
    without the replay context). A held look is a decision too: the evidence so far, no verdict."""

    verdict: Verdict
    reason: str
    decided_at_look: int | None = None
    metrics: tuple[Result, ...] = ()
    srm: SrmResult = SrmResult(None, True)
    requests: Mapping[str, int] = field(default_factory=dict)
    agreement: AgreementResult | None = None
    arms: tuple[ArmHealth, ...] = ()  # every arm's own figures (the primary's health)
    compared_with: str = ""  # the arm the candidate was compared with (the control, or the primary)
    test_unit: str = ""  # what one piece of evidence was: request | interval

    def to_dict(self) -> dict[str, Any]:
        metrics = [m.to_dict() for m in self.metrics]
        if self.verdict is Verdict.HELD:
            return {"verdict": self.verdict, "reason": self.reason, "metrics": metrics}
        out = {
            "verdict": self.verdict,
            "reason": self.reason,
            "decided_at_look": self.decided_at_look,
            "metrics": metrics,
            "srm": self.srm.to_dict(),
            "requests": dict(self.requests),
            "agreement": self.agreement.to_dict() if self.agreement is not None else None,
        }
        if self.arms:
            out.update(arms=[a.to_dict() for a in self.arms], compared_with=self.compared_with)
        if self.test_unit:
            out["test_unit"] = self.test_unit
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        agreement = data.get("agreement")
        return cls(
            verdict=Verdict(str(data["verdict"])),
            reason=str(data.get("reason", "")),
            decided_at_look=data.get("decided_at_look"),
            metrics=tuple(result_from_dict(m) for m in data.get("metrics", ())),
            srm=SrmResult.from_dict(data.get("srm")),
            requests={str(k): int(v) for k, v in dict(data.get("requests") or {}).items()},
            agreement=AgreementResult.from_dict(agreement) if agreement else None,
            arms=tuple(ArmHealth.from_dict(a) for a in data.get("arms") or ()),
            compared_with=str(data.get("compared_with") or ""),
            test_unit=str(data.get("test_unit") or ""),
        )

    def held(self, reason: str) -> Decision:
        """A held look keeps the evidence shown so far and says why there is no verdict."""
        return Decision(Verdict.HELD, reason, metrics=self.metrics, arms=self.arms, compared_with=self.compared_with)


@dataclass(frozen=True)
class Analysis:
    """The engine's answer for a snapshot: the verdict and everything it rests on."""

    snapshot: str
    verdict: Verdict
    decided_at_look: int | None
    reason: str
    srm: SrmResult
    metrics: tuple[Result, ...]
    endpoint: str = ""
    baseline: str = ""
    candidate: str = ""
    looks: int = 0
    reported_look: int = 0
    requests: Mapping[str, int] = field(default_factory=dict)
    policy: str = "defaults"
    alpha: float = 0.05
    agreement: AgreementResult | None = None
    control: str | None = None  # the control arm the candidate was compared with (None: the primary)
    arms: tuple[ArmHealth, ...] = ()
    test_unit: str = "request"

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    @property
    def compared_with(self) -> str:
        return self.control or self.baseline

    @property
    def decision(self) -> Decision:
        """The decision as a rollout records it: values as JSON holds them (an open interval
        end or an undefined value is None), so a decision reads the same live and reloaded."""
        return Decision(
            self.verdict,
            self.reason,
            self.decided_at_look,
            tuple(result_from_dict(m.to_dict()) for m in self.metrics),
            SrmResult.from_dict(self.srm.to_dict()),
            dict(self.requests),
            self.agreement,
            tuple(ArmHealth.from_dict(a.to_dict()) for a in self.arms),
            self.compared_with if self.control else "",
            self.test_unit,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "snapshot": self.snapshot,
            "verdict": self.verdict,
            "decided_at_look": self.decided_at_look,
            "reason": self.reason,
            "srm": self.srm.to_dict(),
            "metrics": [m.to_dict() for m in self.metrics],
            "endpoint": self.endpoint,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "looks": self.looks,
            "reported_look": self.reported_look,
            "requests": dict(self.requests),
            "policy": self.policy,
            "alpha": self.alpha,
        }
        if self.agreement is not None:
            out["agreement"] = self.agreement.to_dict()
        out["test_unit"] = self.test_unit
        if self.control:
            out["control"] = self.control
        if self.arms:
            out["arms"] = [a.to_dict() for a in self.arms]
        return out


def _clean(value: float | None) -> float | None:
    """JSON has no inf/nan: open interval ends and undefined values become null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


# ---------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------


def look_data(snapshot: Snapshot) -> tuple[LookData, Array, Array]:
    """The looks as arrays, and the configured weights of the arm the candidate is compared
    with (the control when the snapshot has one, else the primary) and of the candidate."""
    looks = snapshot.looks
    base, cand = snapshot.reference, snapshot.candidate
    vb = tuple(look.variants[base] for look in looks)
    vc = tuple(look.variants[cand] for look in looks)
    req_b = np.array([v.requests for v in vb], dtype=float)
    req_c = np.array([v.requests for v in vc], dtype=float)
    w_b = np.array([look.weights[base] for look in looks], dtype=float)
    w_c = np.array([look.weights[cand] for look in looks], dtype=float)
    share = w_c / np.where(w_b + w_c > 0, w_b + w_c, 1.0)
    data = LookData(
        baseline=vb,
        candidate=vc,
        requests_b=req_b,
        requests_c=req_c,
        errors_b=np.array([v.errors for v in vb], dtype=float),
        errors_c=np.array([v.errors for v in vc], dtype=float),
        traffic=(req_b > 0) & (req_c > 0),
        regime=np.round(share, 4),
    )
    return data, w_b, w_c


def analyze(
    snapshot: Snapshot,
    spec: AnalysisSpec,
    *,
    final: bool = False,
    allow_promote: bool = True,
    harm_first: bool = False,
    policy_source: str = "defaults",
) -> Analysis:
    """Replay a snapshot look by look under a spec and return the first decisive verdict."""
    data, w_b, w_c = look_data(snapshot)
    k = data.looks
    alpha = spec.alpha
    req_b, req_c = data.requests_b, data.requests_c
    arm_counts, arm_weights = _arm_arrays(snapshot)
    if snapshot.strategy == "shadow":
        srm_p = np.ones(k)  # mirrored traffic: there is no split to check
    elif snapshot.control:
        srm_p = srm_p_values_arms(np.vstack([increments(c) for c in arm_counts]), arm_weights)
    else:
        srm_p = srm_p_values(increments(req_b), increments(req_c), w_b, w_c)
    controlled = snapshot.control is not None
    evidence = evidence_for(spec, controlled)  # the test unit: per request or per interval
    tracks = [kind_of(m).track(m, data, evidence) for m in spec.metrics]

    present = np.array([t.present for t in tracks])  # (m, K)
    p_fail = np.array([t.p_fail for t in tracks])
    p_pass = np.array([t.p_pass for t in tracks])
    # weighted Holm across metrics at every look (metrics without data count as p=1)
    weights = np.array([holm_weight(t.spec.critical) for t in tracks])
    holm = holm_columns(np.where(present, p_fail, 1.0), weights)  # (m, K)
    rejected = holm <= alpha
    rollback: NDArray[np.bool_] = np.asarray(rejected.any(axis=0))
    critical_fail = (rejected & np.array([t.spec.critical for t in tracks])[:, None]).any(axis=0)
    passed = (p_pass <= alpha) & present
    enough = (req_b >= spec.min_requests) & (req_c >= spec.min_requests) & data.traffic
    promote = passed.all(axis=0) & enough & ~rollback & allow_promote
    halt: NDArray[np.bool_] = np.asarray(srm_p < spec.srm_p_value)
    hard = hard_failures(data, spec)
    split = retried_split(halt, data, snapshot, arm_counts, arm_weights, spec) & ~hard

    j, verdict = _first_decisive(halt, rollback | hard | split, critical_fail | hard | split, promote, harm_first)
    decided_at: int | None = None if verdict is Verdict.CONTINUE else j + 1
    results = [_result(t, i, j, present, rejected, passed, p_fail, p_pass, holm) for i, t in enumerate(tracks)]
    srm = _srm_result(float(srm_p[j]), spec.srm_p_value, req_b, req_c, w_b, w_c, j, snapshot.strategy)
    if snapshot.control and snapshot.strategy != "shadow":
        srm = replace(srm, arms=_arm_shares(snapshot.arms, arm_counts, arm_weights, j))
    reason = ""
    if verdict is Verdict.CONTINUE and final:
        verdict, reason = _final(spec, results, bool(data.traffic[j]), k, snapshot.candidate)
        decided_at = k if verdict in (Verdict.PROMOTE, Verdict.ROLLBACK) else None
    if not reason and verdict is Verdict.ROLLBACK and bool(hard[j]):
        reason = _hard_failure_reason(j, data, snapshot, spec)
    if not reason and verdict is Verdict.ROLLBACK and bool(split[j]) and not bool(rollback[j]):
        reason = _retried_split_reason(j, data, snapshot, srm, spec)
    if not reason:
        reason = _reason(verdict, j, results, srm, snapshot, spec, req_b, req_c)
    return Analysis(
        snapshot=snapshot.source,
        verdict=verdict,
        decided_at_look=decided_at,
        reason=reason,
        srm=srm,
        metrics=tuple(results),
        endpoint=snapshot.endpoint,
        baseline=snapshot.baseline,
        candidate=snapshot.candidate,
        looks=k,
        reported_look=j + 1,
        requests={a: int(c[j]) for a, c in zip(snapshot.arms, arm_counts, strict=True)},
        policy=policy_source,
        alpha=alpha,
        control=snapshot.control,
        arms=arm_health(snapshot, j),
        test_unit=evidence.name,
    )


HARD_FAILURE_MIN_REQUESTS = 20


def hard_failures(data: LookData, spec: AnalysisSpec) -> NDArray[np.bool_]:
    """Looks at which the candidate fails outright: at least ``spec.max_error_rate`` of its
    requests are errors, over the step so far or in the look's own interval (in either case
    over at least HARD_FAILURE_MIN_REQUESTS of them), while the arm it is compared with
    fails at most half that share over the same requests' span.

    A guard beside the tests, not a test: it never promotes, it only ends a step early on
    a candidate that is down or failing most of its requests. The sequential tests need a
    few looks to reach their level whatever the evidence (the interval test at most doubles
    its capital per look, so five looks at alpha = 0.05), and a dead candidate skews the
    split meanwhile (the local gateway retries its refused requests on another arm), which
    would halt the run on a sample-ratio mismatch before they can. The interval form
    catches a crash that the supervisor restarts within seconds (its refused requests are
    diluted in the step's total). A healthy candidate reaches a 50% error share over 20
    requests only in a failure shared with its comparison arm, whose share must stay below
    half of it.
    """
    rate = spec.max_error_rate
    out = np.zeros(data.looks, dtype=bool)
    for req_c, err_c, req_b, err_b in (
        (data.requests_c, data.errors_c, data.requests_b, data.errors_b),
        (increments(data.requests_c), increments(data.errors_c), increments(data.requests_b),
         increments(data.errors_b)),
    ):  # fmt: skip
        out |= _fails_outright(req_c, err_c, req_b, err_b, rate)
    return out


def _fails_outright(req_c: Array, err_c: Array, req_b: Array, err_b: Array, rate: float) -> NDArray[np.bool_]:
    failing = (req_c >= HARD_FAILURE_MIN_REQUESTS) & (err_c >= rate * req_c)
    return np.asarray(failing & (err_b <= 0.5 * rate * req_b))


def retried_split(
    halt: NDArray[np.bool_],
    data: LookData,
    snapshot: Snapshot,
    arm_counts: list[Array],
    arm_weights: Array,
    spec: AnalysisSpec,
) -> NDArray[np.bool_]:
    """Looks whose sample-ratio mismatch the candidate's own failures account for: a hard
    failure, not a routing fault.

    A candidate that refuses connections has its requests retried on another arm and
    counted twice (a failed attempt at the candidate, a request at the other arm), so a
    crash skews the split, often before the error tests or the ``max_error_rate`` guard
    can decide (the crash fell late in an interval, so under half of that interval's
    requests failed). Such a look rolls back when, at it, (1) the split mismatches, (2) it
    stops mismatching once each interval's candidate failures are removed from the other
    arms (:func:`srm_p_values_after_retries`), and (3) in the look's own interval the
    candidate failed at least HARD_FAILURE_MIN_REQUESTS requests, at more than twice the
    share of the arm it is compared with. A mismatch the failures do not explain (the
    candidate over-represented, or short by more than it failed) stays a halt.
    """
    out = np.zeros(data.looks, dtype=bool)
    if snapshot.strategy == "shadow" or not halt.any():
        return out
    failed = increments(data.errors_c)
    counts = np.vstack([increments(c) for c in arm_counts])
    corrected = srm_p_values_after_retries(counts, arm_weights, len(snapshot.arms) - 1, failed)
    n_c, n_b, e_b = increments(data.requests_c), increments(data.requests_b), increments(data.errors_b)
    share_c = failed / np.where(n_c > 0, n_c, 1.0)
    failing = (failed >= HARD_FAILURE_MIN_REQUESTS) & (e_b <= 0.5 * share_c * n_b)
    return np.asarray(halt & (corrected >= spec.srm_p_value) & failing)


def _retried_split_reason(j: int, data: LookData, snapshot: Snapshot, srm: SrmResult, spec: AnalysisSpec) -> str:
    n_c = data.requests_c[j] - (data.requests_c[j - 1] if j else 0.0)
    x_c = data.errors_c[j] - (data.errors_c[j - 1] if j else 0.0)
    got = fmt.percent(srm.candidate_share) if srm.candidate_share is not None else "none"
    want = fmt.percent(srm.expected_share) if srm.expected_share is not None else "?"
    return (
        f"roll back {snapshot.candidate}: it failed {int(x_c):,} of its {int(n_c):,} requests in the interval "
        f"before look {j + 1} ({fmt.percent(x_c / n_c if n_c else 0.0)}), and the router's retries of those "
        f"requests on the other arms account for the traffic split ({snapshot.candidate} received {got} where "
        f"the weights call for {want}, p = {fmt.p_value(srm.p_value)} < {spec.srm_p_value:g}); a candidate "
        "that refuses its requests fails outright."
    )


def _hard_failure_reason(j: int, data: LookData, snapshot: Snapshot, spec: AnalysisSpec) -> str:
    step = (data.requests_c[j], data.errors_c[j], data.requests_b[j], data.errors_b[j])
    prev = (
        (data.requests_c[j - 1], data.errors_c[j - 1], data.requests_b[j - 1], data.errors_b[j - 1]) if j else (0,) * 4
    )
    inc = tuple(a - b for a, b in zip(step, prev, strict=True))
    # name the span that tripped the guard: the step when it did, else the look's interval
    rate = spec.max_error_rate
    span, (n_c, x_c, n_b, x_b) = ("in this step", step)
    r_c, e_c, r_b, e_b = (np.asarray(v, dtype=float) for v in step)
    if not bool(_fails_outright(r_c, e_c, r_b, e_b, rate)):
        span, (n_c, x_c, n_b, x_b) = (f"in the interval before look {j + 1}", inc)
    base_rate = fmt.percent(x_b / n_b) if n_b else "none (no requests)"
    return (
        f"roll back {snapshot.candidate}: it failed {int(x_c):,} of its {int(n_c):,} requests {span} "
        f"({fmt.percent(x_c / n_c)}) at look {j + 1}, at or above max_error_rate = {rate:g}, "
        f"while {compared_label(snapshot)} failed {base_rate}; a hard failure ends the step without "
        "waiting for the sequential tests."
    )


def _arm_arrays(snapshot: Snapshot) -> tuple[list[Array], Array]:
    """Cumulative requests (one array per arm of ``snapshot.arms``) and the weights (A, K)."""
    counts = [np.array([look.variants[a].requests for look in snapshot.looks], dtype=float) for a in snapshot.arms]
    weights = np.array([[float(look.weights.get(a, 0.0)) for look in snapshot.looks] for a in snapshot.arms])
    return counts, weights


def _arm_shares(
    arms: Sequence[str], counts: Sequence[Array], weights: Array, j: int
) -> dict[str, tuple[float | None, float | None]]:
    """Each arm's observed share of the requests up to look j, and the share its weights call for
    (each interval's weights times that interval's requests)."""
    incs = np.vstack([increments(c[: j + 1]) for c in counts])  # (A, j+1)
    total_inc = incs.sum(axis=0)
    total = float(total_inc.sum())
    wsum = weights[:, : j + 1].sum(axis=0)
    expected = (weights[:, : j + 1] / np.where(wsum > 0, wsum, 1.0)) * total_inc
    out: dict[str, tuple[float | None, float | None]] = {}
    for i, arm in enumerate(arms):
        out[arm] = (float(incs[i].sum() / total), float(expected[i].sum() / total)) if total > 0 else (None, None)
    return out


def arm_health(snapshot: Snapshot, j: int) -> tuple[ArmHealth, ...]:
    """Every arm's requests, error rate, p50 and p99 at look ``j`` (0-based); empty for a
    snapshot without a control (its two arms are the comparison itself)."""
    if not snapshot.control:
        return ()
    from mlserve.stats.latency import quantile

    look = snapshot.looks[j]
    roles = {snapshot.baseline: "primary", snapshot.control: "control", snapshot.candidate: "candidate"}
    versions = {snapshot.baseline: snapshot.baseline, snapshot.control: snapshot.baseline}
    out = []
    for arm in snapshot.arms:
        v = look.variants[arm]
        p50 = p99 = None
        if v.latency is not None and v.requests > 0:
            le = np.asarray(v.latency.le, dtype=float)
            cum = np.asarray(v.latency.counts, dtype=float)
            p50, p99 = quantile(cum, le, 0.5), quantile(cum, le, 0.99)
        out.append(
            ArmHealth(
                name=arm, role=roles[arm], version=versions.get(arm, snapshot.candidate), requests=v.requests,
                errors=v.errors, error_rate=v.errors / v.requests if v.requests else None, p50=p50, p99=p99,
                weight=float(look.weights.get(arm, 0.0)),
            )
        )  # fmt: skip
    return tuple(out)


def _first_decisive(
    halt: NDArray[np.bool_],
    rollback: NDArray[np.bool_],
    critical_fail: NDArray[np.bool_],
    promote: NDArray[np.bool_],
    harm_first: bool,
) -> tuple[int, Verdict]:
    """The look (0-based) that decides and its verdict; the last look and continue when none does."""
    harm = np.flatnonzero(halt | rollback)
    hits = harm if harm_first and harm.size else np.flatnonzero(halt | rollback | promote)
    if not hits.size:
        return len(halt) - 1, Verdict.CONTINUE
    j = int(hits[0])
    # A critical metric that fails rolls back even when the split is off: the candidate's
    # own failures are evidence whatever the split, and a crashing candidate is exactly
    # what skews it (the gateway retries its requests on the baseline).
    if bool(critical_fail[j]):
        return j, Verdict.ROLLBACK
    if bool(halt[j]):
        return j, Verdict.HALT
    return j, Verdict.ROLLBACK if bool(rollback[j]) else Verdict.PROMOTE


def _result(
    t: Track,
    i: int,
    j: int,
    present: NDArray[np.bool_],
    rejected: NDArray[np.bool_],
    passed: NDArray[np.bool_],
    p_fail: Array,
    p_pass: Array,
    holm: Array,
) -> MetricResult:
    b_val, c_val, est, ci, unit, note = t.summary(j)
    if not t.present[j]:
        verdict = "no_data"
    elif rejected[i, j]:
        verdict = "fail"
    elif passed[i, j]:
        verdict = "pass"
    else:
        verdict = "inconclusive"
    lo, hi = ci if ci is not None else (None, None)
    here = bool(t.present[j])
    return MetricResult(
        name=t.spec.name,
        kind=t.spec.kind,
        verdict=verdict,
        estimate=est,
        ci=(lo, hi),
        p_value=float(p_fail[i, j]) if here else None,
        p_value_holm=float(holm[i, j]) if here else None,
        p_value_pass=float(p_pass[i, j]) if here else None,
        baseline=b_val,
        candidate=c_val,
        unit=unit,
        margin=str(t.spec.margin),
        critical=t.spec.critical,
        better=kind_of(t.spec).better(t.spec),
        note=note,
    )


def _srm_result(
    p: float, level: float, req_b: Array, req_c: Array, w_b: Array, w_c: Array, j: int, strategy: str
) -> SrmResult:
    if strategy == "shadow":
        return SrmResult(None, True)
    total = req_b[j] + req_c[j]
    share = float(req_c[j] / total) if total > 0 else None
    # expected share over the whole run: each interval's weights times its traffic
    inc = increments(req_b[: j + 1] + req_c[: j + 1])
    ws = w_b[: j + 1] + w_c[: j + 1]
    expected = float(np.sum(inc * w_c[: j + 1] / np.where(ws > 0, ws, 1.0)) / total) if total > 0 else None
    chi = chisquare_p_values(inc - increments(req_c[: j + 1]), increments(req_c[: j + 1]), w_b[: j + 1], w_c[: j + 1])
    return SrmResult(p, not p < level, share, expected, float(chi[-1]))


def _final(
    spec: AnalysisSpec, results: Sequence[MetricResult], has_traffic: bool, k: int, cand: str
) -> tuple[Verdict, str]:
    action = spec.on_inconclusive
    missing = [r.name for r in results if r.verdict == "no_data"]
    if action == "rollback":
        return Verdict.ROLLBACK, (
            f"no decision after {k} looks: the evidence never showed {cand} safe within its margins, "
            "and the policy's on_inconclusive is 'rollback'"
        )
    if action == "promote":
        if missing or not has_traffic:
            what = ", ".join(missing) if missing else "candidate traffic"
            return Verdict.CONTINUE, (
                f"no decision after {k} looks and no data for {what}: on_inconclusive is 'promote', "
                "but mlserve never promotes on missing data; holding"
            )
        return Verdict.PROMOTE, (
            f"no decision after {k} looks; no metric showed {cand} worse beyond its margin, "
            "and the policy's on_inconclusive is 'promote'"
        )
    return (
        Verdict.CONTINUE,
        f"no decision after {k} looks; the policy's on_inconclusive is 'hold': keep the current split",
    )


def compared_label(snapshot: Snapshot) -> str:
    """How reasons name the arm the candidate was compared with."""
    return f"{snapshot.control} (a fresh {snapshot.baseline})" if snapshot.control else snapshot.baseline


def _reason(
    verdict: Verdict,
    j: int,
    results: Sequence[MetricResult],
    srm: SrmResult,
    snapshot: Snapshot,
    spec: AnalysisSpec,
    req_b: Array,
    req_c: Array,
) -> str:
    cand = snapshot.candidate
    base = compared_label(snapshot)
    noun = "control" if snapshot.control else "baseline"
    look = j + 1
    if verdict is Verdict.HALT:
        arm, share, expected = cand, srm.candidate_share, srm.expected_share
        if srm.arms:  # the arm furthest from its weight
            arm, (share, expected) = max(srm.arms.items(), key=lambda kv: abs((kv[1][0] or 0.0) - (kv[1][1] or 0.0)))
        got = fmt.percent(share) if share is not None else "none"
        want = fmt.percent(expected) if expected is not None else "?"
        return (
            f"the traffic split is not what was configured at look {look}: {arm} received {got} of requests "
            f"where the weights call for {want} (sample-ratio mismatch, p = {fmt.p_value(srm.p_value)} "
            f"< {spec.srm_p_value:g}). The comparison cannot be trusted; fix the routing before deciding."
        )
    if verdict is Verdict.ROLLBACK:
        failed = sorted(
            (r for r in results if r.verdict == "fail"), key=lambda r: (not r.critical, r.p_value_holm or 1.0)
        )
        parts = [
            f"{r.name}{' (critical)' if r.critical else ''}: {fmt.value(r.candidate, r.unit)} vs "
            f"{fmt.value(r.baseline, r.unit)} ({fmt.change(r.estimate)}), worse by more than the {r.margin} margin "
            f"(always-valid p = {fmt.p_value(r.p_value_holm)} after Holm)"
            for r in failed
        ]
        return f"roll back {cand}: it is worse than {base} at look {look}. " + "; ".join(parts) + "."
    if verdict is Verdict.PROMOTE:
        names = ", ".join(r.name for r in results)
        return (
            f"promote {cand}: at look {look} it is no worse than {base} within every margin ({names}), "
            f"with always-valid evidence at alpha = {spec.alpha:g} and {int(req_c[j]):,} candidate / "
            f"{int(req_b[j]):,} {noun} requests (minimum {spec.min_requests:,})."
        )
    if req_c[j] <= 0:
        return f"no data: {cand} has received no requests after {look} looks; nothing can be concluded yet."
    if req_b[j] <= 0:
        return f"no data: {base} has received no requests after {look} looks; nothing can be concluded yet."
    pending = ", ".join(f"{r.name} {r.verdict.replace('_', ' ')}" for r in results if r.verdict != "pass")
    short = ""
    if req_c[j] < spec.min_requests or req_b[j] < spec.min_requests:
        short = f"; fewer than the {spec.min_requests:,} requests per variant needed to promote"
    return (
        f"keep going: after {look} looks ({int(req_c[j]):,} requests to {cand}), the evidence is not yet "
        f"decisive ({pending or 'all metrics pass'}{short})."
    )
