"""The local target: real model servers, the gateway and Prometheus as processes on this machine.

- :class:`LocalTarget`: deploy / status / teardown / logs through ``mlserve.local.lifecycle``
  (and the gateway's admin client for traffic and faults, used by tests and rollbacks).
- :class:`GatewayRouter`: a traffic plan is one ``PUT /admin/endpoints/EP/traffic`` on the
  gateway's admin API (a full replacement); a rollout's control arm is one more model-server
  process (``mlserve.local.arms``), added and removed without a dropped request.
- :class:`LocalMetrics`: looks from the local Prometheus (query set ``local``, the gateway's
  ``mlserve_llm_*`` series for LLM endpoints' token streams), settling one scrape interval
  after a weight change; it counts shadow agreement (of predictions, or of generated text),
  attaches the gateway's example generation pairs to an LLM shadow's look, and can take
  ``--load``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mlserve.errors import TargetError, UsageError
from mlserve.metrics import Collected, LookRequest, QueryFn
from mlserve.project import Project
from mlserve.targets.base import (
    Arm,
    Capabilities,
    ClientAccess,
    DeployRequest,
    Environment,
    LogFile,
    Mode,
    Options,
    Pin,
    Plan,
    Role,
)

if TYPE_CHECKING:
    from mlserve.local.admin_client import LocalGatewayClient
    from mlserve.local.gateway_config import EndpointStatus, Fault, GatewayState
    from mlserve.local.lifecycle import DeployResult, DownResult, StatusResult


def _quiet(_msg: str) -> None:
    return None


class LocalTarget:
    kind = "local"
    layered = False  # no layers: `mlserve plan` and `mlserve destroy` are for kubernetes environments
    access = ClientAccess(Pin.PATH, loopback_only=True)  # the gateway pins a version by path

    def __init__(self, project: Project, env_name: str | None, options: Options | None = None) -> None:
        self.project = project
        self.env_name = env_name  # None: the project's local processes, whichever environment runs
        self.options = options or Options()

    # -- lifecycle -----------------------------------------------------------------

    def plan(self, layer: str | None = None) -> Any:
        raise UsageError(
            f"environment {self.env_name!r} is local: `mlserve plan` works on kubernetes environments",
            hint="`mlserve deploy` / `mlserve down` run and stop a local environment",
        )

    def deploy(self, request: DeployRequest) -> DeployResult:
        """Rollouts in progress (``options.rollouts``) keep their weights and arms."""
        from mlserve.local.lifecycle import KeptRollout, deploy

        kept = [
            KeptRollout(
                endpoint=r.endpoint, run_id=r.run_id, status=r.status, baseline=r.baseline, candidate=r.candidate,
                step=r.step, steps=r.steps, weights=dict(r.plan.weights),
            )
            for r in self.options.rollouts.values()
        ]  # fmt: skip
        return deploy(self.project, self._env(), say=self.options.say or _quiet, timeout=request.timeout, rollouts=kept)

    def status(self) -> StatusResult:
        from mlserve.local.lifecycle import status

        return status(self.project, probe=True)

    def teardown(self, layer: str | None = None) -> DownResult:
        from mlserve.local.lifecycle import down

        return down(self.project, say=self.options.say or _quiet)

    def logs(self, name: str, version: str | None = None) -> list[LogFile]:
        from mlserve.local.lifecycle import log_files

        return [LogFile(label, path) for label, path in log_files(self.project, name, version)]

    def entry_url(self) -> str:
        return self.gateway_url()

    def _env(self) -> str:
        return self.project.environment(self.env_name)

    # -- the running deployment ------------------------------------------------------

    def urls(self) -> dict[str, str]:
        """gateway_url, admin_url and prometheus_url of the running deployment."""
        from mlserve.local.lifecycle import paths_for
        from mlserve.local.state import read_json

        env_name = self._env()
        desired = read_json(paths_for(self.project).desired)
        if desired is None:
            raise TargetError(
                f"environment {env_name!r} is not deployed locally",
                hint=f"run `mlserve deploy --env {env_name}` first",
            )
        if desired.get("env") != env_name:
            raise TargetError(
                f"the local deployment runs environment {desired.get('env')!r}, not {env_name!r}",
                hint=f"run `mlserve deploy --env {env_name}`",
            )
        return {k: str(desired[k]) for k in ("gateway_url", "admin_url", "prometheus_url")}

    def client(self, timeout: float = 5.0) -> LocalGatewayClient:
        from mlserve.local.admin_client import LocalGatewayClient
        from mlserve.local.lifecycle import paths_for

        return LocalGatewayClient.from_token_file(
            self.urls()["admin_url"], paths_for(self.project).admin_token, timeout=timeout
        )

    def gateway_url(self) -> str:
        return self.urls()["gateway_url"]

    def prometheus_url(self) -> str:
        return self.urls()["prometheus_url"]

    def traffic(self) -> GatewayState:
        with self.client() as c:
            return c.state(probe=False)

    def set_traffic(
        self,
        endpoint: str,
        weights: Mapping[str, int],
        *,
        mode: str = "split",
        shadow_version: str | None = None,
        shadow_percent: int = 100,
    ) -> EndpointStatus:
        from mlserve.local.gateway_config import Shadow

        self.project.endpoint(endpoint, self._env())
        shadow = Shadow(shadow_version, shadow_percent) if shadow_version else None
        with self.client() as c:
            return c.set_traffic(endpoint, weights, mode=mode, shadow=shadow)

    def set_fault(self, endpoint: str, version: str, fault: Fault) -> EndpointStatus:
        with self.client() as c:
            return c.set_fault(endpoint, version, fault)


class GatewayRouter:
    """Traffic plans on the local gateway's admin API."""

    def __init__(self, target: LocalTarget) -> None:
        self.target = target

    def apply(self, endpoint: str, plan: Plan) -> None:
        """The gateway's weights are keyed by arm: a control arm (started by :meth:`start_arm`)
        is routed under its own name, the other arms are named after their versions."""
        if plan.mode is Mode.SHADOW:
            mirrored = next(a for a in plan.arms.values() if a.mirror)
            self.target.set_traffic(
                endpoint, {plan.baseline: 100}, mode="split", shadow_version=mirrored.version,
                shadow_percent=mirrored.mirror,
            )  # fmt: skip
            return
        mode = "sticky" if plan.mode is Mode.AB else "split"
        weights = plan.versions if plan.control is None else {n: a.weight for n, a in plan.arms.items()}
        self.target.set_traffic(endpoint, weights, mode=mode)

    def start_arm(self, endpoint: str, name: str, version: str, *, candidate: str | None = None) -> None:
        """One more model-server process of ``version`` as arm ``name`` (mlserve.local.arms),
        routed at weight 0 once ready; a running arm of that name and version is adopted."""
        from mlserve.local.arms import list_arms, start_arm, stop_arm

        found = next((a for a in list_arms(self.target.project) if (a.endpoint, a.name) == (endpoint, name)), None)
        if found is not None and found.version == version:
            return
        env = self.target._env()
        if found is not None:  # an arm of that name serving something else: not ours to keep
            stop_arm(self.target.project, env, endpoint, name, say=self.target.options.say or _quiet)
        start_arm(self.target.project, env, endpoint, name, version, say=self.target.options.say or _quiet)

    def stop_arm(self, endpoint: str, name: str) -> None:
        """Drain and stop arm ``name``; nothing to do when it does not run."""
        from mlserve.local.arms import stop_arm

        if name not in self.arms(endpoint):
            return
        stop_arm(self.target.project, self.target._env(), endpoint, name, say=self.target.options.say or _quiet)

    def arms(self, endpoint: str) -> tuple[str, ...]:
        from mlserve.local.arms import list_arms

        return tuple(a.name for a in list_arms(self.target.project) if a.endpoint == endpoint)

    def current(self, endpoint: str) -> Plan | None:
        state = self.target.traffic().endpoints.get(endpoint)
        if state is None:
            return None
        traffic = state.traffic
        weights = {v: w for v, w in dict(traffic.weights).items() if w or v == state.baseline}
        if traffic.shadow is not None:
            return Plan.shadow(state.baseline, traffic.shadow.version, traffic.shadow.percent)
        extra = {a.name: a.version for a in self._extra(endpoint)}
        if any(v in extra for v in weights):
            arms = {
                v: Arm(extra.get(v, v), w, Role.CONTROL if v in extra else
                       Role.PRIMARY if v == state.baseline else Role.CANDIDATE)
                for v, w in weights.items()
            }  # fmt: skip
            return Plan(Mode.AB if traffic.mode == "sticky" else Mode.CANARY, arms)
        others = [v for v in weights if v != state.baseline]
        if not others:
            return Plan.stable(state.baseline)
        if len(others) == 1:
            mode = Mode.AB if traffic.mode == "sticky" else Mode.CANARY
            return Plan.split(mode, state.baseline, others[0], weights[others[0]])
        arms = {v: Arm(v, w, Role.PRIMARY if v == state.baseline else Role.CANDIDATE) for v, w in weights.items()}
        return Plan(Mode.AB if traffic.mode == "sticky" else Mode.CANARY, arms)

    def _extra(self, endpoint: str) -> list[Any]:
        from mlserve.local.arms import list_arms

        return [a for a in list_arms(self.target.project) if a.endpoint == endpoint]

    def describe(self) -> str:
        return f"local gateway of environment {self.target.env_name!r}"


