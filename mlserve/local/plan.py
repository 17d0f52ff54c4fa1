"""From a manifest environment to the processes the supervisor must keep running.

``build_plan`` is where deploy's decisions live: every port (fixed in the manifest,
kept from the previous deploy so that an unchanged process is not restarted, or a
free one), every generated file (MLServer settings, gateway config, prometheus.yml),
GPU pinning, and a fingerprint per process that changes exactly when that process
must be restarted. It decides and installs nothing: what must exist first (the seldon
runtime's virtual environment) is prepared by ``provision``, and ``checked_endpoints``
fails fast on what would stop a deploy before either runs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve.errors import TargetError, UsageError
from mlserve.local import gpu as gpu_mod
from mlserve.local.ports import check_free, free_port, port_in_use
from mlserve.local.prometheus import ScrapeTarget, prometheus_argv, prometheus_binary, render_config
from mlserve.local.servers import EXTRA_PORTS, ServerLaunch, check_runtime, launch_for
from mlserve.local.state import DESIRED_FORMAT, LocalPaths, ProcessSpec
from mlserve.manifest.models import Endpoint
from mlserve.project import Project

GATEWAY = "gateway"
PROMETHEUS = "prometheus"


@dataclass(frozen=True)
class Plan:
    env_name: str
    processes: list[ProcessSpec]
    files: dict[str, str]  # absolute path -> content, written before the supervisor reconciles
    gateway_url: str
    admin_url: str
    prometheus_url: str
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def by_name(self) -> dict[str, ProcessSpec]:
        return {p.name: p for p in self.processes}

    def desired_document(self, generation: int, project_root: Path) -> dict[str, Any]:
        return {
            "format": DESIRED_FORMAT,
            "generation": generation,
            "env": self.env_name,
            "project_root": str(project_root),
            "gateway_url": self.gateway_url,
            "admin_url": self.admin_url,
            "prometheus_url": self.prometheus_url,
            "processes": [p.__dict__ for p in self.processes],
        }


def process_name(endpoint: str, version: str) -> str:
    return f"{endpoint}/{version}"


def log_name(name: str) -> str:
    return name.replace("/", ".") + ".log"


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class _Ports:
    """Hands out ports: fixed ones checked, previous ones kept, new ones free and distinct."""

    def __init__(self, previous: dict[str, dict[str, int]], ours: set[int]) -> None:
        self.previous = previous
        self.ours = ours  # ports held by processes of this project that run now
        self.used: dict[int, str] = {}

    def take(self, name: str, role: str, fixed: int | None, key: str | None) -> int:
        if fixed is not None:
            if fixed in self.used:
                raise TargetError(f"{key} = {fixed} is also used by {self.used[fixed]}")
            if fixed not in self.ours:
                check_free(fixed, key or f"{name}.{role}")
            self.used[fixed] = key or f"{name} ({role})"
            return fixed
        prev = self.previous.get(name, {}).get(role)
        if prev and prev not in self.used and (prev in self.ours or not port_in_use(prev)):
            self.used[prev] = f"{name} ({role})"
            return prev
        port = free_port(avoid=[*self.used, *self.ours])
        self.used[port] = f"{name} ({role})"
        return port


@dataclass(frozen=True)
class Provisioned:
    """What must exist before a plan can name it: the seldon runtime's isolated python."""

    seldon_python: str | None = None


def checked_endpoints(project: Project, env_name: str) -> dict[str, Endpoint]:
    """The environment's endpoints, once every precondition of a deploy holds (fast checks:
    raise before anything is installed or started)."""
    env = project.manifest.environments[env_name]
    if env.target != "local":
        raise UsageError(f"environment {env_name!r} has target = {env.target!r}, not 'local'")
    endpoints = project.manifest.endpoints_in(env_name)
    if not endpoints:
        raise UsageError(f"environments.{env_name}.endpoints: no endpoint to deploy")
    for ep_name, ep in endpoints.items():
        check_runtime(ep_name, ep)
    prometheus_binary()
    return endpoints


def provision(project: Project, env_name: str, paths: LocalPaths, say: Callable[[str], None]) -> Provisioned:
    """Prepare what the plan's processes need (slow, may install packages): for the seldon
    runtime, one isolated virtual environment for every seldon version."""
    endpoints = checked_endpoints(project, env_name)
    seldon = [(e, v, ver) for e, ep in endpoints.items() if ep.runtime == "seldon" for v, ver in ep.versions.items()]
    if not seldon:
        return Provisioned()
    from mlserve.local.seldon_env import provision_seldon
    from mlserve.local.servers import resolve_model_path

    dirs = [resolve_model_path(project.root, e, v, ver) for e, v, ver in seldon]
    return Provisioned(seldon_python=provision_seldon(project.root, dirs, paths.seldon_venv, say))


