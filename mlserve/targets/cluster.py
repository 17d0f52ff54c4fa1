"""The kubernetes target's factory: its Target, the router its manifest names (Istio's
VirtualService, :class:`~mlserve.targets.kubernetes.KubernetesRouter`, or the Gateway API's
HTTPRoute, :class:`~mlserve.targets.kube_router.GatewayApiRouter`) and the metrics source that
reads each arm's series through that router's plans."""

from __future__ import annotations

from mlserve.project import Project
from mlserve.targets.base import Environment, Options, Router
from mlserve.targets.kube_router import GatewayApiRouter
from mlserve.targets.kubernetes import KubernetesMetrics, KubernetesRouter, KubernetesTarget


def open_kubernetes(project: Project, env_name: str | None, options: Options) -> Environment:
    name = project.environment(env_name)
    target = KubernetesTarget(project, name, options=options)
    router: Router = KubernetesRouter(project, name)
    if project.manifest.environments[name].router_kind == "gateway-api":
        router = GatewayApiRouter(project, name)
    return Environment(name, target, router, KubernetesMetrics(project, name, router=router))
