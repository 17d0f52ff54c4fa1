"""Snapshot + policy -> verdict, look by look.

At every look, in this order: a critical metric that fails rolls back (even with a
sample-ratio mismatch: a crashing candidate itself skews the split); a sample-ratio
mismatch halts (the data cannot be trusted); a metric that shows the candidate worse than the baseline beyond its margin,
with always-valid evidence after Holm's correction across the metric family, rolls
back; every metric non-inferior within its margin with always-valid evidence, both
variants at ``min_requests`` or more, promotes; otherwise the rollout continues. The
first decisive look wins, so replaying a snapshot gives the decision a live rollout
would have taken at that look. Missing data is never a pass.

Every metric is oriented so that "worse" is one direction of a rate ratio (see
sequential.py and latency.py), and everything is computed for all looks at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlserve.manifest.models import LLM_KINDS, MetricSpec, RolloutPolicy
from mlserve.stats import latency as lat
from mlserve.stats.sequential import (
    always_valid_p,
    invert_interval,
    log_beta_binomial_below,
    log_difference_above,
    log_mixture_last,
    log_mixture_per_look,
    log_mixture_rate_ratio,
    merge_intervals,
    rate_ratio_interval,
)
from mlserve.stats.snapshot import Snapshot
from mlserve.stats.srm import chisquare_p_values, srm_p_values

Array = NDArray[np.float64]

VERDICTS = ("promote", "rollback", "halt", "continue")
EXIT_CODES = {"promote": 0, "rollback": 3, "halt": 4, "continue": 4}


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


@dataclass(frozen=True)
class SrmResult:
    p_value: float | None
    ok: bool
    candidate_share: float | None = None
    expected_share: float | None = None
    chi2_p_value: float | None = None  # fixed-sample diagnostic (not valid across looks)


@dataclass(frozen=True)
class Verdict:
    snapshot: str
    verdict: str
    decided_at_look: int | None
    reason: str
    srm: SrmResult
    metrics: tuple[MetricResult, ...]
    endpoint: str = ""
    baseline: str = ""
    candidate: str = ""
    looks: int = 0
    reported_look: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    policy: str = "defaults"
    alpha: float = 0.05

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "verdict": self.verdict,
            "decided_at_look": self.decided_at_look,
            "reason": self.reason,
            "srm": {
                "p_value": _clean(self.srm.p_value),
                "ok": self.srm.ok,
                "candidate_share": _clean(self.srm.candidate_share),
                "expected_share": _clean(self.srm.expected_share),
                "chi2_p_value": _clean(self.srm.chi2_p_value),
            },
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


def _clean(value: float | None) -> float | None:
    """JSON has no inf/nan: open interval ends and undefined values become null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


# ---------------------------------------------------------------------------
# Per-metric computation over all looks
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Track:
    """One metric's evidence at every look of the snapshot."""

    spec: MetricSpec
    present: NDArray[np.bool_]  # (K,)
    p_fail: Array  # (K,) running always-valid p
    p_pass: Array
    summary: Any  # callable(look_index) -> (baseline, candidate, estimate, ci, unit, note)


def _increments(cum: Array) -> Array:
    return np.diff(np.concatenate([[0.0], cum]))


def _spread(values: Array, present: NDArray[np.bool_], fill: float) -> Array:
    """Values computed on the present looks, carried forward to the missing ones
    (evidence gathered so far stays valid); ``fill`` before the first present look."""
    k = present.shape[0]
    full = np.full(k, fill)
    full[np.flatnonzero(present)] = values
    last = np.maximum.accumulate(np.where(present, np.arange(k), -1))
    out: Array = np.where(last >= 0, full[np.maximum(last, 0)], fill)
    return out


