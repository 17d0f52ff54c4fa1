"""The steps a strategy walks, as traffic plans.

A canary step of 100% is the promotion itself (at 100% there is no baseline traffic left
to compare with), so it is not an analysis step.
"""

from __future__ import annotations

from mlserve.errors import UsageError
from mlserve.manifest.models import RolloutPolicy
from mlserve.rollout.record import StepPlan
from mlserve.targets.base import Mode, Plan

STRATEGIES = ("canary", "shadow", "ab", "shadow+canary")
AB_PERCENT = 50


def step_plans(strategy: str, policy: RolloutPolicy, baseline: str, candidate: str) -> tuple[StepPlan, ...]:
    plans: list[StepPlan] = []
    if strategy in ("shadow", "shadow+canary"):
        plans.append(StepPlan("shadow", Plan.shadow(baseline, candidate, policy.shadow_percent)))
    if strategy in ("canary", "shadow+canary"):
        weights = [w for w in policy.steps if w < 100]
        if not weights:
            raise UsageError("rollout.steps has no step below 100%: a canary needs at least one analysis step")
        for w in policy.steps:
            if w >= 100:
                break
            plans.append(StepPlan("canary", Plan.split(Mode.CANARY, baseline, candidate, w)))
    if strategy == "ab":
        plans.append(StepPlan("ab", Plan.split(Mode.AB, baseline, candidate, AB_PERCENT)))
    return tuple(plans)
