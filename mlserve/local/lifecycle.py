"""deploy / status / down / logs for the local target.

``deploy`` plans (ports, files, fingerprints), writes ``desired.json``, wakes the
project's supervisor (or starts one, detached) and waits, bounded, until every
process is healthy. It is idempotent: with nothing changed it starts nothing and
says so. ``down`` stops the supervisor and then every recorded process group by pid
and start time, so it also cleans up after a supervisor killed with -9.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve import fsutil
from mlserve.errors import StateError, TargetError, UsageError
from mlserve.local.converge import prune_server_dirs
from mlserve.local.desired import PROTOCOL as SUPERVISOR_PROTOCOL
from mlserve.local.desired import load_arms
from mlserve.local.desired import write as write_desired
from mlserve.local.plan import (
    GATEWAY,
    PROMETHEUS,
    Plan,
    build_plan,
    checked_endpoints,
    log_name,
    process_name,
    provision,
)
from mlserve.local.state import (
    LocalPaths,
    ProcessSpec,
    pid_alive,
    read_json,
    stop_group,
)
from mlserve.project import Project

Say = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    kind: str
    endpoint: str | None
    version: str | None
    pid: int | None
    port: int
    status: str
    log_path: str


@dataclass(frozen=True)
class DeployResult:
    env: str
    changed: bool
    started: list[str]
    restarted: list[str]
    stopped: list[str]
    unchanged: list[str]
    gateway_url: str
    admin_url: str
    prometheus_url: str
    processes: list[ProcessInfo]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reloaded: list[str] = field(default_factory=list)  # configuration taken over in place (no restart)
    rollouts: list[dict[str, Any]] = field(default_factory=list)  # rollouts in progress and what was kept


@dataclass(frozen=True)
class StatusRow:
    name: str
    kind: str
    endpoint: str | None
    version: str | None
    pid: int | None
    port: int
    status: str  # the supervisor's view: starting | healthy | unhealthy | backoff | crashed | stopped
    health: str  # probed now: ok | failing | down
    weight: int | None  # percent of the endpoint's traffic (model servers only)
    restarts: int
    prometheus_target: str | None  # up | down | unknown | missing


@dataclass(frozen=True)
class StatusResult:
    deployed: bool
    env: str | None
    supervisor_pid: int | None
    supervisor_alive: bool
    gateway_url: str | None
    admin_url: str | None
    prometheus_url: str | None
    rows: list[StatusRow]
    traffic: dict[str, dict[str, Any]]
    problems: list[str]
    alerts: list[dict[str, Any]] = field(default_factory=list)  # from Prometheus: firing, then pending


@dataclass(frozen=True)
class DownResult:
    was_running: bool
    stopped: list[dict[str, Any]]
    supervisor_pid: int | None
    leftover: list[int]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def paths_for(project: Project) -> LocalPaths:
    return LocalPaths(project.state_dir)


def _records(state: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    procs = (state or {}).get("processes") or {}
    return {k: v for k, v in procs.items() if isinstance(v, dict)}


def _every_record(state: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Also the instances being replaced or drained (``down`` must stop them too)."""
    out = _records(state)
    for rec in (state or {}).get("retiring") or []:
        if isinstance(rec, dict):
            out[f"{rec.get('name')} (pid {rec.get('pid')}, {rec.get('phase', 'retiring')})"] = rec
    return out


def _supervisor(paths: LocalPaths, state: dict[str, Any] | None) -> tuple[int | None, int | None, bool]:
    """(pid, start time, alive) of the project's supervisor."""
    sup = (state or {}).get("supervisor") or {}
    pid, start = sup.get("pid"), sup.get("start_time")
    if pid_alive(pid, start):
        return pid, start, True
    from mlserve.local.supervisor import lock_held

    if lock_held(paths.lock):  # running but has not written its state yet
        with contextlib.suppress(OSError, ValueError):
            lock_pid = int(paths.lock.read_text().strip())
            if pid_alive(lock_pid):
                from mlserve.local.state import process_start_time

                return lock_pid, process_start_time(lock_pid), True
    return pid, start, False


def _alive_records(state: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in _records(state).items() if pid_alive(r.get("pid"), r.get("start_time"))}


