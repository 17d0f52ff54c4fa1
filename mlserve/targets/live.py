"""Traffic plans as the renderer's traffic states, for the kubernetes target: a router's plan
(:func:`to_render`), and the live traffic of rollouts in progress (:func:`live_traffic`) for
``render`` and ``deploy`` of a kubernetes environment. Rendering the manifest's stable split
while a canary runs would reset its weights and drop its candidate's workload, so the
rollout's own traffic is rendered instead. The rollouts come from the layer above
(:class:`~mlserve.targets.base.LiveRollout`, read from the run records by the rollout
service); nothing here reads a run directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlserve.targets.base import LiveRollout, Mode, Plan

if TYPE_CHECKING:
    from mlserve.project import Project
    from mlserve.render.traffic import EndpointTraffic


def to_render(plan: Plan, cls: Any) -> Any:
    """A traffic plan as the renderer's EndpointTraffic (one version per arm, and a control arm
    of the baseline version under its own name)."""
    baseline, candidate = plan.baseline, plan.candidate
    if plan.mode is Mode.STABLE or candidate is None:
        return cls(baseline=baseline, weights={baseline: 100})
    if plan.mode is Mode.SHADOW:
        return cls(
            baseline=baseline, candidate=candidate, mode="shadow", weights={baseline: 100, candidate: 0},
            shadow=plan.mirror_percent,
        )  # fmt: skip
    control = plan.control
    if control is not None:  # a rollout's control arm: its own workload of the baseline version
        return cls(
            baseline=baseline, candidate=candidate, mode=str(plan.mode), control=control,
            weights={n: int(a.weight) for n, a in plan.arms.items()},
        )  # fmt: skip
    versions = plan.versions
    return cls(
        baseline=baseline,
        candidate=candidate,
        mode=str(plan.mode),
        weights={baseline: int(versions.get(baseline, 0)), candidate: int(versions[candidate])},
    )


@dataclass(frozen=True)
class LiveTraffic:
    rollout: LiveRollout
    traffic: EndpointTraffic

    def describe(self) -> str:
        r, t = self.rollout, self.traffic
        split = ", ".join(f"{v} {t.weight(v)}%" for v in t.arms)
        mirror = f", mirror {t.shadow}% to {t.candidate}" if t.mode == "shadow" and t.shadow else ""
        step = f"step {r.step}/{r.steps}" if r.step else "before its first step"
        return (
            f"rollout {r.run_id} of {r.endpoint} is in progress ({r.baseline} -> {r.candidate}, "
            f"{r.status}, {step}): kept its live traffic ({t.mode}: {split}{mirror}) and the workloads of "
            f"{' and '.join(t.versions)} instead of the manifest's stable split"
        )


def render_state(rollout: LiveRollout) -> EndpointTraffic:
    """The traffic to render for a rollout in progress. One that has not moved traffic yet (its
    plan is still stable) keeps its candidate rendered at weight 0, so that a deploy made then
    creates the candidate's workload and waits for it to be ready before any request is routed
    to it."""
    from mlserve.render.traffic import EndpointTraffic

    plan = rollout.plan
    if plan.mode is Mode.STABLE or plan.candidate is None:
        return EndpointTraffic(
            rollout.baseline, rollout.candidate, "canary", {rollout.baseline: 100, rollout.candidate: 0}
        )
    traffic: EndpointTraffic = to_render(plan, EndpointTraffic)
    return traffic


def live_traffic(project: Project, env_name: str, rollouts: Mapping[str, LiveRollout]) -> dict[str, LiveTraffic]:
    """Per endpoint of ``env_name`` with a rollout in progress in that environment whose
    baseline and candidate the manifest still has."""
    out: dict[str, LiveTraffic] = {}
    manifest = project.manifest
    for name in manifest.endpoints_in(env_name):
        live = rollouts.get(name)
        versions = manifest.endpoints[name].versions
        if live is None or live.env != env_name or live.baseline not in versions or live.candidate not in versions:
            continue
        out[name] = LiveTraffic(live, render_state(live))
    return out
