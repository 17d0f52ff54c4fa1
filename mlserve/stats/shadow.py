"""A shadow step: the engine on the mirrored requests, plus the agreement gate.

Only the kinds that mean something for mirrored traffic (error rate and latency: nobody
sees a mirror's answers, and an LLM endpoint's token-stream kinds are measured on the
streams the gateway answers) are compared; a family with none of them (an LLM canary
policy used for a shadow) is judged on the error rate alone, critical, at a one-point
absolute margin (:data:`SHADOW_ERRORS`). The gate (:mod:`mlserve.stats.agreement`) rolls
back on evidence of disagreement at once, and a promote needs both the comparison and the
gate to pass.
"""

from __future__ import annotations

from dataclasses import replace

from mlserve import format as fmt
from mlserve.stats.agreement import AgreementResult, agreement_test
from mlserve.stats.engine import Analysis, SrmResult, analyze
from mlserve.stats.kinds import shadow_kinds
from mlserve.stats.snapshot import Snapshot
from mlserve.stats.spec import AnalysisSpec, Margin, MetricSpec
from mlserve.status import Verdict

SHADOW_ERRORS = MetricSpec("error_rate", "error_rate", Margin(0.01, relative=False), critical=True)


def shadow_spec(spec: AnalysisSpec) -> AnalysisSpec:
    """The family a shadow step compares: the spec's metrics of the shadow kinds, else the
    error rate of :data:`SHADOW_ERRORS`."""
    kinds = shadow_kinds()
    if any(m.kind in kinds for m in spec.metrics):
        return spec.only(kinds)
    return replace(spec, metrics=(SHADOW_ERRORS,))


def analyze_shadow(
    snapshot: Snapshot,
    spec: AnalysisSpec,
    *,
    agree: int,
    compared: int,
    gate: bool = True,
    final: bool = False,
    allow_promote: bool = True,
) -> Analysis:
    """``gate``: whether the source counts agreement at all (when not, the gate is off)."""
    looks = len(snapshot.looks)
    cand = snapshot.candidate
    bound = spec.shadow_agreement if gate else 0.0
    test = agreement_test(agree, compared, bound, spec.alpha)
    base = analyze(snapshot, shadow_spec(spec), allow_promote=allow_promote, harm_first=True)
    base = replace(base, metrics=(*base.metrics, test), agreement=test)
    if test.verdict == "fail":
        return replace(
            base,
            verdict=Verdict.ROLLBACK,
            reason=_disagree(cand, test, bound),
            decided_at_look=looks,
            srm=SrmResult(None, True),
        )
    if base.verdict is Verdict.ROLLBACK:
        return base
    if base.verdict is Verdict.PROMOTE and test.verdict == "pass":
        reason = (
            base.reason.rstrip(".") + f"; predictions agree on {fmt.share(test.estimate)} of "
            f"{test.compared:,} mirrored requests (at least {bound * 100:g}% required)."
        )
        return replace(base, reason=reason, decided_at_look=looks)
    if final and spec.on_inconclusive == "rollback":
        reason = f"no decision on the shadow of {cand} before the deadline; on_inconclusive is 'rollback'"
        return replace(base, verdict=Verdict.ROLLBACK, reason=reason, decided_at_look=looks)
    pending = ", ".join(f"{m.name} {m.verdict}" for m in base.metrics if m.verdict != "pass")
    reason = f"keep mirroring: the evidence on {cand}'s shadow traffic is not yet decisive ({pending or 'waiting'})"
    return replace(base, verdict=Verdict.CONTINUE, reason=reason, decided_at_look=None)


def _disagree(cand: str, test: AgreementResult, bound: float) -> str:
    return (
        f"roll back {cand}: its predictions agree with the baseline's on only "
        f"{fmt.share(test.estimate)} of {test.compared:,} mirrored requests, below the required "
        f"{bound * 100:g}% (always-valid p = {fmt.p_value(test.p_value)})"
    )