def ensure_token(paths: LocalPaths) -> None:
    """The admin token file exists and is private (created once, never printed)."""
    from mlserve.local.gateway_config import GatewayConfigError, create_token_file, read_token_file

    if paths.admin_token.exists():
        try:
            read_token_file(paths.admin_token)
            return
        except GatewayConfigError:
            os.chmod(paths.admin_token, 0o600)
            with contextlib.suppress(GatewayConfigError):
                read_token_file(paths.admin_token)
                return
    create_token_file(paths.admin_token)


def _start_supervisor(project: Project, paths: LocalPaths) -> None:
    from mlserve.tools import spawn

    launcher = spawn(
        [sys.executable, "-m", "mlserve.local.supervisor", "--project-dir", str(project.root), "--daemonize"],
        log_path=paths.supervisor_log,
        cwd=project.root,
        env={"PYTHONUNBUFFERED": "1"},
    )
    try:
        code = launcher.wait(timeout=30)
    except Exception:
        launcher.kill()
        raise TargetError("the local supervisor did not start", hint=f"see {paths.supervisor_log}") from None
    if code != 0:
        raise TargetError(f"the local supervisor exited with {code}", hint=f"see {paths.supervisor_log}")


def log_tail(path: str | Path, lines: int = 20) -> str:
    return fsutil.tail(Path(path), lines)


# ---------------------------------------------------------------------------
# deploy
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive(paths: LocalPaths, what: str) -> Iterator[None]:
    """One deploy or down at a time per project (a second one fails at once, exit 1)."""
    import fcntl

    paths.local_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.local_dir / "lifecycle.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(
                f"another mlserve deploy or down is running for {paths.state_dir.parent}; not starting {what}",
                hint="wait for it to finish",
            ) from None
        yield
    finally:
        os.close(fd)


def deploy(
    project: Project,
    env_name: str,
    *,
    say: Say = _quiet,
    timeout: float | None = None,
    rollouts: Sequence[KeptRollout] = (),
) -> DeployResult:
    """``rollouts``: rollouts in progress, whose traffic and arms the deploy keeps (and whose
    versions it refuses to remove)."""
    paths = paths_for(project)
    with _exclusive(paths, "deploy"):
        return _deploy(project, env_name, paths, say, timeout, rollouts)


def _deploy(
    project: Project, env_name: str, paths: LocalPaths, say: Say, timeout: float | None, kept: Sequence[KeptRollout]
) -> DeployResult:
    t0 = time.monotonic()
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    previous = read_json(paths.desired)
    state = read_json(paths.state)
    sup_pid, _sup_start, sup_alive = _supervisor(paths, state)
    if sup_alive and int((state or {}).get("protocol", 1)) < SUPERVISOR_PROTOCOL:
        say("the running supervisor is from an older mlserve: stopping the local processes to start them anew")
        _down(paths, say, 20.0)
        previous = state = None
        sup_pid, _sup_start, sup_alive = _supervisor(paths, state)
    alive = _alive_records(state)
    if previous and previous.get("env") not in (None, env_name) and alive:
        say(f"replacing the running environment {previous.get('env')!r} with {env_name!r}")
    prev_specs = {p["name"]: p for p in (previous or {}).get("processes", []) if isinstance(p, dict)}
    running_ports = {int(port) for name in alive for port in (prev_specs.get(name, {}).get("ports") or {}).values()}
    rollouts = _check_rollouts(project, env_name, kept)

    ensure_token(paths)
    checked_endpoints(project, env_name)  # fail fast, before anything is installed
    provisioned = provision(project, env_name, paths, say)
    plan = build_plan(
        project, env_name, paths, previous=previous, running_ports=running_ports, provisioned=provisioned,
        extra_arms=read_arms(paths, project, env_name, say),
    )  # fmt: skip
    for note in plan.notes:
        say(note)
    for warning in plan.warnings:
        say(f"warning: {warning}")

    started, restarted, unchanged, reloaded = [], [], [], []
    for spec in plan.processes:
        rec = alive.get(spec.name)
        if rec is None:
            started.append(spec.name)
        elif rec.get("fingerprint") != spec.fingerprint:
            restarted.append(spec.name)
        else:
            unchanged.append(spec.name)
            if spec.config_fingerprint and rec.get("config_applied") != spec.config_fingerprint:
                reloaded.append(spec.name)
    wanted = {p.name for p in plan.processes}
    stopped = sorted(n for n in alive if n not in wanted)
    all_healthy = all(alive[n].get("status") == "healthy" for n in unchanged)
    if sup_alive and not started and not restarted and not stopped and not reloaded and all_healthy:
        say(f"nothing changed: {len(unchanged)} processes already running and healthy; nothing started")
        return _result(plan, paths, False, [], [], [], unchanged, t0, rollouts=_kept(paths, rollouts))

    for name in restarted:
        how = (
            "starting a new instance beside the running one"
            if _overlaps(prev_specs.get(name), plan.by_name()[name])
            else "restarting it"
        )
        say(f"{name}: changed, {how}")
    for name in reloaded:
        say(f"{name}: configuration changed, reloading it in place")
    for name in stopped:
        say(f"{name}: no longer in environment {env_name!r}, draining and stopping it")

    generation = int((previous or {}).get("generation", 0)) + 1
    doc = plan.desired_document(generation, project.root)
    write_desired(paths, doc, plan.files)  # desired.json 0600: a version's env may carry credentials
    if sup_alive and sup_pid:
        os.kill(sup_pid, signal.SIGHUP)
    else:
        say("starting the local supervisor")
        _start_supervisor(project, paths)
    try:
        _wait_healthy(paths, plan, generation, say, timeout, frozenset(unchanged))
    except TargetError as err:
        raise _undo(
            paths, previous if alive and (previous or {}).get("protocol") else None, generation, err, say
        ) from None
    prune_server_dirs(paths, doc)
    return _result(
        plan, paths, True, started, restarted, stopped, unchanged, t0,
        reloaded=reloaded, rollouts=_kept(paths, rollouts),
    )  # fmt: skip


