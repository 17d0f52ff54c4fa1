"""From the looks of one step to a decision, through the statistics engine.

The engine (``mlserve.stats.engine.analyze``) replays a snapshot look by look and returns
the *first* decisive verdict. A step acts on that verdict at once, so the first decisive
look is also the latest one, except when a step is made to wait (a minimum step duration,
or an A/B test's fixed horizon): then a promote found earlier must not hide harm found
later, and the looks are re-checked with promotion disabled ("guard"), which can only
answer rollback, halt or continue.

Shadow adds a gate the engine does not have: prediction agreement between the baseline's
answers and the mirrored candidate's, a one-sample always-valid test of the agreement
rate against ``shadow_agreement`` (built from ``mlserve.stats.sequential``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlserve.manifest.models import RolloutPolicy

NO_PROMOTE = 10**15  # min_requests that no look reaches: promotion disabled


@dataclass(frozen=True)
class Decision:
    """What one analysis says, in plain data (it is persisted in state.json)."""

    verdict: str  # promote | rollback | halt | continue
    reason: str
    decided_at_look: int | None
    metrics: tuple[dict[str, Any], ...] = ()
    srm: dict[str, Any] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    agreement: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "decided_at_look": self.decided_at_look,
            "metrics": list(self.metrics),
            "srm": dict(self.srm),
            "requests": dict(self.requests),
            "agreement": self.agreement,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        return cls(
            verdict=str(data["verdict"]),
            reason=str(data.get("reason", "")),
            decided_at_look=data.get("decided_at_look"),
            metrics=tuple(data.get("metrics", ())),
            srm=dict(data.get("srm", {})),
            requests=dict(data.get("requests", {})),
            agreement=data.get("agreement"),
        )


def snapshot_document(
    endpoint: str, baseline: str, candidate: str, strategy: str, looks: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    return {
        "format": "mlserve.snapshot/v1",
        "endpoint": endpoint,
        "baseline": baseline,
        "candidate": candidate,
        "strategy": strategy,
        "looks": [dict(look) for look in looks],
    }


def _engine(doc: Mapping[str, Any], policy: RolloutPolicy, final: bool, source: str) -> Any:
    from mlserve.stats.engine import analyze
    from mlserve.stats.snapshot import parse_snapshot

    return analyze(parse_snapshot(dict(doc), source), policy, final=final, policy_source="mlserve.toml")


def _from_verdict(v: Any) -> Decision:
    data = v.to_dict()
    return Decision(
        verdict=data["verdict"],
        reason=data["reason"],
        decided_at_look=data.get("decided_at_look"),
        metrics=tuple(data.get("metrics", ())),
        srm=dict(data.get("srm", {})),
        requests={k: int(x) for k, x in data.get("requests", {}).items()},
    )


def decide(
    doc: Mapping[str, Any],
    policy: RolloutPolicy,
    *,
    final: bool = False,
    allow_promote: bool = True,
    agreement_min: float = 0.0,
    agreement: Mapping[str, int] | None = None,
    source: str = "<live>",
) -> Decision:
    """The decision for the latest look of ``doc`` (a mlserve.snapshot/v1 document)."""
    if not doc.get("looks"):
        return Decision("continue", "no look yet", None)
    strategy = str(doc.get("strategy"))
    if strategy == "shadow":
        return _shadow(
            doc, policy, final=final, allow_promote=allow_promote, agreement_min=agreement_min, agreement=agreement
        )
    return _generic(doc, policy, final=final, allow_promote=allow_promote, source=source)


def _generic(
    doc: Mapping[str, Any], policy: RolloutPolicy, *, final: bool, allow_promote: bool, source: str
) -> Decision:
    n_looks = len(doc["looks"])
    effective = policy if allow_promote else policy.model_copy(update={"min_requests": NO_PROMOTE})
    result = _from_verdict(_engine(doc, effective, final, source))
    if result.verdict == "promote" and result.decided_at_look is not None and result.decided_at_look < n_looks:
        # promoted at an earlier look of this step, but we waited: has harm appeared since?
        guard = _from_verdict(_engine(doc, policy.model_copy(update={"min_requests": NO_PROMOTE}), False, source))
        if guard.verdict in ("rollback", "halt"):
            return guard
    return result


# ---------------------------------------------------------------------------
# Shadow: engine on error rate and latency of mirrored requests + the agreement gate
# ---------------------------------------------------------------------------


def shadow_policy(policy: RolloutPolicy) -> RolloutPolicy:
    """Only error rate and latency apply to mirrored traffic (nobody sees its answers, and the
    token-stream kinds of an LLM endpoint are measured on routed streams only). A policy with
    none of them (an LLM canary policy used for a shadow) is judged on errors alone, at a
    one-point margin, beside the agreement gate."""
    metrics = [m for m in policy.metrics if m.kind in ("error_rate", "latency")]
    if not metrics:
        from mlserve.manifest.models import MetricSpec
        from mlserve.manifest.units import Margin

        metrics = [MetricSpec(name="error_rate", kind="error_rate", margin=Margin(0.01, False), critical=True)]
    return policy.model_copy(update={"metrics": metrics})


def agreement_test(agree: int, total: int, bound: float, alpha: float) -> dict[str, Any]:
    """Always-valid one-sample test of the agreement rate against ``bound``.

    pass: evidence that the disagreement rate is below 1 - bound; fail: evidence that the
    agreement rate is below ``bound`` (each a beta-binomial mixture martingale at alpha).
    """
    import numpy as np

    from mlserve.stats.sequential import always_valid_p, log_beta_binomial_below

    rate = agree / total if total > 0 else None
    out: dict[str, Any] = {
        "name": "agreement",
        "kind": "agreement",
        "agree": int(agree),
        "compared": int(total),
        "estimate": rate,
        "bound": bound,
        "verdict": "no_data" if total <= 0 else "inconclusive",
        "p_value": None,
        "p_value_pass": None,
        "ci": [None, None],
    }
    if bound <= 0.0:
        out["verdict"] = "pass"  # the gate is switched off (shadow_agreement = 0)
        out["note"] = "agreement gate disabled"
        return out
    if total <= 0:
        return out
    x_dis = np.array([float(total - agree)])
    x_ok = np.array([float(agree)])
    n = np.array([float(total)])
    p_pass = float(always_valid_p(log_beta_binomial_below(x_dis, n, 1.0 - bound))[-1])
    p_fail = float(always_valid_p(log_beta_binomial_below(x_ok, n, bound))[-1])
    out["p_value"] = p_fail
    out["p_value_pass"] = p_pass
    out["ci"] = list(_wilson(agree, total, alpha))
    if p_fail <= alpha:
        out["verdict"] = "fail"
    elif p_pass <= alpha:
        out["verdict"] = "pass"
    return out


def _wilson(x: int, n: int, alpha: float) -> tuple[float, float]:
    """A display interval for the agreement rate (not used for the decision)."""
    from scipy.stats import norm

    z = float(norm.ppf(1 - alpha / 2))
    p = x / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def _shadow(
    doc: Mapping[str, Any],
    policy: RolloutPolicy,
    *,
    final: bool,
    allow_promote: bool,
    agreement_min: float,
    agreement: Mapping[str, int] | None,
) -> Decision:
    looks = doc["looks"]
    cand = str(doc["candidate"])
    agreed = dict(agreement or {})
    test = agreement_test(int(agreed.get("agree", 0)), int(agreed.get("compared", 0)), agreement_min, policy.alpha)
    sp = shadow_policy(policy)
    base = _generic(doc, sp, final=False, allow_promote=allow_promote, source="<live shadow>")
    metrics = (*base.metrics, test)
    if test["verdict"] == "fail":
        return Decision(
            "rollback",
            f"roll back {cand}: its answers agree with the baseline's on only "
            f"{test['estimate'] * 100:.2f}% of {test['compared']:,} mirrored requests, below the required "
            f"{agreement_min * 100:g}% (always-valid p = {test['p_value']:.2g})",
            len(looks),
            metrics,
            {"p_value": None, "ok": True},
            base.requests,
            test,
        )
    if base.verdict == "rollback":
        return Decision("rollback", base.reason, base.decided_at_look, metrics, base.srm, base.requests, test)
    if base.verdict == "promote" and test["verdict"] == "pass":
        return Decision(
            "promote",
            base.reason.rstrip(".") + f"; answers agree on {test['estimate'] * 100:.2f}% of "
            f"{test['compared']:,} mirrored requests (at least {agreement_min * 100:g}% required).",
            len(looks),
            metrics,
            base.srm,
            base.requests,
            test,
        )
    if final:
        action = policy.on_inconclusive
        if action == "rollback":
            return Decision(
                "rollback",
                f"no decision on the shadow of {cand} before the deadline; on_inconclusive is 'rollback'",
                len(looks),
                metrics,
                base.srm,
                base.requests,
                test,
            )
    pending = ", ".join(f"{m['name']} {m['verdict']}" for m in metrics if m.get("verdict") != "pass")
    return Decision(
        "continue",
        f"keep mirroring: the evidence on {cand}'s shadow traffic is not yet decisive ({pending or 'waiting'})",
        None,
        metrics,
        base.srm,
        base.requests,
        test,
    )