def _count_track(
    spec: MetricSpec,
    present: NDArray[np.bool_],
    xb_cum: Array,
    nb_cum: Array,
    xc_cum: Array,
    nc_cum: Array,
    regime: Array,
    alpha: float,
    unit: str,
) -> _Track:
    idx = np.flatnonzero(present)
    xb, nb, xc, nc = (np.asarray(a, dtype=float)[idx] for a in (xb_cum, nb_cum, xc_cum, nc_cum))
    lower_better = spec.better == "lower"
    margin = spec.margin
    if idx.size:
        dxb, dnb, dxc, dnc = (_increments(a) for a in (xb, nb, xc, nc))
        if margin.relative:
            r = min(margin.value, 0.999)
            log_rho0: float | Array = math.log1p(r) if lower_better else -math.log1p(-r)
        else:
            # plug-in: the absolute margin as a ratio of the baseline's rate so far
            base_rate = (xb + 0.5) / (nb + 1.0)
            frac = margin.value / base_rate
            log_rho0 = np.log1p(frac) if lower_better else -np.log1p(-np.minimum(frac, 0.999))
        if lower_better:
            xa_, xb_, na_, nb_ = dxc, dxb, dnc, dnb
        else:
            xa_, xb_, na_, nb_ = dxb, dxc, dnb, dnc
        if isinstance(log_rho0, float):
            p_fail = always_valid_p(log_mixture_rate_ratio(xa_, xb_, na_, nb_, log_rho0, +1))
            p_pass = always_valid_p(log_mixture_rate_ratio(xa_, xb_, na_, nb_, log_rho0, -1))
        else:
            p_fail = always_valid_p(log_mixture_per_look(xa_, xb_, na_, nb_, log_rho0, +1))
            p_pass = always_valid_p(log_mixture_per_look(xa_, xb_, na_, nb_, log_rho0, -1))
        if spec.kind in ("error_rate", "stream_errors") and lower_better and not margin.relative and margin.value > 0:
            # a second route to "pass": the candidate's own error rate is below the
            # absolute margin (so below baseline + margin); alpha split between routes
            p_single = always_valid_p(log_beta_binomial_below(xc, nc, margin.value))
            p_pass = np.minimum(1.0, 2.0 * np.minimum(p_pass, p_single))
            # and a second route to "fail": the ratio test turns the absolute margin into a
            # ratio of the baseline's estimated rate, which is unbounded when the baseline
            # has (almost) no errors; confidence sequences on the two rates are not.
            p_diff = np.minimum(1.0, 2.0 * np.exp(-log_difference_above(xc, nc, xb, nb, margin.value)))
            p_fail = np.minimum(1.0, 2.0 * np.minimum(p_fail, p_diff))
    else:
        p_fail = p_pass = np.ones(0)

    def summary(j: int) -> tuple[float | None, float | None, float | None, tuple[float, float] | None, str, str]:
        upto = idx[idx <= j]
        if not upto.size:
            return None, None, None, None, unit, ""
        last = upto[-1]
        b_rate = xb_cum[last] / nb_cum[last] if nb_cum[last] > 0 else None
        c_rate = xc_cum[last] / nc_cum[last] if nc_cum[last] > 0 else None
        est = c_rate / b_rate - 1.0 if (b_rate and c_rate is not None) else None
        incs = [_increments(np.asarray(a, float)[upto]) for a in (xb_cum, nb_cum, xc_cum, nc_cum)]
        dxb_, dnb_, dxc_, dnc_ = merge_intervals(regime[upto], *incs)
        lo, hi = rate_ratio_interval(dxc_, dxb_, dnc_, dnb_, alpha)
        ci = (math.expm1(lo) if math.isfinite(lo) else -1.0, math.expm1(hi) if math.isfinite(hi) else math.inf)
        return b_rate, c_rate, est, ci, unit, ""

    return _Track(
        spec,
        present,
        _spread(p_fail, present, 1.0),
        _spread(p_pass, present, 1.0),
        summary,
    )