def _overlaps(previous: dict[str, Any] | None, spec: ProcessSpec) -> bool:
    from mlserve.local.supervisor import can_overlap

    return previous is not None and can_overlap(ProcessSpec.from_dict(previous), spec)


def _undo(
    paths: LocalPaths, previous: dict[str, Any] | None, generation: int, err: TargetError, say: Say
) -> TargetError:
    """After a failed deploy: the previous desired state again (what kept running stays
    untouched), or, when nothing ran before, nothing."""
    from mlserve.local.converge import restore

    if previous is None:
        say("deploy failed: nothing ran before it, stopping what it started")
        _down(paths, say, 20.0)
        return TargetError(f"{err.message}\nnothing ran before this deploy: stopped what it started", hint=err.hint)
    say(f"deploy failed: putting the deployment back as it was (generation {previous.get('generation')})")
    try:
        restore(paths, previous, generation + 1, _failed)
    except TargetError as again:
        return TargetError(f"{err.message}\nand the previous deployment could not be put back: {again.message}")
    names = ", ".join(str(p.get("name")) for p in previous.get("processes", []))
    return TargetError(
        f"{err.message}\nthe deployment is as it was before this deploy: {names} kept running, unchanged",
        hint="fix the cause and deploy again; `mlserve logs NAME` shows a server's log",
    )


@dataclass(frozen=True)
class KeptRollout:
    """A rollout in progress on one of the environment's endpoints, which a deploy keeps: its
    weights and arms stay as the rollout set them. The caller reads it from the run record
    (the local runtime knows nothing of rollouts)."""

    endpoint: str
    run_id: str
    status: str
    baseline: str
    candidate: str
    step: int  # steps entered so far (0: no traffic moved yet)
    steps: int
    weights: dict[str, int]  # what the rollout last set, per arm


def _check_rollouts(project: Project, env_name: str, rollouts: Sequence[KeptRollout]) -> dict[str, KeptRollout]:
    """The rollouts of this environment's endpoints; a deploy that would remove a version one
    of them uses is refused (exit 1) before anything changes."""
    found = {}
    endpoints = project.manifest.endpoints_in(env_name)
    for live in rollouts:
        if live.endpoint not in endpoints:
            continue
        versions = endpoints[live.endpoint].versions
        for role, version in (("baseline", live.baseline), ("candidate", live.candidate)):
            if version not in versions:
                raise StateError(
                    f"endpoints.{live.endpoint}.versions.{version}: rollout {live.run_id} of {live.endpoint} is in "
                    f"progress with {version} as its {role}; deploy would remove it",
                    hint=f"finish it (`mlserve rollout run {live.endpoint}`) or end it "
                    f"(`mlserve rollout abort {live.endpoint}`) first",
                )
        found[live.endpoint] = live
    return found


