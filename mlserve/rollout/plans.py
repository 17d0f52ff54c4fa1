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

from collections.abc import Iterable

from mlserve.errors import UsageError
from mlserve.manifest.models import RolloutPolicy
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
    strategy: str, policy: RolloutPolicy, baseline: str, candidate: str, control: str = CONTROL_ARM
) -> tuple[StepPlan, ...]:
    """``control``: the control arm's name (used on canary steps when ``policy.control`` is ``replica``)."""
    plans: list[StepPlan] = []
    if strategy in ("shadow", "shadow+canary"):
        plans.append(StepPlan("shadow", Plan.shadow(baseline, candidate, policy.shadow_percent)))
    if strategy in ("canary", "shadow+canary"):
        weights = [w for w in policy.steps if w < 100]
        if not weights:
            raise UsageError("rollout.steps has no step below 100%: a canary needs at least one analysis step")
        for w in weights:
            if policy.control == "replica":
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
