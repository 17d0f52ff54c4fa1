"""The live traffic of rollouts in progress, for ``render`` and ``deploy`` of a kubernetes
environment: rendering the manifest's stable split while a canary runs would reset its weights
and drop its candidate's workload, so the rollout's own traffic is rendered instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlserve.project import Project
    from mlserve.render.traffic import EndpointTraffic


@dataclass(frozen=True)
class LiveTraffic:
    endpoint: str
    run_id: str
    status: str
    baseline: str
    candidate: str
    step: int
    steps: int
    traffic: EndpointTraffic

    def describe(self) -> str:
        t = self.traffic
        split = ", ".join(f"{v} {t.weight(v)}%" for v in t.versions)
        mirror = f", mirror {t.shadow}% to {t.candidate}" if t.mode == "shadow" and t.shadow else ""
        step = f"step {self.step}/{self.steps}" if self.step else "before its first step"
        return (
            f"rollout {self.run_id} of {self.endpoint} is in progress ({self.baseline} -> {self.candidate}, "
            f"{self.status}, {step}): kept its live traffic ({t.mode}: {split}{mirror}) and the workloads of "
            f"{' and '.join(t.versions)} instead of the manifest's stable split"
        )


def live_traffic(project: Project, env_name: str) -> dict[str, LiveTraffic]:
    """Per endpoint of ``env_name`` with a rollout in progress in that environment."""
    from mlserve.render.traffic import from_plan
    from mlserve.rollout.store import rollout_in_progress

    out: dict[str, LiveTraffic] = {}
    manifest = project.manifest
    for name in manifest.endpoints_in(env_name):
        live = rollout_in_progress(project.experiments_dir, name)
        versions = manifest.endpoints[name].versions
        if live is None or live.env != env_name or live.baseline not in versions or live.candidate not in versions:
            continue
        plan = dict(live.traffic) or {"baseline": live.baseline, "mode": "stable"}
        if plan.get("mode") == "stable" or plan.get("candidate") is None:
            plan = {**plan, "baseline": live.baseline, "candidate": live.candidate, "mode": "stable"}
        out[name] = LiveTraffic(
            endpoint=name,
            run_id=live.run_id,
            status=live.status,
            baseline=live.baseline,
            candidate=live.candidate,
            step=live.step,
            steps=live.steps,
            traffic=from_plan(plan),
        )
    return out