def _kept(paths: LocalPaths, rollouts: dict[str, KeptRollout]) -> list[dict[str, Any]]:
    """What a deploy kept of each rollout in progress: the gateway's live weights, its arms."""
    if not rollouts:
        return []
    weights: dict[str, dict[str, int]] = {}
    with contextlib.suppress(Exception):
        from mlserve.local.admin_client import LocalGatewayClient

        desired = read_json(paths.desired) or {}
        with LocalGatewayClient.from_token_file(str(desired["admin_url"]), paths.admin_token, timeout=5.0) as c:
            weights = {k: dict(v.traffic.weights) for k, v in c.state(probe=False).endpoints.items()}
    out = []
    for name, live in rollouts.items():
        out.append(
            {
                "endpoint": name,
                "run_id": live.run_id,
                "status": live.status,
                "baseline": live.baseline,
                "candidate": live.candidate,
                "step": live.step,
                "steps": live.steps,
                "rollout_weights": dict(live.weights),
                "gateway_weights": weights.get(name, {}),
                "arms": sorted(weights.get(name, {})),
            }
        )
    return out


def read_arms(paths: LocalPaths, project: Project, env_name: str, say: Say) -> list[dict[str, str]]:
    """Extra arms started through :mod:`mlserve.local.arms` that this deploy keeps."""
    kept = []
    for arm in load_arms(paths):
        ep = project.manifest.endpoints.get(arm["endpoint"])
        if arm["endpoint"] not in project.manifest.endpoints_in(env_name) or ep is None:
            say(f"arm {arm['endpoint']}/{arm['name']}: its endpoint is not in {env_name!r} any more; stopping it")
        elif arm["version"] not in ep.versions:
            say(f"arm {arm['endpoint']}/{arm['name']}: version {arm['version']} is gone from the manifest; stopping it")
        else:
            kept.append(arm)
    return kept


def _result(
    plan: Plan,
    paths: LocalPaths,
    changed: bool,
    started: list[str],
    restarted: list[str],
    stopped: list[str],
    unchanged: list[str],
    t0: float,
    *,
    reloaded: list[str] | None = None,
    rollouts: list[dict[str, Any]] | None = None,
) -> DeployResult:
    records = _records(read_json(paths.state))
    infos = [
        ProcessInfo(
            name=p.name,
            kind=p.kind,
            endpoint=p.endpoint,
            version=p.version,
            pid=records.get(p.name, {}).get("pid"),
            port=p.port,
            status=str(records.get(p.name, {}).get("status", "unknown")),
            log_path=p.log_path,
        )
        for p in plan.processes
    ]
    return DeployResult(
        env=plan.env_name,
        changed=changed,
        started=started,
        restarted=restarted,
        stopped=stopped,
        unchanged=unchanged,
        gateway_url=plan.gateway_url,
        admin_url=plan.admin_url,
        prometheus_url=plan.prometheus_url,
        processes=infos,
        notes=plan.notes,
        warnings=plan.warnings,
        seconds=round(time.monotonic() - t0, 2),
        reloaded=reloaded or [],
        rollouts=rollouts or [],
    )


def _wait_healthy(
    paths: LocalPaths, plan: Plan, generation: int, say: Say, timeout: float | None, quiet: frozenset[str] = frozenset()
) -> None:
    """Until the supervisor has this generation in place (see :mod:`mlserve.local.converge`)."""
    from mlserve.local.converge import wait

    wait(paths, plan.by_name(), generation, say=say, timeout=timeout, failed=_failed, quiet=quiet)


def failure_excerpt(path: str | Path, lines: int = 20) -> str:
    """The last Python traceback in a log (its head and its last frames), else the last lines.

    Servers often print their shutdown chatter after the error that matters.
    """
    tail = log_tail(path, 400).splitlines()
    starts = [i for i, line in enumerate(tail) if line.startswith("Traceback (most recent call last)")]
    if not starts:
        return "\n".join(tail[-lines:])
    i = starts[-1]
    end = next((j for j in range(i + 1, len(tail)) if tail[j] and not tail[j].startswith(" ")), len(tail) - 1)
    body = tail[max(i + 1, end - lines + 2) : end + 1]
    return "\n".join([tail[i], *(["  ..."] if end - lines + 2 > i + 1 else []), *body])


