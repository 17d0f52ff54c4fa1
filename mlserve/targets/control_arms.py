"""A rollout's control arm on a cluster, for both routers (Istio's
:class:`~mlserve.targets.kubernetes.KubernetesRouter` and the Gateway API's
:class:`~mlserve.targets.kube_router.GatewayApiRouter`).

The control is one more workload of the baseline version (an InferenceService
``ENDPOINT-ARM`` on KServe, a predictor ``ARM`` on Seldon) with the candidate's replicas and
resources. Its objects come and go with the plans that name it: a router's own ``apply``
renders them with the plan's arms, so what differs between the routers is only how a plan is
applied and what the router remembers of the objects it applied. Server-side apply never
prunes, so KServe's separate InferenceService is deleted by name when the arm stops; Seldon's
predictor leaves with its SeldonDeployment's new predictor list.

Every call is idempotent, so a crash anywhere is finished by ``rollout resume``: an arm
already in the plan is adopted, one not in it is added, stopping an arm that is gone is done.
This module imports neither router, so both inherit :class:`ControlArms` without an import
cycle (kube_router imports kubernetes lazily).
"""

from __future__ import annotations

from mlserve.errors import TargetError, ToolError
from mlserve.project import Project
from mlserve.targets.base import Arm, Mode, Plan, Role
from mlserve.tools.kubectl import Kubectl

# how long a control's workload may take to become ready before its rollout step fails
CONTROL_READY_TIMEOUT = 300.0


class ControlArms:
    """The control's lifecycle as router methods (``Router.start_arm``, ``stop_arm``, ``arms``).
    A router that inherits it supplies ``project``, ``env_name``, ``apply`` and ``current``, and
    ``forget`` where it remembers the objects it applied."""

    project: Project
    env_name: str
    control_ready_timeout: float = CONTROL_READY_TIMEOUT

    def apply(self, endpoint: str, plan: Plan) -> None:
        raise NotImplementedError

    def current(self, endpoint: str) -> Plan | None:
        raise NotImplementedError

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """An object was deleted outside :meth:`apply`: whatever the router remembers of it goes
        (nothing here: a router that re-applies its whole layer remembers no object)."""

    def start_arm(self, endpoint: str, name: str, version: str, *, candidate: str | None = None) -> None:
        """One more arm of ``version`` named ``name`` at weight 0, its objects applied by the
        router (the Gateway API router applies a growing arm before the route), and return once
        its workload is ready, so the split that follows never sends a request to a starting
        server. Before a rollout's first step the live plan has no candidate, and after a shadow
        step the candidate is only mirrored: the control is then applied beside the candidate
        at weight 0 in a split (the primary keeps all traffic). Without a candidate, nothing
        (there is no split to add a control to)."""
        plan = self.current(endpoint)
        if plan is None:
            return
        if name not in plan.arms:
            cand = plan.candidate or candidate
            if plan.candidate is not None and plan.mode is not Mode.SHADOW:
                plan = Plan(plan.mode, {**plan.arms, name: Arm(version, 0, Role.CONTROL)})
            elif cand is not None:
                # a control joins a split, never a mirror: after a shadow step (whose plan has
                # the candidate mirrored), the step that needs the control is a split
                plan = Plan.controlled(Mode.CANARY, plan.baseline, cand, name, 0)
            else:
                return
            self.apply(endpoint, plan)
        self.wait_ready(endpoint, name)

    def wait_ready(self, endpoint: str, name: str) -> None:
        """Block until the control's workload reports ready (KServe's ``Ready`` condition on its
        InferenceService, Seldon's ``Available`` state of the SeldonDeployment that gained the
        predictor); TargetError (exit 1) naming the object after ``control_ready_timeout``."""
        env = self.project.manifest.environments[self.env_name]
        namespace = env.namespace or "default"
        if env.serving == "seldon":
            obj, condition = (
                f"seldondeployments.machinelearning.seldon.io/{endpoint}",
                "jsonpath={.status.state}=Available",
            )
        else:
            obj, condition = f"{self._kserve_kind(endpoint)[1]}/{endpoint}-{name}", "condition=Ready"
        context = kube_context(self.project, self.env_name)
        try:
            Kubectl(context).wait_for(obj, condition, namespace=namespace, timeout=self.control_ready_timeout)
        except ToolError as exc:
            raise TargetError(
                f"control arm {name!r} of {endpoint} was not ready within {self.control_ready_timeout:g}s "
                f"({obj}, {condition}); no traffic was moved to it: {exc.message}",
                hint=f"kubectl --context {context} -n {namespace} describe {obj} shows why; "
                f"`mlserve rollout resume {endpoint}` tries again",
            ) from None

    def stop_arm(self, endpoint: str, name: str) -> None:
        """The routes stop naming the arm (applied again if the last plan still does), then the
        objects that a re-render does not remove are deleted."""
        plan = self.current(endpoint)
        if plan is not None and name in plan.arms:
            self.apply(endpoint, plan.without_control())
        env = self.project.manifest.environments[self.env_name]
        if env.serving == "seldon":
            return
        namespace = env.namespace or "default"
        obj = f"{endpoint}-{name}"
        kind, resource = self._kserve_kind(endpoint)
        # the arm's own objects: its workload, and behind the Gateway API an LLM arm's
        # InferencePool or Service (the route no longer names them)
        owned = [(kind, resource, obj)]
        from mlserve.render.kubernetes import LLM_ARM_SERVICE_SUFFIX, inference_pools

        if kind == "LLMInferenceService" and env.router_kind == "gateway-api":
            ep = self.project.manifest.endpoints[endpoint]
            if inference_pools(ep, env):
                owned.append(("InferencePool", "inferencepools.inference.networking.k8s.io", obj))
            else:
                owned.append(("Service", "service", f"{obj}{LLM_ARM_SERVICE_SUFFIX}"))
        kubectl = Kubectl(kube_context(self.project, self.env_name))
        for kind_name, res, object_name in owned:
            kubectl.delete_object(res, object_name, namespace=namespace)
            self.forget(kind_name, namespace, object_name)

    def _kserve_kind(self, endpoint: str) -> tuple[str, str]:
        """(kind, kubectl resource) of a KServe arm's workload: an LLM endpoint's versions are
        LLMInferenceServices, the others InferenceServices."""
        from mlserve.render.kubernetes import llm_service

        if llm_service(self.project.manifest.endpoints[endpoint], "kserve"):
            return "LLMInferenceService", "llminferenceservices.serving.kserve.io"
        return "InferenceService", "inferenceservices.serving.kserve.io"

    def arms(self, endpoint: str) -> tuple[str, ...]:
        """The control arm the router's last plan routes to, if any."""
        plan = self.current(endpoint)
        return () if plan is None or plan.control is None else (plan.control,)


def kube_context(project: Project, env_name: str) -> str:
    """The environment's kubectl context: ``kube_context``, or for ``aws-eks`` the cluster name."""
    env = project.manifest.environments[env_name]
    if env.kube_context:
        return env.kube_context
    from mlserve.render.context import cluster_name

    return str(cluster_name(project.manifest, env_name))