def build_plan(
    project: Project,
    env_name: str,
    paths: LocalPaths,
    *,
    previous: dict[str, Any] | None,
    running_ports: set[int],
    provisioned: Provisioned = Provisioned(),
    gpus: list[int] | None = None,
) -> Plan:
    """Everything deploy needs to hand to the supervisor: decisions only (ports, files,
    fingerprints), nothing installed or started; raises before anything starts."""
    endpoints = checked_endpoints(project, env_name)
    ports = _Ports(_previous_ports(previous), running_ports)
    # GPUs: one plan for all versions that ask for them.
    demands = {
        process_name(e, v): ep.resources.gpu for e, ep in endpoints.items() for v in ep.versions if ep.resources.gpu
    }
    gpu_plan = gpu_mod.assign(demands, gpu_mod.list_gpus() if gpus is None and demands else (gpus or []))
    models = _model_processes(project, paths, endpoints, ports, gpu_plan, provisioned)
    gateway = _gateway_process(project, env_name, paths, endpoints, ports, models)
    prom = _prometheus_process(project, env_name, paths, ports, models, gateway)
    return Plan(
        env_name=env_name,
        processes=[*models.processes, gateway.process, prom.process],
        files={**models.files, **gateway.files, **prom.files},
        gateway_url=f"http://127.0.0.1:{gateway.process.port}",
        admin_url=f"http://127.0.0.1:{gateway.process.ports['admin']}",
        prometheus_url=f"http://127.0.0.1:{prom.process.port}",
        notes=list(gpu_plan.notes),
        warnings=list(gpu_plan.warnings),
    )


@dataclass(frozen=True)
class _Part:
    processes: list[ProcessSpec]
    files: dict[str, str]
    upstreams: dict[str, dict[str, str]] = field(default_factory=dict)
    scrape: list[ScrapeTarget] = field(default_factory=list)

    @property
    def process(self) -> ProcessSpec:
        return self.processes[0]