def _latency_track(
    spec: MetricSpec,
    present: NDArray[np.bool_],
    base_cum: Array,
    cand_cum: Array,
    le: Array,
    regime: Array,
    alpha: float,
) -> _Track:
    q = float(spec.quantile or 0.99)
    idx = np.flatnonzero(present)
    margin = spec.margin
    paths = None
    p_fail = p_pass = np.ones(idx.size)
    if idx.size:
        paths = lat.latency_paths(base_cum[idx], cand_cum[idx], le, q, margin.value, margin.relative)
        lf = np.zeros(idx.size)
        lp = np.zeros(idx.size)
        for b, (xc, xb) in paths.rows.items():
            at = paths.bidx == b
            lf[at] = log_mixture_rate_ratio(xc, xb, paths.n_cand, paths.n_base, 0.0, +1)[at]
            lp[at] = log_mixture_rate_ratio(xc, xb, paths.n_cand, paths.n_base, 0.0, -1)[at]
        p_fail = always_valid_p(lf)
        p_pass = always_valid_p(lp)

    def summary(j: int) -> tuple[float | None, float | None, float | None, tuple[float, float] | None, str, str]:
        upto = idx[idx <= j]
        if not upto.size or paths is None:
            return None, None, None, None, "s", "no latency data for both variants yet"
        pos = upto.size - 1
        if not paths.defined[pos]:
            return None, None, None, None, "s", "no slow baseline requests yet"
        b = float(paths.boundary[pos])
        bi = int(paths.bidx[pos])
        sub_c = cand_cum[upto]
        sub_b = base_cum[upto]
        factors = np.exp(np.linspace(-1.0, 1.6, 105))
        cand_ex = lat.exceedances(sub_c, le, b * factors)  # (L, C)
        cand_inc = np.maximum(np.diff(np.vstack([np.zeros((1, factors.size)), cand_ex]), axis=0).T, 0.0)
        base_inc = np.maximum(_increments(sub_b[:, -1] - sub_b[:, bi]), 0.0)
        n_c = _increments(sub_c[:, -1])
        n_b = _increments(sub_b[:, -1])
        cand_inc, base_inc, n_c, n_b = merge_intervals(regime[upto], cand_inc, base_inc, n_c, n_b)
        zeros = np.zeros(factors.size)
        fail = log_mixture_last(cand_inc, base_inc, n_c, n_b, zeros, +1)
        ok = log_mixture_last(cand_inc, base_inc, n_c, n_b, zeros, -1)
        found = invert_interval(factors - 1.0, fail, ok, alpha)
        # point estimate: the shift at which the candidate's tail share equals the baseline's
        q_res = float(paths.resolved_q[pos])
        c_q = lat.quantile(sub_c[-1], le, q_res)
        est = c_q / b - 1.0 if math.isfinite(c_q) and b > 0 else None
        thr = float(paths.threshold[pos])
        res = lat.resolution(le, thr)
        note = f"p{q_res * 100:.4g} compared (the bucket bound nearest p{q * 100:g} is {b:g}s)"
        if math.isfinite(res) and margin.relative and res > 1 + margin.value + 1e-9:
            note += f"; buckets near {thr:g}s are {res:.2g}x wide, coarser than the {margin} margin"
        return b, _nan_none(c_q), est, found, "s", note

    return _Track(spec, present, _spread(p_fail, present, 1.0), _spread(p_pass, present, 1.0), summary)


def _nan_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------


