"""Extra arms of an endpoint on the local target: one more model server, started and stopped
while the deployment serves, invisible to clients.

A rollout's control arm is one (a fresh instance of the baseline version, with the
candidate's share of traffic, compared against the candidate). The calls::

    from mlserve.local.arms import start_arm, stop_arm

    arm = start_arm(project, "local", "fraud", "control", "v1")   # ready and routed, weight 0
    local_target.set_traffic("fraud", {"v1": 80, "control": 10, "v2": 10})
    ...
    local_target.set_traffic("fraud", {"v1": 100})                # its weight back first
    stop_arm(project, "local", "fraud", "control")                 # drained, then stopped

``start_arm`` returns once the new server passed its readiness checks and the gateway routes
the arm ``name`` to it (with weight 0: traffic is the caller's to move; the gateway's weights
are keyed by arm name, so ``LocalTarget.set_traffic`` moves it, while the rollout's
``GatewayRouter`` still sends plans by version and refuses two arms of one version). ``stop_arm`` takes the
arm out of the route table, waits until no request of the gateway holds it, then stops the
server; a weight the arm still had goes to the endpoint's baseline. Metrics carry the arm as
their ``variant`` label. Both run under the deploy lock and go through the supervisor like a
deploy, so a deploy meanwhile keeps the arm (``.mlserve/local/arms.json``) and a failure
leaves the deployment as it was. ``mlserve down`` forgets the arms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mlserve.errors import StateError, TargetError, UsageError
from mlserve.local.converge import Say, _quiet, restore, signal_supervisor, wait
from mlserve.local.desired import PROTOCOL, load_arms, refresh, save_arms, with_model, without_model, write
from mlserve.local.plan import _Ports, plan_model, process_name
from mlserve.local.state import LocalPaths, ProcessSpec, pid_alive, read_json
from mlserve.project import Project

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Arm:
    endpoint: str
    name: str  # its route name in the gateway (the ``variant`` label of its metrics)
    version: str  # the model version it serves
    url: str  # http://127.0.0.1:PORT
    process: str  # the supervisor's name for it: ENDPOINT/NAME
    pid: int | None


def _running(paths: LocalPaths, env_name: str) -> dict[str, Any]:
    desired = read_json(paths.desired)
    state = read_json(paths.state) or {}
    sup = state.get("supervisor") or {}
    if desired is None or not pid_alive(sup.get("pid"), sup.get("start_time")):
        raise TargetError(
            f"environment {env_name!r} is not running locally",
            hint=f"run `mlserve deploy --env {env_name}` first",
        )
    if desired.get("env") != env_name:
        raise TargetError(f"the local deployment runs environment {desired.get('env')!r}, not {env_name!r}")
    if int(desired.get("protocol", 1)) < PROTOCOL or not isinstance(desired.get("gateway"), dict):
        raise TargetError("the local deployment was made by an older mlserve", hint="deploy it again first")
    return desired


def _arm(desired: dict[str, Any], state: dict[str, Any], name: str) -> Arm:
    spec = next(p for p in desired["processes"] if p["name"] == name)
    rec = (state.get("processes") or {}).get(name) or {}
    return Arm(
        endpoint=str(spec["endpoint"]),
        name=str(spec.get("arm") or spec["version"]),
        version=str(spec["version"]),
        url=f"http://127.0.0.1:{spec['port']}",
        process=name,
        pid=rec.get("pid"),
    )


def _apply(paths: LocalPaths, previous: dict[str, Any], doc: dict[str, Any], files: dict[str, str], say: Say,
           timeout: float | None) -> None:  # fmt: skip
    """Hand ``doc`` to the supervisor and wait; on failure the previous state is put back."""
    from mlserve.local.lifecycle import _failed

    write(paths, doc, files)
    signal_supervisor(paths)
    specs = {p["name"]: ProcessSpec.from_dict(p) for p in doc["processes"]}
    try:
        wait(paths, specs, int(doc["generation"]), say=say, timeout=timeout, failed=_failed)
    except TargetError as err:
        restore(paths, previous, int(doc["generation"]) + 1, _failed)
        raise TargetError(f"{err.message}\nthe deployment is as it was before", hint=err.hint) from None


def _next(doc: dict[str, Any]) -> dict[str, Any]:
    generation = int(doc.get("generation", 0)) + 1
    doc["generation"] = generation
    doc["gateway"]["generation"] = generation
    return doc


def start_arm(
    project: Project,
    env_name: str,
    endpoint: str,
    name: str,
    version: str,
    *,
    say: Say = _quiet,
    timeout: float | None = None,
) -> Arm:
    """Start one more server of ``version`` of ``endpoint`` as arm ``name``; return once it is
    ready and routed (weight 0). TargetError (exit 1) with its log excerpt when it cannot start."""
    from mlserve.local.lifecycle import _exclusive, paths_for

    paths = paths_for(project)
    manifest = project.manifest
    ep = manifest.endpoints.get(endpoint)
    if ep is None or endpoint not in manifest.endpoints_in(env_name):
        raise UsageError(f"endpoint {endpoint!r} is not deployed in environment {env_name!r}")
    if version not in ep.versions:
        raise UsageError(f"endpoint {endpoint!r} has no version {version!r}; versions: {', '.join(ep.versions)}")
    if not _NAME.match(name):
        raise UsageError(f"arm name {name!r} must be a DNS-1123 label (lower case letters, digits, '-')")
    if name in ep.versions:
        raise UsageError(f"arm name {name!r} is a version of endpoint {endpoint!r}; pick another name")
    with _exclusive(paths, f"arm {endpoint}/{name}"):
        desired = _running(paths, env_name)
        if name in desired["gateway"]["endpoints"][endpoint]["versions"]:
            raise StateError(f"endpoint {endpoint!r} already has an arm {name!r}")
        base = next(
            (p for p in desired["processes"] if p.get("endpoint") == endpoint and p.get("version") == version), None
        )
        taken = {int(port) for p in desired["processes"] for port in (p.get("ports") or {}).values()}
        spec, files = plan_model(
            project, paths, _Ports({}, taken), endpoint, ep, version, arm=name,
            env_vars={k: v for k, v in (base or {}).get("env", {}).items() if k == "CUDA_VISIBLE_DEVICES"},
            seldon_python=(base or {}).get("argv", [None])[0] if ep.runtime == "seldon" else None,
        )  # fmt: skip
        doc = _next(with_model(desired, spec, ep.runtime))
        files.update(refresh(doc))
        arms = [a for a in load_arms(paths) if (a["endpoint"], a["name"]) != (endpoint, name)]
        save_arms(paths, [*arms, {"endpoint": endpoint, "name": name, "version": version}])
        say(f"{spec.name}: starting a server of {endpoint}/{version} (port {spec.port})")
        try:
            _apply(paths, desired, doc, files, say, timeout)
        except TargetError:
            save_arms(paths, arms)
            raise
        return _arm(doc, read_json(paths.state) or {}, spec.name)


def stop_arm(
    project: Project, env_name: str, endpoint: str, name: str, *, say: Say = _quiet, timeout: float | None = None
) -> None:
    """Take arm ``name`` out of the gateway's routes, drain it, stop its server."""
    from mlserve.local.lifecycle import _exclusive, paths_for

    paths = paths_for(project)
    with _exclusive(paths, f"arm {endpoint}/{name}"):
        desired = _running(paths, env_name)
        proc = process_name(endpoint, name)
        spec = next((p for p in desired["processes"] if p["name"] == proc and p.get("arm")), None)
        if spec is None:
            raise UsageError(f"endpoint {endpoint!r} has no extra arm {name!r} (arms: {_names(desired, endpoint)})")
        doc = _next(without_model(desired, proc))
        files = refresh(doc)
        say(f"{proc}: draining and stopping it")
        _apply(paths, desired, doc, files, say, timeout)
        save_arms(paths, [a for a in load_arms(paths) if (a["endpoint"], a["name"]) != (endpoint, name)])


def list_arms(project: Project) -> list[Arm]:
    from mlserve.local.lifecycle import paths_for

    paths = paths_for(project)
    desired = read_json(paths.desired) or {}
    state = read_json(paths.state) or {}
    return [_arm(desired, state, p["name"]) for p in desired.get("processes", []) if p.get("arm")]


def _names(desired: dict[str, Any], endpoint: str) -> str:
    names = [str(p["arm"]) for p in desired["processes"] if p.get("endpoint") == endpoint and p.get("arm")]
    return ", ".join(names) or "none"
