"""The local target: real model servers, the gateway and Prometheus as processes on this machine.

A thin face over ``mlserve.local.lifecycle`` (processes) and the gateway's admin
client (traffic), with the same verbs a cluster target offers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mlserve.errors import TargetError
from mlserve.project import Project

if TYPE_CHECKING:
    from mlserve.local.gateway_config import EndpointStatus, Fault, GatewayState
    from mlserve.local.lifecycle import DeployResult, DownResult, StatusResult
    from mlserve.targets.local_client import LocalGatewayClient


class LocalTarget:
    kind = "local"

    def __init__(self, project: Project, env_name: str) -> None:
        self.project = project
        self.env_name = env_name

    # -- lifecycle -----------------------------------------------------------------

    def deploy(self, *, say: Callable[[str], None] = lambda _m: None, timeout: float | None = None) -> DeployResult:
        from mlserve.local.lifecycle import deploy

        return deploy(self.project, self.env_name, say=say, timeout=timeout)

    def status(self, *, probe: bool = True) -> StatusResult:
        from mlserve.local.lifecycle import status

        return status(self.project, probe=probe)

    def down(self, *, say: Callable[[str], None] = lambda _m: None) -> DownResult:
        from mlserve.local.lifecycle import down

        return down(self.project, say=say)

    def log_files(self, name: str, version: str | None = None) -> list[tuple[str, Path]]:
        from mlserve.local.lifecycle import log_files

        return log_files(self.project, name, version)

    # -- traffic -------------------------------------------------------------------

    def urls(self) -> dict[str, str]:
        """gateway_url, admin_url and prometheus_url of the running deployment."""
        from mlserve.local.lifecycle import paths_for
        from mlserve.local.state import read_json

        desired = read_json(paths_for(self.project).desired)
        if desired is None:
            raise TargetError(
                f"environment {self.env_name!r} is not deployed locally",
                hint=f"run `mlserve deploy --env {self.env_name}` first",
            )
        if desired.get("env") != self.env_name:
            raise TargetError(
                f"the local deployment runs environment {desired.get('env')!r}, not {self.env_name!r}",
                hint=f"run `mlserve deploy --env {self.env_name}`",
            )
        return {k: str(desired[k]) for k in ("gateway_url", "admin_url", "prometheus_url")}

    def client(self, timeout: float = 5.0) -> LocalGatewayClient:
        from mlserve.local.lifecycle import paths_for
        from mlserve.targets.local_client import LocalGatewayClient

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

        self.project.endpoint(endpoint, self.env_name)
        shadow = Shadow(shadow_version, shadow_percent) if shadow_version else None
        with self.client() as c:
            return c.set_traffic(endpoint, weights, mode=mode, shadow=shadow)

    def set_fault(self, endpoint: str, version: str, fault: Fault) -> EndpointStatus:
        with self.client() as c:
            return c.set_fault(endpoint, version, fault)