def analyze(
    snapshot: Snapshot, policy: RolloutPolicy, *, final: bool = False, policy_source: str = "defaults"
) -> Verdict:
    """Replay a snapshot look by look under a policy and return the first decisive verdict."""
    looks = snapshot.looks
    k = len(looks)
    base, cand = snapshot.baseline, snapshot.candidate
    alpha = policy.alpha
    vb = [look.variants[base] for look in looks]
    vc = [look.variants[cand] for look in looks]
    req_b = np.array([v.requests for v in vb], dtype=float)
    req_c = np.array([v.requests for v in vc], dtype=float)
    err_b = np.array([v.errors for v in vb], dtype=float)
    err_c = np.array([v.errors for v in vc], dtype=float)
    w_b = np.array([look.weights[base] for look in looks], dtype=float)
    w_c = np.array([look.weights[cand] for look in looks], dtype=float)

    if snapshot.strategy == "shadow":
        srm_p = np.ones(k)  # mirrored traffic: there is no split to check
    else:
        srm_p = srm_p_values(_increments(req_b), _increments(req_c), w_b, w_c)

    traffic = (req_b > 0) & (req_c > 0)
    share = w_c / np.where(w_b + w_c > 0, w_b + w_c, 1.0)
    regime = np.round(share, 4)
    tracks: list[_Track] = []
    for spec in policy.metrics:
        if spec.kind == "error_rate":
            tracks.append(_count_track(spec, traffic, err_b, req_b, err_c, req_c, regime, alpha, "errors/request"))
        elif spec.kind == "ratio":
            has = np.array(
                [spec.name in b.custom and spec.name in c.custom for b, c in zip(vb, vc, strict=True)], dtype=bool
            )
            num_b = np.array([b.custom[spec.name].numerator if spec.name in b.custom else 0.0 for b in vb])
            den_b = np.array([b.custom[spec.name].denominator if spec.name in b.custom else 0.0 for b in vb])
            num_c = np.array([c.custom[spec.name].numerator if spec.name in c.custom else 0.0 for c in vc])
            den_c = np.array([c.custom[spec.name].denominator if spec.name in c.custom else 0.0 for c in vc])
            present = has & (den_b > 0) & (den_c > 0)
            tracks.append(_count_track(spec, present, num_b, den_b, num_c, den_c, regime, alpha, "per unit"))
        elif spec.kind in LLM_KINDS:
            tracks.append(_llm_track(spec, vb, vc, traffic, regime, alpha))
        else:
            has = np.array([b.latency is not None and c.latency is not None for b, c in zip(vb, vc, strict=True)])
            present = has & traffic
            first = next((i for i in range(k) if has[i]), None)
            if first is None:
                tracks.append(_Track(spec, np.zeros(k, dtype=bool), np.ones(k), np.ones(k), _no_summary))
                continue
            le = np.asarray(vb[first].latency.le, dtype=float)  # type: ignore[union-attr]
            nb_ = len(le)
            base_cum = np.array([b.latency.counts if b.latency is not None else (0,) * nb_ for b in vb], dtype=float)
            cand_cum = np.array([c.latency.counts if c.latency is not None else (0,) * nb_ for c in vc], dtype=float)
            tracks.append(_latency_track(spec, present, base_cum, cand_cum, le, regime, alpha))

    present = np.array([t.present for t in tracks])  # (m, K)
    p_fail = np.array([t.p_fail for t in tracks])
    p_pass = np.array([t.p_pass for t in tracks])
    # weighted Holm across metrics at every look, vectorised (metrics without data count as p=1)
    p_fail_eff = np.where(present, p_fail, 1.0)
    weights = np.array([CRITICAL_WEIGHT if t.spec.critical else 1.0 for t in tracks])
    holm = _holm_columns(p_fail_eff, weights)  # (m, K)
    rejected = holm <= alpha
    rollback = rejected.any(axis=0)
    critical_fail = (rejected & np.array([t.spec.critical for t in tracks])[:, None]).any(axis=0)
    passed = (p_pass <= alpha) & present
    enough = (req_b >= policy.min_requests) & (req_c >= policy.min_requests) & traffic
    promote = passed.all(axis=0) & enough & ~rollback
    halt: NDArray[np.bool_] = np.asarray(srm_p < policy.srm_p_value)

    decided = halt | rollback | promote
    hits = np.flatnonzero(decided)
    if hits.size:
        j = int(hits[0])
        # A critical metric that fails rolls back even when the split is off: the candidate's
        # own failures are evidence whatever the split, and a crashing candidate is exactly
        # what skews it (the gateway retries its requests on the baseline).
        if bool(critical_fail[j]):
            verdict = "rollback"
        else:
            verdict = "halt" if bool(halt[j]) else "rollback" if bool(np.asarray(rollback)[j]) else "promote"
        decided_at: int | None = j + 1
    else:
        j = k - 1
        verdict = "continue"
        decided_at = None

    results = []
    for i, t in enumerate(tracks):
        b_val, c_val, est, ci, unit, note = t.summary(j)
        if not t.present[j]:
            mv = "no_data"
        elif rejected[i, j]:
            mv = "fail"
        elif passed[i, j]:
            mv = "pass"
        else:
            mv = "inconclusive"
        lo, hi = ci if ci is not None else (None, None)
        results.append(
            MetricResult(
                name=t.spec.name,
                kind=t.spec.kind,
                verdict=mv,
                estimate=est,
                ci=(lo, hi),
                p_value=float(p_fail[i, j]) if t.present[j] else None,
                p_value_holm=float(holm[i, j]) if t.present[j] else None,
                p_value_pass=float(p_pass[i, j]) if t.present[j] else None,
                baseline=b_val,
                candidate=c_val,
                unit=unit,
                margin=str(t.spec.margin),
                critical=t.spec.critical,
                better="lower" if t.spec.kind == "latency" else t.spec.better,
                note=note,
            )
        )

    srm = _srm_result(float(srm_p[j]), policy.srm_p_value, req_b, req_c, w_b, w_c, j, snapshot.strategy)
    reason = ""
    if verdict == "continue" and final:
        verdict, reason = _final(policy, results, traffic[j], k, cand)
        decided_at = k if verdict in ("promote", "rollback") else None
    if not reason:
        reason = _reason(verdict, j, results, srm, snapshot, policy, req_b, req_c)
    return Verdict(
        snapshot=snapshot.source,
        verdict=verdict,
        decided_at_look=decided_at,
        reason=reason,
        srm=srm,
        metrics=tuple(results),
        endpoint=snapshot.endpoint,
        baseline=base,
        candidate=cand,
        looks=k,
        reported_look=j + 1,
        requests={base: int(req_b[j]), cand: int(req_c[j])},
        policy=policy_source,
        alpha=alpha,
    )


