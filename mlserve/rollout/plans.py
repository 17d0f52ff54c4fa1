"""The steps a strategy walks, as traffic plans.

A canary step of 100% is the promotion itself (at 100% there is no baseline traffic left
to compare with), so it is not an analysis step.

With ``control = "replica"`` (the default) every canary step has three arms: the candidate
and a control (a fresh instance of the baseline version, started for the rollout) at the
step's weight ``w`` each, and the primary with ``100 - 2w``. Steps above 50% (other than
100) leave no room for a control of the candidate's size; the manifest refuses them. A/B
(a sticky 50/50 split: the two arms already take equal shares) and shadow steps (the
mirror gives the candidate the primary's own requests) have no control.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mlserve.capacity import GpuPlan, gpu_plan, shares
from mlserve.errors import UsageError
from mlserve.manifest.models import Manifest, RolloutPolicy
from mlserve.rollout.record import StepPlan
from mlserve.targets.base import Mode, Plan

STRATEGIES = ("canary", "shadow", "ab", "shadow+canary")
AB_PERCENT = 50
CONTROL_ARM = "control"


def control_arm_name(versions: Iterable[str]) -> str:
    """The control arm's name: ``control``, or ``control-2``, ... when a version is called that."""
    taken = set(versions)
    name, n = CONTROL_ARM, 1
    while name in taken:
        n += 1
        name = f"{CONTROL_ARM}-{n}"
    return name


def step_plans(
    strategy: str,
    policy: RolloutPolicy,
    baseline: str,
    candidate: str,
    control: str = CONTROL_ARM,
    *,
    strict: bool = True,
) -> tuple[StepPlan, ...]:
    """``control``: the control arm's name (used on canary steps when ``policy.control`` is ``replica``).
    ``strict``: refuse a step above 50% with ``control = "replica"`` (a rollout); otherwise such a
    step is planned without a control, as the power plan does (``analyze --plan --steps``)."""
    plans: list[StepPlan] = []
    if strategy in ("shadow", "shadow+canary"):
        plans.append(StepPlan("shadow", Plan.shadow(baseline, candidate, policy.shadow_percent)))
    if strategy in ("canary", "shadow+canary"):
        weights = [w for w in policy.steps if w < 100]
        if not weights:
            raise UsageError("rollout.steps has no step below 100%: a canary needs at least one analysis step")
        for w in weights:
            if policy.control == "replica" and (strict or 2 * w <= 100):
                if 2 * w > 100:
                    raise UsageError(
                        f"rollout.steps: a {w}% step leaves no room for a control with the candidate's share; "
                        "with control = 'replica' steps go up to 50% before 100"
                    )
                plan = Plan.controlled(Mode.CANARY, baseline, candidate, control, w)
            else:
                plan = Plan.split(Mode.CANARY, baseline, candidate, w)
            plans.append(StepPlan("canary", plan))
    if strategy == "ab":
        plans.append(StepPlan("ab", Plan.split(Mode.AB, baseline, candidate, AB_PERCENT)))
    return tuple(plans)


def gpus_per_step(manifest: Manifest, env_name: str, endpoint: str, plans: Sequence[StepPlan]) -> GpuPlan | None:
    """GPUs per step of a rollout's step plans, every arm counted (the primary, the candidate
    and a control); None when the endpoint has no GPUs. ``rollout start`` and ``analyze
    --plan`` both print this, so they cannot disagree."""
    if manifest.endpoints[endpoint].resources.gpu <= 0:
        return None
    return gpu_plan(manifest, env_name, endpoint, [(p.phase, shares(p.traffic.arms)) for p in plans])


def planned_gpus(
    manifest: Manifest,
    env_name: str,
    endpoint: str,
    policy: RolloutPolicy,
    *,
    candidate: str | None = None,
    steps: Sequence[int] | None = None,
) -> GpuPlan | None:
    """:func:`gpus_per_step` of the rollout ``rollout start`` would plan for ``policy`` (its
    strategy and control; ``steps`` in place of its steps), for a plan made before any
    rollout: the candidate defaults to the first version other than the baseline."""
    ep = manifest.endpoints[endpoint]
    if ep.resources.gpu <= 0:
        return None
    cand = candidate or next((v for v in sorted(ep.versions) if v != ep.baseline), "candidate")
    chosen = policy if steps is None else policy.model_copy(update={"steps": list(steps)})
    plans = step_plans(chosen.strategy, chosen, ep.baseline, cand, control_arm_name(ep.versions), strict=steps is None)
    return gpus_per_step(manifest, env_name, endpoint, plans)
