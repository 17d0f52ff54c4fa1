"""From a manifest environment to the processes the supervisor must keep running.

``build_plan`` is where deploy's decisions live: every port (fixed in the manifest,
kept from the previous deploy so that an unchanged process is not restarted, fresh ones
for a changed model server so that it can start beside the one it replaces), every
generated file (MLServer settings, prometheus.yml), GPU pinning, the desired gateway
config, and per process a fingerprint that changes exactly when that process must be
restarted and a config fingerprint that changes when it only needs to reload. It decides
and installs nothing: what must exist first (the seldon runtime's virtual environment) is
prepared by ``provision``, and ``checked_endpoints`` fails fast on what would stop a
deploy before either runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlserve.errors import TargetError, UsageError
from mlserve.local import gpu as gpu_mod
from mlserve.local.desired import GATEWAY_JOB, PROTOCOL, fingerprint, model_target, refresh
from mlserve.local.ports import check_free, free_port, port_in_use
from mlserve.local.prometheus import ScrapeTarget, prometheus_argv, prometheus_binary, reload_url
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
    gateway: dict[str, Any] = field(default_factory=dict)  # the desired gateway config (mlserve.gateway/v1)
    scrape: dict[str, Any] = field(default_factory=dict)  # what prometheus.yml is made of

    def by_name(self) -> dict[str, ProcessSpec]:
        return {p.name: p for p in self.processes}

    def desired_document(self, generation: int, project_root: Path) -> dict[str, Any]:
        doc = {
            "format": DESIRED_FORMAT,
            "protocol": PROTOCOL,
            "generation": generation,
            "env": self.env_name,
            "project_root": str(project_root),
            "gateway_url": self.gateway_url,
            "admin_url": self.admin_url,
            "prometheus_url": self.prometheus_url,
            "processes": [dict(p.__dict__) for p in self.processes],
            "gateway": {**self.gateway, "generation": generation},
            "scrape": self.scrape,
        }
        refresh(doc)
        return doc


def process_name(endpoint: str, version: str) -> str:
    return f"{endpoint}/{version}"


def log_name(name: str) -> str:
    return name.replace("/", ".") + ".log"


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
        return self.fresh(name, role)

    def fresh(self, name: str, role: str) -> int:
        """A free port that no process of this project holds: for a server that must start
        beside the one it replaces (which keeps its ports until it is drained)."""
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


def plan_model(
    project: Project,
    paths: LocalPaths,
    ports: _Ports,
    endpoint_name: str,
    endpoint: Endpoint,
    version_name: str,
    *,
    arm: str | None = None,
    env_vars: dict[str, str] | None = None,
    seldon_python: str | None = None,
    previous: dict[str, Any] | None = None,
) -> tuple[ProcessSpec, dict[str, str]]:
    """One model server: the spec the supervisor runs and the files it needs.

    ``arm`` serves ``version_name`` under another route name (a rollout's control). With a
    ``previous`` spec whose fingerprint differs (the model or its settings changed), the new
    server gets fresh ports and its own folder, so that it starts beside the old one.
    """
    route = arm or version_name
    name = process_name(endpoint_name, route)
    version = endpoint.versions[version_name]

    def launch(role_ports: dict[str, int]) -> tuple[ServerLaunch, dict[str, str], str]:
        found = launch_for(
            root=project.root,
            server_dir=paths.servers_dir / f"{endpoint_name}.{route}-{role_ports['http']}",
            endpoint_name=endpoint_name,
            endpoint=endpoint,
            version_name=version_name,
            version=version,
            ports=role_ports,
            seldon_python=seldon_python,
        )
        merged = {**found.env, **(env_vars or {})}
        return found, merged, fingerprint(found.argv, merged, found.cwd, found.files, found.stamp, route)

    key = f"endpoints.{endpoint_name}.versions.{version_name}.port" if arm is None else None
    role_ports = {"http": ports.take(name, "http", version.port if arm is None else None, key)}
    for role in EXTRA_PORTS[endpoint.runtime]:
        role_ports[role] = ports.take(name, role, None, None)
    found, merged, digest = launch(role_ports)
    if previous is not None and previous.get("fingerprint") != digest and (arm is not None or version.port is None):
        role_ports = {role: ports.fresh(name, role) for role in role_ports}
        found, merged, digest = launch(role_ports)
    spec = ProcessSpec(
        name=name,
        kind="model",
        argv=found.argv,
        env=merged,
        cwd=found.cwd,
        port=role_ports["http"],
        log_path=str(paths.logs_dir / log_name(name)),
        health_url=found.health_url,
        fingerprint=digest,
        endpoint=endpoint_name,
        version=version_name,
        metrics_url=found.metrics_url,
        ports=role_ports,
        start_timeout=found.start_timeout,
        arm=arm,
        ready_urls=list(found.ready_urls),
    )
    return spec, dict(found.files)


def build_plan(
    project: Project,
    env_name: str,
    paths: LocalPaths,
    *,
    previous: dict[str, Any] | None,
    running_ports: set[int],
    provisioned: Provisioned = Provisioned(),
    gpus: list[int] | None = None,
    extra_arms: list[dict[str, str]] | None = None,
) -> Plan:
    """Everything deploy needs to hand to the supervisor: decisions only (ports, files,
    fingerprints), nothing installed or started; raises before anything starts.

    ``extra_arms`` (``{"endpoint", "name", "version"}``): model servers started through
    :mod:`mlserve.local.arms` that a deploy keeps running.
    """
    endpoints = checked_endpoints(project, env_name)
    ports = _Ports(_previous_ports(previous), running_ports)
    # GPUs: one plan for all versions that ask for them.
    demands = {
        process_name(e, v): ep.resources.gpu for e, ep in endpoints.items() for v in ep.versions if ep.resources.gpu
    }
    gpu_plan = gpu_mod.assign(demands, gpu_mod.list_gpus() if gpus is None and demands else (gpus or []))
    models = _model_processes(project, paths, endpoints, ports, gpu_plan, provisioned, previous, extra_arms or [])
    gateway = _gateway_process(project, env_name, paths, endpoints, ports, models)
    prom = _prometheus_process(project, env_name, paths, ports, models, gateway)
    processes = [*models.processes, gateway.process, prom.process]
    procs: list[dict[str, Any]] = [dict(p.__dict__) for p in processes]
    files = {
        **models.files,
        **prom.files,
        **refresh({"processes": procs, "gateway": gateway.config, "scrape": prom.config}),
    }
    fps = {p["name"]: p["config_fingerprint"] for p in procs}  # prometheus.yml and gateway config
    return Plan(
        env_name=env_name,
        processes=[replace(p, config_fingerprint=fps.get(p.name, p.config_fingerprint)) for p in processes],
        files=files,
        gateway_url=f"http://127.0.0.1:{gateway.process.port}",
        admin_url=f"http://127.0.0.1:{gateway.process.ports['admin']}",
        prometheus_url=f"http://127.0.0.1:{prom.process.port}",
        notes=list(gpu_plan.notes),
        warnings=list(gpu_plan.warnings),
        gateway=gateway.config,
        scrape=prom.config,
    )


@dataclass(frozen=True)
class _Part:
    processes: list[ProcessSpec]
    files: dict[str, str] = field(default_factory=dict)
    upstreams: dict[str, dict[str, str]] = field(default_factory=dict)
    scrape: list[ScrapeTarget] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # the gateway's config, or what prometheus.yml is made of

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
    previous: dict[str, Any] | None,
    extra_arms: list[dict[str, str]],
) -> _Part:
    processes: list[ProcessSpec] = []
    files: dict[str, str] = {}
    upstreams: dict[str, dict[str, str]] = {ep_name: {} for ep_name in endpoints}
    scrape: list[ScrapeTarget] = []
    prev_specs = {str(p.get("name")): p for p in (previous or {}).get("processes", []) if isinstance(p, dict)}
    wanted: list[tuple[str, str, str | None]] = [(e, v, None) for e, ep in endpoints.items() for v in ep.versions]
    wanted += [(a["endpoint"], a["version"], a["name"]) for a in extra_arms if a["endpoint"] in endpoints]
    for ep_name, v_name, arm in wanted:
        ep = endpoints[ep_name]
        spec, spec_files = plan_model(
            project, paths, ports, ep_name, ep, v_name, arm=arm,
            env_vars=gpu_plan.env_for(process_name(ep_name, v_name)),
            seldon_python=provisioned.seldon_python, previous=prev_specs.get(process_name(ep_name, arm or v_name)),
        )  # fmt: skip
        processes.append(spec)
        files.update(spec_files)
        upstreams[ep_name][spec.route] = f"http://127.0.0.1:{spec.port}"
        target = model_target(spec, ep.runtime)
        if target is not None:
            scrape.append(target)
    return _Part(processes, files, upstreams, scrape)


def _gateway_process(
    project: Project, env_name: str, paths: LocalPaths, endpoints: dict[str, Endpoint], ports: _Ports, models: _Part
) -> _Part:
    """Initial traffic is 100% to each baseline, mode split. A running gateway keeps its live
    weights across reloads and restarts (the traffic state file)."""
    from mlserve.local.gateway_config import EndpointConfig, Fault, GatewayConfig, TrafficState
    from mlserve.monitoring.local import gateway_monitoring

    env = project.manifest.environments[env_name]
    gw_port = ports.take(GATEWAY, "http", env.gateway_port, f"environments.{env_name}.gateway_port")
    admin_port = ports.take(GATEWAY, "admin", env.admin_port, f"environments.{env_name}.admin_port")
    gw_endpoints = {}
    for ep_name, ep in endpoints.items():
        faults = {v: Fault.from_manifest(f) for v, f in env.faults.get(ep_name, {}).items()}
        gw_endpoints[ep_name] = EndpointConfig(
            versions=models.upstreams[ep_name],
            baseline=ep.baseline,
            traffic=TrafficState(weights={ep.baseline: 100}).validated(list(models.upstreams[ep_name])),
            sticky_header=ep.rollout.sticky_header,
            sticky_cookie=ep.rollout.sticky_cookie,
            faults=faults,
            protocol=ep.api,
            text_match=ep.rollout.shadow_text_match,
            similarity=ep.rollout.shadow_similarity,
            monitoring=gateway_monitoring(project.root, ep_name, ep),
        )
    gw_config = GatewayConfig(
        port=gw_port,
        admin_port=admin_port,
        admin_token_file=paths.admin_token,
        state_file=paths.traffic,
        endpoints=gw_endpoints,
    )
    if env.limits is not None:
        lim = env.limits
        gw_config = replace(
            gw_config,
            max_body_bytes=lim.max_body_bytes,
            upstream_timeout=lim.upstream_timeout,
            connect_timeout=lim.connect_timeout,
            body_timeout=lim.body_timeout,
            shadow_max_inflight=lim.shadow_max_inflight,
        )
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
        # Routes, faults and limits are reloaded in place (config_fingerprint); only a new
        # listening address or new gateway code needs a new process.
        fingerprint=fingerprint(gw_argv, gw_port, admin_port, _gateway_code_stamp()),
        metrics_url=f"http://127.0.0.1:{gw_port}/metrics",
        ports={"http": gw_port, "admin": admin_port},
        start_timeout=60.0,
        listen=["http", "admin"],
        ready_file=str(paths.gateway_ready),
    )
    # gateway.json is written by the supervisor (from desired.json), when it applies the change
    return _Part([process], config=gw_config.to_dict())


def _prometheus_process(
    project: Project, env_name: str, paths: LocalPaths, ports: _Ports, models: _Part, gateway: _Part
) -> _Part:
    from mlserve.monitoring.local import RULES_FILE, local_rules

    env = project.manifest.environments[env_name]
    gw_port = gateway.process.port
    scrape = [
        ScrapeTarget(job=GATEWAY_JOB, address=f"127.0.0.1:{gw_port}", metrics_path="/metrics", labels={}),
        *models.scrape,
    ]
    prom_port = ports.take(PROMETHEUS, "http", env.prometheus_port, f"environments.{env_name}.prometheus_port")
    rules_text = local_rules(project.manifest, env_name)  # SLO burn-rate and drift alerts
    rules_path = paths.local_dir / RULES_FILE
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
        fingerprint=fingerprint(prom_argv),  # its scrape config is reloaded in place
        ports={"http": prom_port},
        start_timeout=60.0,
        reload_url=reload_url(prom_port),
    )
    scrape_doc = {
        "project": project.manifest.project.name,
        "interval": env.scrape_interval,
        "config_file": str(paths.prometheus_config),
        "targets": [t.to_dict() for t in scrape],
    }
    files: dict[str, str] = {}
    if rules_text is not None:
        # a new rules text reloads Prometheus in place, like a new scrape config (desired.refresh)
        files[str(rules_path)] = rules_text
        scrape_doc["rule_files"] = {str(rules_path): fingerprint(rules_text)}
    return _Part([process], files, config=scrape_doc)


# the gateway's code, relative to the mlserve package (its drift summaries included)
GATEWAY_CODE = (
    "local/gateway.py",
    "local/gateway_config.py",
    "local/routing.py",
    "local/upstream.py",
    "local/http_timeouts.py",
    "monitoring/summaries.py",
    "monitoring/profile.py",
    "stats/drift.py",
    "metrics/queries.py",
)


def _gateway_code_stamp() -> str:
    """New gateway code (a new mlserve, an edited module) hands the gateway over to a new process."""
    from mlserve import __version__

    digest = hashlib.sha256(__version__.encode())
    here = Path(__file__).resolve().parent.parent
    for name in GATEWAY_CODE:
        with contextlib.suppress(OSError):
            digest.update((here / name).read_bytes())
    return digest.hexdigest()[:20]