def _previous_ports(previous: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for proc in (previous or {}).get("processes", []):
        if isinstance(proc, dict) and isinstance(proc.get("ports"), dict):
            out[str(proc.get("name"))] = {str(k): int(v) for k, v in proc["ports"].items()}
    return out


def _model_processes(
    project: Project,
    paths: LocalPaths,
    endpoints: dict[str, Endpoint],
    ports: _Ports,
    gpu_plan: Any,
    provisioned: Provisioned,
) -> _Part:
    processes: list[ProcessSpec] = []
    files: dict[str, str] = {}
    upstreams: dict[str, dict[str, str]] = {}
    scrape: list[ScrapeTarget] = []
    for ep_name, ep in endpoints.items():
        upstreams[ep_name] = {}
        for v_name, version in ep.versions.items():
            name = process_name(ep_name, v_name)
            role_ports = {"http": ports.take(name, "http", version.port, f"endpoints.{ep_name}.versions.{v_name}.port")}
            for role in EXTRA_PORTS[ep.runtime]:
                role_ports[role] = ports.take(name, role, None, None)
            launch: ServerLaunch = launch_for(
                root=project.root,
                server_dir=paths.servers_dir / f"{ep_name}.{v_name}",
                endpoint_name=ep_name,
                endpoint=ep,
                version_name=v_name,
                version=version,
                ports=role_ports,
                seldon_python=provisioned.seldon_python,
            )
            files.update(launch.files)
            env_vars = {**launch.env, **gpu_plan.env_for(name)}
            processes.append(
                ProcessSpec(
                    name=name,
                    kind="model",
                    argv=launch.argv,
                    env=env_vars,
                    cwd=launch.cwd,
                    port=role_ports["http"],
                    log_path=str(paths.logs_dir / log_name(name)),
                    health_url=launch.health_url,
                    fingerprint=fingerprint(launch.argv, env_vars, launch.cwd, launch.files, launch.stamp),
                    endpoint=ep_name,
                    version=v_name,
                    metrics_url=launch.metrics_url,
                    ports=role_ports,
                    start_timeout=launch.start_timeout,
                )
            )
            upstreams[ep_name][v_name] = f"http://127.0.0.1:{role_ports['http']}"
            if launch.metrics_url:
                address, _, path = launch.metrics_url.removeprefix("http://").partition("/")
                scrape.append(
                    ScrapeTarget(
                        job="mlserve-model-servers",
                        address=address,
                        metrics_path="/" + path,
                        labels={"endpoint": ep_name, "version": v_name, "runtime": ep.runtime},
                    )
                )
    return _Part(processes, files, upstreams, scrape)


def _gateway_process(
    project: Project, env_name: str, paths: LocalPaths, endpoints: dict[str, Endpoint], ports: _Ports, models: _Part
) -> _Part:
    """Initial traffic is 100% to each baseline, mode split. A running gateway keeps its live
    weights in the traffic state file across restarts."""
    from mlserve.local.gateway_config import EndpointConfig, Fault, GatewayConfig, TrafficState

    env = project.manifest.environments[env_name]
    gw_port = ports.take(GATEWAY, "http", env.gateway_port, f"environments.{env_name}.gateway_port")
    admin_port = ports.take(GATEWAY, "admin", env.admin_port, f"environments.{env_name}.admin_port")
    gw_endpoints = {}
    for ep_name, ep in endpoints.items():
        faults = {v: Fault.from_manifest(f) for v, f in env.faults.get(ep_name, {}).items()}
        gw_endpoints[ep_name] = EndpointConfig(
            versions=models.upstreams[ep_name],
            baseline=ep.baseline,
            traffic=TrafficState(weights={ep.baseline: 100}).validated(list(ep.versions)),
            sticky_header=ep.rollout.sticky_header,
            sticky_cookie=ep.rollout.sticky_cookie,
            faults=faults,
            protocol=ep.api,
            text_match=ep.rollout.shadow_text_match,
            similarity=ep.rollout.shadow_similarity,
        )
    gw_config = GatewayConfig(
        port=gw_port,
        admin_port=admin_port,
        admin_token_file=paths.admin_token,
        state_file=paths.local_dir / "traffic.json",
        endpoints=gw_endpoints,
    )
    gw_text = json.dumps(gw_config.to_dict(), indent=2, sort_keys=True) + "\n"
    gw_argv = [sys.executable, "-m", "mlserve.local.gateway", "--config", str(paths.gateway_config)]
    process = ProcessSpec(
        name=GATEWAY,
        kind="gateway",
        argv=gw_argv,
        env={"PYTHONUNBUFFERED": "1"},
        cwd=str(project.root),
        port=gw_port,
        log_path=str(paths.logs_dir / "gateway.log"),
        health_url=f"http://127.0.0.1:{gw_port}/v2/health/live",
        fingerprint=fingerprint(gw_argv, gw_text, _gateway_code_stamp()),
        metrics_url=f"http://127.0.0.1:{gw_port}/metrics",
        ports={"http": gw_port, "admin": admin_port},
        start_timeout=60.0,
    )
    return _Part([process], {str(paths.gateway_config): gw_text})


def _prometheus_process(
    project: Project, env_name: str, paths: LocalPaths, ports: _Ports, models: _Part, gateway: _Part
) -> _Part:
    env = project.manifest.environments[env_name]
    gw_port = gateway.process.port
    scrape = [
        ScrapeTarget(job="mlserve-gateway", address=f"127.0.0.1:{gw_port}", metrics_path="/metrics", labels={}),
        *models.scrape,
    ]
    prom_port = ports.take(PROMETHEUS, "http", env.prometheus_port, f"environments.{env_name}.prometheus_port")
    prom_text = render_config(project.manifest.project.name, env.scrape_interval, scrape)
    prom_argv = prometheus_argv(
        prometheus_binary(), config=str(paths.prometheus_config), data_dir=str(paths.prometheus_data), port=prom_port
    )
    process = ProcessSpec(
        name=PROMETHEUS,
        kind="prometheus",
        argv=prom_argv,
        env={},
        cwd=str(project.root),
        port=prom_port,
        log_path=str(paths.logs_dir / "prometheus.log"),
        health_url=f"http://127.0.0.1:{prom_port}/-/ready",
        fingerprint=fingerprint(prom_argv, prom_text),
        ports={"http": prom_port},
        start_timeout=60.0,
    )
    return _Part([process], {str(paths.prometheus_config): prom_text})


def _gateway_code_stamp() -> str:
    """A new mlserve (gateway code) restarts the gateway on the next deploy."""
    from mlserve import __version__

    return __version__
