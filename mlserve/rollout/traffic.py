"""How a rollout moves traffic and where it reads metrics, per target.

A :class:`Plan` is the whole routing of one endpoint (a full replacement, never a delta),
so applying the same plan twice is harmless: that is what makes a transition that was
interrupted after its intent was persisted safe to re-apply.

- local: the gateway's admin API (``LocalTarget.set_traffic``); metrics from the local
  Prometheus, query set ``local``.
- kubernetes: re-render the environment with the new traffic state (only ``traffic.yaml``
  changes) and ``kubectl apply --server-side`` the kubernetes layer through
  ``mlserve.tools.kubectl``; metrics from ``prometheus_url``, query set ``istio`` (KServe
  versions behind the Istio router) or ``seldon`` (the Seldon executor).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlserve.errors import TargetError
from mlserve.project import Project

QueryFn = Callable[[str, float], list[tuple[dict[str, str], float]]]


@dataclass(frozen=True)
class Plan:
    """Where one endpoint's requests go. ``mode``: stable | canary | ab | shadow."""

    baseline: str
    candidate: str | None
    mode: str
    weights: Mapping[str, int]
    shadow_percent: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "mode": self.mode,
            "weights": dict(self.weights),
            "shadow_percent": self.shadow_percent,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            baseline=str(data["baseline"]),
            candidate=data.get("candidate"),
            mode=str(data["mode"]),
            weights={str(k): int(v) for k, v in dict(data["weights"]).items()},
            shadow_percent=int(data.get("shadow_percent", 0)),
        )


def stable_plan(version: str) -> Plan:
    return Plan(baseline=version, candidate=None, mode="stable", weights={version: 100})


class Driver(Protocol):
    kind: str
    source: str
    namespace: str

    def apply(self, endpoint: str, plan: Plan) -> None: ...

    def query(self) -> QueryFn: ...

    def describe(self) -> str: ...


@dataclass
class LocalDriver:
    project: Project
    env_name: str
    kind: str = "local"
    source: str = "local"
    namespace: str = ""

    def _target(self) -> Any:
        from mlserve.targets.local import LocalTarget

        return LocalTarget(self.project, self.env_name)

    def apply(self, endpoint: str, plan: Plan) -> None:
        target = self._target()
        if plan.mode == "shadow":
            assert plan.candidate is not None
            target.set_traffic(
                endpoint,
                {plan.baseline: 100},
                mode="split",
                shadow_version=plan.candidate,
                shadow_percent=plan.shadow_percent,
            )
        else:
            mode = "sticky" if plan.mode == "ab" else "split"
            target.set_traffic(endpoint, dict(plan.weights), mode=mode)

    def query(self) -> QueryFn:
        return prometheus(self._target().prometheus_url(), timeout=5.0)

    def describe(self) -> str:
        return f"local gateway of environment {self.env_name!r}"

    def shadow_samples(self, endpoint: str) -> list[dict[str, Any]]:
        """Recent (routed, mirrored) generation pairs of an LLM endpoint, redacted and truncated
        by the gateway (``.mlserve/local/llm-shadow-samples.json``); none for V2 endpoints."""
        import json

        from mlserve.local.state import LocalPaths

        path = LocalPaths(self.project.state_dir).local_dir / "llm-shadow-samples.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        got = data.get("endpoints", {}).get(endpoint, []) if isinstance(data, dict) else []
        return [x for x in got if isinstance(x, dict)][-5:]


@dataclass
class KubernetesDriver:
    """Re-render + ``kubectl apply --server-side``; other endpoints keep their live traffic."""

    project: Project
    env_name: str
    others: Callable[[], Mapping[str, Plan]] = field(default=lambda: {})
    kind: str = "kubernetes"
    source: str = "istio"
    namespace: str = ""
    render_root: Path | None = None
    last_applied: Path | None = None

    def __post_init__(self) -> None:
        env = self.project.manifest.environments[self.env_name]
        self.source = "seldon" if env.serving == "seldon" else "istio"
        self.namespace = env.namespace or ""
        if self.render_root is None:
            self.render_root = self.project.state_dir / "rollout-render"

    def context(self) -> str:
        env = self.project.manifest.environments[self.env_name]
        if env.kube_context:
            return env.kube_context
        from mlserve.render.context import cluster_name

        return str(cluster_name(self.project.manifest, self.env_name))

    def traffic_state(self, endpoint: str, plan: Plan) -> dict[str, Any]:
        from mlserve.render import EndpointTraffic

        states: dict[str, Any] = {}
        for name, other in self.others().items():
            if name != endpoint:
                states[name] = to_render(other, EndpointTraffic)
        states[endpoint] = to_render(plan, EndpointTraffic)
        return states

    def apply(self, endpoint: str, plan: Plan) -> None:
        from mlserve.render import render_environment
        from mlserve.tools.kubectl import Kubectl

        assert self.render_root is not None
        result = render_environment(
            self.project, self.env_name, self.render_root, traffic=self.traffic_state(endpoint, plan)
        )
        folder = dict(result.layer_dirs).get("kubernetes")
        if folder is None:
            raise TargetError(f"environment {self.env_name!r} rendered no kubernetes layer")
        Kubectl(self.context()).apply(Path(folder))
        self.last_applied = Path(folder)

    def query(self) -> QueryFn:
        env = self.project.manifest.environments[self.env_name]
        url = os.environ.get("MLSERVE_PROMETHEUS_URL") or env.prometheus_url
        if not url:
            raise TargetError(
                f"environment {self.env_name!r} has no prometheus_url",
                hint="set prometheus_url in mlserve.toml, or MLSERVE_PROMETHEUS_URL (e.g. a port-forward)",
            )
        return prometheus(url, timeout=10.0)

    def describe(self) -> str:
        return f"kubernetes environment {self.env_name!r} (kubectl context {self.context()})"


def prometheus(url: str, timeout: float) -> QueryFn:
    """A PrometheusQuery that fails fast: prometheus-api-client mounts a retrying adapter
    (several attempts with back-off), which turned one held look into ~26 s of waiting
    against a stopped Prometheus. A look is retried at the next interval anyway."""
    from mlserve.metrics import PrometheusQuery

    q = PrometheusQuery(url, timeout=timeout)
    session = getattr(getattr(q, "_conn", None), "_session", None)
    if session is not None:
        from requests.adapters import HTTPAdapter

        session.mount(q.url, HTTPAdapter(max_retries=0))
    return q


def to_render(plan: Plan, cls: Any) -> Any:
    """A rollout Plan as the renderer's EndpointTraffic."""
    if plan.mode == "stable" or plan.candidate is None:
        return cls(baseline=plan.baseline, weights={plan.baseline: 100})
    if plan.mode == "shadow":
        return cls(
            baseline=plan.baseline,
            candidate=plan.candidate,
            mode="shadow",
            weights={plan.baseline: 100, plan.candidate: 0},
            shadow=plan.shadow_percent,
        )
    return cls(
        baseline=plan.baseline,
        candidate=plan.candidate,
        mode=plan.mode,
        weights={
            plan.baseline: int(plan.weights.get(plan.baseline, 0)),
            plan.candidate: int(plan.weights[plan.candidate]),
        },
    )


def driver_for(project: Project, env_name: str, others: Callable[[], Mapping[str, Plan]] | None = None) -> Driver:
    env = project.manifest.environments[env_name]
    if env.target == "local":
        return LocalDriver(project, env_name)
    return KubernetesDriver(project, env_name, others=others or (lambda: {}))