def _llm_track(
    spec: MetricSpec, vb: list[Any], vc: list[Any], traffic: NDArray[np.bool_], regime: Array, alpha: float
) -> _Track:
    """The one place the engine meets the LLM kinds (mlserve.stats.llm): each becomes a latency
    or a count track over the snapshot's ``llm`` histograms and counts."""
    from dataclasses import replace

    from mlserve.stats import llm

    k = len(vb)
    if spec.kind == "stream_errors":
        present, xb, nb, xc, nc = llm.stream_counts(vb, vc)
        return _count_track(spec, present & traffic, xb, nb, xc, nc, regime, alpha, llm.UNIT[spec.kind])
    got = llm.histogram_input(spec, vb, vc)
    if got is None:
        return _Track(spec, np.zeros(k, dtype=bool), np.ones(k), np.ones(k), _llm_no_summary)
    track = _latency_track(got.spec, got.present & traffic, got.base_cum, got.cand_cum, got.le, regime, alpha)
    if spec.kind != "tokens_per_second":
        return replace(track, spec=spec)
    inner = track.summary
    return replace(track, spec=spec, summary=lambda j: llm.rate_summary(inner(j)))


def _llm_no_summary(j: int) -> tuple[None, None, None, None, str, str]:
    return None, None, None, None, "s", "no token-stream histogram in the snapshot (an LLM endpoint's llm field)"


def _no_summary(j: int) -> tuple[None, None, None, None, str, str]:
    return None, None, None, None, "s", "no latency histogram in the snapshot"


# In the Holm family a critical metric carries this many times the weight of a
# non-critical one: it can roll back on its own with most of alpha, while the family-wise
# error rate stays at alpha (weighted Holm). With all metrics alike this is plain Holm.
CRITICAL_WEIGHT = 4.0


def _holm_columns(p: Array, weights: Array) -> Array:
    """Weighted-Holm-adjusted p-values for each column (look) of an (m, K) array."""
    m, k = p.shape
    w = np.asarray(weights, dtype=float)[:, None] * np.ones((1, k))
    left = np.ones((m, k), dtype=bool)
    out = np.ones((m, k))
    running = np.zeros(k)
    cols = np.arange(k)
    for _ in range(m):
        total = np.where(left, w, 0.0).sum(axis=0)
        ratio = np.where(left, p / w, np.inf)
        i = np.argmin(ratio, axis=0)
        adj = np.minimum(1.0, p[i, cols] * total / w[i, cols])
        running = np.maximum(running, adj)
        out[i, cols] = running
        left[i, cols] = False
    return out


def _srm_result(
    p: float, level: float, req_b: Array, req_c: Array, w_b: Array, w_c: Array, j: int, strategy: str
) -> SrmResult:
    if strategy == "shadow":
        return SrmResult(None, True)
    total = req_b[j] + req_c[j]
    share = float(req_c[j] / total) if total > 0 else None
    # expected share over the whole run: each interval's weights times its traffic
    inc = _increments(req_b[: j + 1] + req_c[: j + 1])
    ws = w_b[: j + 1] + w_c[: j + 1]
    expected = float(np.sum(inc * w_c[: j + 1] / np.where(ws > 0, ws, 1.0)) / total) if total > 0 else None
    chi = chisquare_p_values(inc - _increments(req_c[: j + 1]), _increments(req_c[: j + 1]), w_b[: j + 1], w_c[: j + 1])
    return SrmResult(p, not p < level, share, expected, float(chi[-1]))