def _failed(name: str, spec: ProcessSpec, rec: dict[str, Any], paths: LocalPaths) -> TargetError:
    restarts = int(rec.get("restarts", 0))
    if rec.get("last_exit") is not None or rec.get("status") in ("backoff", "crashed"):
        code = rec.get("last_exit")
        how = f"exited{f' (code {code})' if code is not None else ''} before it was healthy, {restarts} time(s)"
    else:
        how = f"is not healthy ({spec.health_url} does not answer 200)"
    return TargetError(
        f"{name} {how}; from {spec.log_path}:\n{failure_excerpt(spec.log_path)}",
        hint="the supervisor keeps retrying with backoff; fix the cause and deploy again, or `mlserve down`",
    )


# ---------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------


def status(project: Project, *, probe: bool = True) -> StatusResult:
    from mlserve.local.supervisor import probe as http_probe

    paths = paths_for(project)
    desired = read_json(paths.desired)
    state = read_json(paths.state)
    sup_pid, _start, sup_alive = _supervisor(paths, state)
    records = _records(state)
    alive = _alive_records(state)
    if desired is None and not alive:
        return StatusResult(False, None, None, False, None, None, None, [], {}, [])
    specs = [ProcessSpec.from_dict(p) for p in (desired or {}).get("processes", [])]
    problems: list[str] = []
    if not sup_alive:
        problems.append("the supervisor is not running: crashed processes are not restarted (deploy again)")

    traffic: dict[str, dict[str, Any]] = {}
    weights: dict[tuple[str, str], int] = {}
    if desired and any(n == GATEWAY for n in alive):
        try:
            from mlserve.local.admin_client import LocalGatewayClient

            with LocalGatewayClient.from_token_file(
                str(desired["admin_url"]), paths.admin_token, timeout=2.0
            ) as client:
                gw = client.state(probe=False)
            for ep, st in gw.endpoints.items():
                traffic[ep] = st.to_dict()
                for v, vs in st.versions.items():
                    weights[(ep, v)] = vs.weight
        except Exception as exc:
            problems.append(f"gateway admin API: {exc}")

    targets: dict[tuple[str, str], str] = {}
    alerts: list[dict[str, Any]] = []
    if desired and any(n == PROMETHEUS for n in alive):
        from mlserve.local.prometheus import query_targets

        try:
            for t in query_targets(str(desired["prometheus_url"])):
                labels = t.get("labels") or {}
                if not isinstance(labels, dict):
                    continue
                job = str(labels.get("job", ""))
                key = (
                    ("gateway", "")
                    if job == "mlserve-gateway"
                    else (
                        str(labels.get("endpoint", "")),
                        str(labels.get("arm") or labels.get("version", "")),
                    )
                )
                targets[key] = str(t.get("health", "unknown"))
        except Exception as exc:
            problems.append(f"prometheus targets: {exc}")
        from mlserve.monitoring.alerts import read_alerts

        try:
            alerts = read_alerts(str(desired["prometheus_url"]))
        except Exception as exc:
            problems.append(f"prometheus alerts: {exc}")

    rows = []
    for spec in specs:
        rec = records.get(spec.name, {})
        pid = rec.get("pid")
        running = spec.name in alive
        health = "down"
        if running:
            health = "ok" if (not probe or http_probe(spec.health_url)) else "failing"
        if spec.kind == "model" and spec.metrics_url:
            tkey: tuple[str, str] | None = (spec.endpoint or "", spec.route)
        elif spec.kind == "gateway":
            tkey = ("gateway", "")
        else:
            tkey = None
        target = None
        if tkey is not None:
            target = targets.get(tkey, "missing" if targets else "unknown")
        rows.append(
            StatusRow(
                name=spec.name,
                kind=spec.kind,
                endpoint=spec.endpoint,
                version=spec.version,
                pid=pid if running else None,
                port=spec.port,
                status=str(rec.get("status", "stopped")) if running or rec else "stopped",
                health=health,
                weight=weights.get((spec.endpoint or "", spec.route)) if spec.kind == "model" else None,
                restarts=int(rec.get("restarts", 0)),
                prometheus_target=target,
            )
        )
    return StatusResult(
        deployed=True,
        env=(desired or {}).get("env"),
        supervisor_pid=sup_pid if sup_alive else None,
        supervisor_alive=sup_alive,
        gateway_url=(desired or {}).get("gateway_url"),
        admin_url=(desired or {}).get("admin_url"),
        prometheus_url=(desired or {}).get("prometheus_url"),
        rows=rows,
        traffic=traffic,
        problems=problems,
        alerts=alerts,
    )


