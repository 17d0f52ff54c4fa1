"""GPUs a rollout holds, step by step, and whether a plan fits the cap and the node group.

Every arm of a step runs its own pods: the primary, the candidate and (where the plan has one)
a control. An arm's GPU need is ``resources.gpu`` x the most replicas its autoscaler may run.
By default each arm runs the endpoint's whole replica range, so a canary doubles the GPUs;
``rollout.canary_size = "weight"`` sizes the candidate and a control by their traffic share
(at least one replica) and ``rollout.scale_primary`` shrinks the primary to its share as it
loses traffic (Argo Rollouts' dynamicStableScale), which is how a GPU rollout stays within a
few extra GPUs (kserve#4748). The renderer sizes the arms with :func:`arm_replicas`, so what
is planned here is what is applied.

A plan is refused (exit 2, before any traffic moves) when a step needs more than
``rollout.max_extra_gpus`` above the stable fleet, or more than the GPU node group the cluster
layer renders can hold (its ``max_size`` x GPUs per node, less what the environment's other
endpoints of that GPU type hold). Pure functions over the manifest's models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mlserve.errors import UsageError
from mlserve.manifest.models import Manifest
from mlserve.manifest.sizing import arm_replicas


@dataclass(frozen=True)
class ArmShare:
    """One arm of one step: its role and its share of traffic (live weight, or mirrored share)."""

    arm: str
    version: str
    role: str  # primary | candidate | control (render: baseline is the primary)
    weight: int
    mirror: int = 0


@dataclass(frozen=True)
class ArmGpus:
    arm: str
    version: str
    role: str
    replicas: int  # most replicas the autoscaler may run
    gpus: int


@dataclass(frozen=True)
class StepGpus:
    step: int  # 1-based, as the CLI shows steps
    phase: str
    arms: tuple[ArmGpus, ...]
    gpus: int
    extra: int  # above the stable fleet


@dataclass(frozen=True)
class GpuPlan:
    endpoint: str
    gpu_per_replica: int
    gpu_type: str | None
    stable: int  # GPUs of the primary alone at 100%
    steps: tuple[StepGpus, ...]
    cap: int | None  # rollout.max_extra_gpus
    node_group: str | None
    node_capacity: int | None  # GPUs the node group can hold for this endpoint
    problems: tuple[str, ...]

    @property
    def peak(self) -> int:
        return max((s.gpus for s in self.steps), default=self.stable)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["peak"] = self.peak
        return out

    def line(self, step: StepGpus) -> str:
        parts = ", ".join(f"{a.arm} {a.gpus} ({a.replicas}x{self.gpu_per_replica})" for a in step.arms)
        return f"{step.gpus} GPUs ({parts}; {step.extra:+d} over the stable {self.stable})"


def node_capacity(manifest: Manifest, env_name: str, endpoint: str) -> tuple[str | None, int | None]:
    """(node group, GPUs left in it for ``endpoint``) where the cluster layer renders the group."""
    from mlserve.render.context import DEFAULT_GPU_TYPE, gpu_node_groups

    env = manifest.environments.get(env_name)
    ep = manifest.endpoints[endpoint]
    if env is None or env.target != "kubernetes" or env.cluster != "aws-eks" or ep.resources.gpu <= 0:
        return None, None
    endpoints = manifest.endpoints_in(env_name)
    gpu_type = ep.resources.gpu_type or DEFAULT_GPU_TYPE
    group = next((g for g in gpu_node_groups(endpoints) if g.gpu_type == gpu_type), None)
    if group is None:
        return None, None
    others = sum(
        o.resources.gpu * o.autoscaling.max_replicas
        for name, o in endpoints.items()
        if name != endpoint and o.resources.gpu > 0 and (o.resources.gpu_type or DEFAULT_GPU_TYPE) == gpu_type
    )
    return group.name, group.max_size * group.gpus_per_node - others


def gpu_plan(
    manifest: Manifest,
    env_name: str,
    endpoint: str,
    steps: Sequence[tuple[str, Sequence[ArmShare]]],
) -> GpuPlan:
    """GPUs per step (phase, arms) and the reasons (if any) the plan does not fit."""
    ep = manifest.endpoints[endpoint]
    per = ep.resources.gpu
    stable = per * ep.autoscaling.max_replicas
    out = []
    for i, (phase, arms) in enumerate(steps):
        rows = []
        for a in arms:
            share = a.weight if a.role in ("primary", "baseline") else max(a.weight, a.mirror)
            _lo, hi = arm_replicas(ep, a.role, share)
            rows.append(ArmGpus(a.arm, a.version, a.role, hi, per * hi))
        total = sum(r.gpus for r in rows)
        out.append(StepGpus(i + 1, phase, tuple(rows), total, total - stable))
    group, capacity = node_capacity(manifest, env_name, endpoint)
    cap = ep.rollout.max_extra_gpus
    problems = []
    if per > 0:
        for s in out:
            if cap is not None and s.extra > cap:
                problems.append(
                    f"step {s.step} ({s.phase}) needs {s.gpus} GPUs, {s.extra} above the stable {stable}: "
                    f"more than endpoints.{endpoint}.rollout.max_extra_gpus = {cap}"
                )
            if capacity is not None and s.gpus > capacity:
                problems.append(
                    f"step {s.step} ({s.phase}) needs {s.gpus} GPUs; the node group {group} holds at most "
                    f"{capacity} for {endpoint}"
                )
    return GpuPlan(endpoint, per, ep.resources.gpu_type, stable, tuple(out), cap, group, capacity, tuple(problems))


def refuse_if_over(plan: GpuPlan) -> None:
    """A usage error (exit 2) naming every step that does not fit, with the numbers."""
    if not plan.problems:
        return
    hint = (
        f'size the arms by their share (endpoints.{plan.endpoint}.rollout.canary_size = "weight", '
        "scale_primary = true), raise max_extra_gpus, or grow the GPU node group"
    )
    raise UsageError(
        f"the rollout of {plan.endpoint} does not fit its GPUs: " + "; ".join(plan.problems) + " (nothing was changed)",
        hint=hint,
    )


def shares(arms: Mapping[str, Any]) -> list[ArmShare]:
    """ArmShares from a traffic plan's arms (``mlserve.targets.base.Arm`` values)."""
    return [ArmShare(n, a.version, str(a.role), int(a.weight), int(a.mirror)) for n, a in arms.items()]