def _final(policy: RolloutPolicy, results: list[MetricResult], has_traffic: bool, k: int, cand: str) -> tuple[str, str]:
    action = policy.on_inconclusive
    missing = [r.name for r in results if r.verdict == "no_data"]
    if action == "rollback":
        return "rollback", (
            f"no decision after {k} looks: the evidence never showed {cand} safe within its margins, "
            "and the policy's on_inconclusive is 'rollback'"
        )
    if action == "promote":
        if missing or not has_traffic:
            what = ", ".join(missing) if missing else "candidate traffic"
            return "continue", (
                f"no decision after {k} looks and no data for {what}: on_inconclusive is 'promote', "
                "but mlserve never promotes on missing data; holding"
            )
        return "promote", (
            f"no decision after {k} looks; no metric showed {cand} worse beyond its margin, "
            "and the policy's on_inconclusive is 'promote'"
        )
    return "continue", f"no decision after {k} looks; the policy's on_inconclusive is 'hold': keep the current split"


def describe_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.3g}ms"
    if unit == "errors/request":
        return f"{value * 100:.3g}%"
    return f"{value:.4g}"


def describe_change(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return f"{value * 100:+.3g}%"


def _reason(
    verdict: str,
    j: int,
    results: list[MetricResult],
    srm: SrmResult,
    snapshot: Snapshot,
    policy: RolloutPolicy,
    req_b: Array,
    req_c: Array,
) -> str:
    base, cand = snapshot.baseline, snapshot.candidate
    look = j + 1
    if verdict == "halt":
        got = f"{srm.candidate_share * 100:.3g}%" if srm.candidate_share is not None else "none"
        want = f"{srm.expected_share * 100:.3g}%" if srm.expected_share is not None else "?"
        return (
            f"the traffic split is not what was configured at look {look}: {cand} received {got} of requests "
            f"where the weights call for {want} (sample-ratio mismatch, p = {srm.p_value:.2g} < {policy.srm_p_value:g}). "
            "The comparison cannot be trusted; fix the routing before deciding."
        )
    if verdict == "rollback":
        failed = [r for r in results if r.verdict == "fail"]
        failed.sort(key=lambda r: (not r.critical, r.p_value_holm or 1.0))
        parts = []
        for r in failed:
            crit = " (critical)" if r.critical else ""
            parts.append(
                f"{r.name}{crit}: {describe_value(r.candidate, r.unit)} vs {describe_value(r.baseline, r.unit)} "
                f"({describe_change(r.estimate)}), worse by more than the {r.margin} margin "
                f"(always-valid p = {r.p_value_holm:.2g} after Holm)"
            )
        return f"roll back {cand}: it is worse than {base} at look {look}. " + "; ".join(parts) + "."
    if verdict == "promote":
        names = ", ".join(r.name for r in results)
        return (
            f"promote {cand}: at look {look} it is no worse than {base} within every margin ({names}), "
            f"with always-valid evidence at alpha = {policy.alpha:g} and {int(req_c[j]):,} candidate / "
            f"{int(req_b[j]):,} baseline requests (minimum {policy.min_requests:,})."
        )
    if req_c[j] <= 0:
        return f"no data: {cand} has received no requests after {look} looks; nothing can be concluded yet."
    if req_b[j] <= 0:
        return f"no data: {base} has received no requests after {look} looks; nothing can be concluded yet."
    pending = ", ".join(f"{r.name} {r.verdict.replace('_', ' ')}" for r in results if r.verdict != "pass")
    short = ""
    if req_c[j] < policy.min_requests or req_b[j] < policy.min_requests:
        short = f"; fewer than the {policy.min_requests:,} requests per variant needed to promote"
    return (
        f"keep going: after {look} looks ({int(req_c[j]):,} requests to {cand}), the evidence is not yet "
        f"decisive ({pending or 'all metrics pass'}{short})."
    )