# ---------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------


def down(project: Project, *, say: Say = _quiet, timeout: float = 20.0) -> DownResult:
    paths = paths_for(project)
    if not paths.local_dir.exists():
        return DownResult(was_running=False, stopped=[], supervisor_pid=None, leftover=[])
    with _exclusive(paths, "down"):
        return _down(paths, say, timeout)


def _down(paths: LocalPaths, say: Say, timeout: float) -> DownResult:
    try:
        state = read_json(paths.state)
    except StateError:
        state = None
    sup_pid, sup_start, sup_alive = _supervisor(paths, state)
    records = _every_record(state)
    if sup_alive and sup_pid:
        say(f"stopping the supervisor (pid {sup_pid}) and its processes")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(sup_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(sup_pid, sup_start):
            time.sleep(0.1)
        if pid_alive(sup_pid, sup_start):
            say(f"the supervisor did not exit in {timeout:g}s: killing it")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(sup_pid, signal.SIGKILL)
    stopped = []
    # SIGTERM every recorded group first so they shut down in parallel, then wait on each.
    for rec in records.values():
        if pid_alive(rec.get("pid"), rec.get("start_time")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(rec["pid"]), signal.SIGTERM)
    # Whatever the supervisor recorded (its own state may be older than its death).
    for name, rec in records.items():
        pid, start = rec.get("pid"), rec.get("start_time")
        was_alive = pid_alive(pid, start)
        if pid and (was_alive or start is not None):
            signalled = stop_group(int(pid), start, timeout=10.0)
            if was_alive or signalled:
                say(f"stopped {name} (pid {pid})")
        stopped.append({"name": name, "pid": pid, "was_running": was_alive or sup_alive})
    leftover = [int(r["pid"]) for r in records.values() if pid_alive(r.get("pid"), r.get("start_time"))]
    was_running = sup_alive or any(s["was_running"] for s in stopped)
    if not leftover:
        for p in (paths.state, paths.desired, paths.traffic, paths.arms, paths.gateway_ready):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return DownResult(was_running=was_running, stopped=stopped, supervisor_pid=sup_pid, leftover=leftover)


# ---------------------------------------------------------------------------
# logs
# ---------------------------------------------------------------------------

SPECIAL_LOGS = ("gateway", "prometheus", "supervisor")


def log_files(project: Project, name: str, version: str | None) -> list[tuple[str, Path]]:
    """(label, path) of the logs that ``mlserve logs NAME [VERSION]`` shows."""
    paths = paths_for(project)
    manifest = project.manifest
    if name in manifest.endpoints:
        ep = manifest.endpoints[name]
        # a rollout's extra arms (its control) run as "ENDPOINT/ARM" and keep their log after
        # they stop: the last control's log is there to read after the rollout ended
        arms = sorted(
            stem[len(name) + 1 :]
            for stem in (f.name[: -len(".log")] for f in paths.logs_dir.glob(f"{name}.*.log"))
            if stem[len(name) + 1 :] not in ep.versions and "." not in stem[len(name) + 1 :]
        )
        if version is not None and version not in ep.versions and version not in arms:
            extra = f"; rollout arms with a log: {', '.join(arms)}" if arms else ""
            raise UsageError(f"endpoint {name!r} has no version {version!r}; versions: {', '.join(ep.versions)}{extra}")
        versions = [version] if version else [*ep.versions, *arms]
        found = [
            (process_name(name, v), paths.logs_dir / log_name(process_name(name, v)))
            for v in versions
            if (paths.logs_dir / log_name(process_name(name, v))).exists()
        ]
        if not found:
            raise UsageError(
                f"no log for {name}{'/' + version if version else ''} under {paths.logs_dir}",
                hint="it has not been deployed locally yet: `mlserve deploy --env local`",
            )
        return found
    if name in SPECIAL_LOGS:
        if version is not None:
            raise UsageError(f"{name} has no versions")
        path = paths.logs_dir / f"{name}.log"
        if not path.exists():
            raise UsageError(f"no {name} log under {paths.logs_dir}: nothing deployed locally yet")
        return [(name, path)]
    known = ", ".join([*manifest.endpoints, *SPECIAL_LOGS])
    raise UsageError(f"unknown endpoint {name!r}; known: {known}")