class LocalMetrics:
    """Looks from the local Prometheus, which scrapes the gateway's ``mlserve_*`` series."""

    capabilities = Capabilities(shadow_agreement=True, background_load=True, query_set="local", llm_query_set="local")

    def __init__(self, target: LocalTarget, query: QueryFn | None = None) -> None:
        self.target = target
        self._query = query

    def query(self) -> QueryFn:
        if self._query is None:
            from mlserve.metrics import prometheus_query

            self._query = prometheus_query(self.target.prometheus_url(), timeout=5.0)
        return self._query

    def look(self, request: LookRequest, previous: Mapping[str, Any] | None) -> Collected:
        from mlserve.metrics import collect_look

        caps = self.capabilities
        llm = caps.llm_query_set if request.token_streams else None
        request = replace(request, source=caps.query_set, namespace="", llm_source=llm)
        if request.shadow:
            from mlserve.metrics.shadow import collect_gateway_shadow_look

            got = collect_gateway_shadow_look(self.query(), request, previous)
            return replace(got, samples=self._shadow_samples(request))
        return collect_look(self.query(), request, previous)

    def _shadow_samples(self, request: LookRequest) -> tuple[dict[str, Any], ...]:
        """An LLM endpoint's latest (routed, mirrored) generation pairs since the step's anchor."""
        ep = self.target.project.manifest.endpoints.get(request.endpoint)
        if ep is None or ep.api != "openai":
            return ()
        from mlserve.local.lifecycle import paths_for
        from mlserve.local.state import read_shadow_samples

        return read_shadow_samples(paths_for(self.target.project), request.endpoint, request.started_at)

    def settle_seconds(self) -> float:
        """One scrape interval after a weight change, the first scrape has seen only the new split."""
        env = self.target.project.manifest.environments[self.target._env()]
        return float(env.scrape_interval) + 0.5


def open_local(project: Project, env_name: str | None, options: Options) -> Environment:
    target = LocalTarget(project, env_name, options)
    return Environment(env_name or "", target, GatewayRouter(target), LocalMetrics(target))
