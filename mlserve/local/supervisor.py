"""The per-project supervisor: keeps the processes of ``desired.json`` running, and changes
them without dropping a request.

Started detached by ``mlserve deploy`` (``python -m mlserve.local.supervisor
--project-dir DIR``), one per project (an exclusive lock on
``.mlserve/local/supervisor.lock``). SIGHUP: re-read ``desired.json`` and reconcile.
SIGTERM/SIGINT: stop every child and exit. Every change is written to ``state.json``
(atomically) with pids and process start times, so that ``mlserve down`` can clean up even
after this process was killed with -9, and a new supervisor adopts children that still run.

How each change is made (the order is what keeps clients from seeing it):

- a new model server is started, and enters the gateway's route table only once its
  health checks pass (see :mod:`mlserve.local.routes`);
- a changed model server (new model file, settings, command) is started *beside* the old
  one on new ports; once it is healthy the gateway routes its arm to it, the old one is
  drained (no request of the gateway holds it any more, ``GET /admin/upstreams``) and only
  then stopped. A version with a fixed ``port`` cannot overlap: the old one is stopped first
  (the gateway retries its requests on another version meanwhile);
- a removed model server leaves the route table first, is drained, then stopped;
- the gateway's routes, faults and limits are reloaded in place (``POST /admin/reload``)
  after the new config is written to ``gateway.json``; Prometheus' scrape config by
  ``POST /-/reload``. Neither restarts;
- the gateway's listening sockets are bound here and handed down, so they stay open while
  a gateway process restarts: a crashed gateway is restarted at once and connections wait
  in the socket's backlog meanwhile instead of being refused. When the gateway's own code
  changes, a new gateway process starts on the same sockets, and the old one (SIGUSR2)
  stops accepting, finishes what it has open and exits;
- a child that exits is restarted at once, then with exponential backoff.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve import fsutil
from mlserve.local.routes import ArmServer, Routes, effective
from mlserve.local.state import (
    STATE_FORMAT,
    LocalPaths,
    ProcessSpec,
    pid_alive,
    process_start_time,
    read_json,
    stop_group,
)

PROTOCOL = 2  # what this supervisor understands of desired.json (deploy checks it)
TICK = 0.2
HEALTH_EVERY = 2.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 30.0  # healthy this long: the crash streak is forgotten
STOP_GRACE = 10.0  # SIGTERM, then SIGKILL after this long
HANDOVER_GRACE = 20.0  # a handed-over gateway drains its connections at most this long
DRAIN_MARGIN = 2.0  # beyond the gateway's upstream timeout, before a drain is given up
SYS_PIDFD_GETFD = 438  # the same number on x86-64 and arm64 (asm-generic)


def log(msg: str) -> None:
    sys.stdout.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + msg + "\n")
    sys.stdout.flush()


def probe(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False


@dataclass
class Child:
    spec: ProcessSpec
    popen: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    start_time: int | None = None
    status: str = "stopped"
    restarts: int = 0
    streak: int = 0  # crashes in a row
    last_exit: int | None = None
    started_at: float | None = None
    healthy_at: float | None = None
    next_start: float = 0.0
    next_probe: float = 0.0
    adopted: bool = False  # started by an earlier supervisor; its argv is known once reconciled
    ever_healthy: bool = False  # this instance has passed its checks once (it may be routed)
    config_applied: str = ""  # the config_fingerprint the running process has taken over
    reload_at: float = 0.0
    reload_error: str | None = None
    phase: str = ""  # retiring instances: serving | draining | stopping
    phase_since: float = 0.0
    why: str = ""
    waits_for: Child | None = None  # started once this one (holding the same ports) is gone
    listen_fds: dict[str, int] = field(default_factory=dict)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid, self.start_time)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.spec.port}"

    def record(self) -> dict[str, Any]:
        rec = {
            "name": self.spec.name,
            "kind": self.spec.kind,
            "endpoint": self.spec.endpoint,
            "version": self.spec.version,
            "arm": self.spec.arm,
            "port": self.spec.port,
            "ports": self.spec.ports,
            "pid": self.pid,
            "start_time": self.start_time,
            "fingerprint": self.spec.fingerprint,
            "config_applied": self.config_applied,
            "status": self.status,
            "ever_healthy": self.ever_healthy,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "started_at": self.started_at,
            "healthy_at": self.healthy_at,
        }
        if self.listen_fds:
            rec["listen_fds"] = self.listen_fds
        if self.reload_error:
            rec["reload_error"] = self.reload_error
        if self.phase:
            rec.update(phase=self.phase, why=self.why)
        return rec


def _minimal_spec(rec: dict[str, Any], root: Path) -> ProcessSpec:
    """What a record says about a process whose argv this supervisor never saw."""
    return ProcessSpec(
        name=str(rec.get("name")),
        kind=str(rec.get("kind") or "unknown"),
        argv=[],
        env={},
        cwd=str(root),
        port=int(rec.get("port") or 0),
        log_path="",
        health_url="",
        fingerprint=str(rec.get("fingerprint", "")),
        endpoint=rec.get("endpoint"),
        version=rec.get("version"),
        arm=rec.get("arm"),
        ports={str(k): int(v) for k, v in (rec.get("ports") or {}).items()},
    )


def can_overlap(old: ProcessSpec, new: ProcessSpec) -> bool:
    """Whether the new instance may run beside the old one until it takes over."""
    if new.kind == "gateway":
        return True  # it shares the listening sockets (or listens elsewhere)
    if new.kind == "model":
        return not set(old.ports.values()) & set(new.ports.values())
    return False  # Prometheus: one TSDB, one process


def bind_listener(port: int) -> socket.socket:
    """A loopback listening socket that a restarted (or successor) process can share."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # An adopted gateway may still hold the port (its socket carries SO_REUSEPORT too).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def take_socket(pid: int, fd: int, port: int) -> socket.socket | None:
    """A duplicate of a running process's listening socket (pidfd_getfd), or None.

    Used when this supervisor adopted a gateway whose sockets an earlier supervisor bound:
    keeping the very same socket means a later restart refuses nothing.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None
    try:
        newfd = int(libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0))
    finally:
        os.close(pidfd)
    if newfd < 0:
        return None
    sock = socket.socket(fileno=newfd)
    try:
        ok = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) and sock.getsockname()[1] == port
    except OSError:
        ok = False
    if not ok:
        sock.close()
        return None
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, project_dir: Path) -> None:
        self.root = project_dir
        self.paths = LocalPaths(project_dir / ".mlserve")
        self.children: dict[str, Child] = {}
        self.retiring: list[Child] = []
        self.listeners: dict[int, socket.socket] = {}
        self.desired_gateway: dict[str, Any] | None = None
        self.generation = 0
        self.converged_generation = 0
        self.routes: Routes | None = None  # what the running gateway was last given
        self.routes_error: str | None = None
        self.routes_retry = 0.0
        self.reload = True
        self.stopping = False
        self.dirty = True
        self.pid = os.getpid()
        self.start_time = process_start_time(self.pid)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- signals -----------------------------------------------------------------

    def install_signals(self) -> None:
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)  # wakes the loop: a child exited
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _on_hup(self, _sig: int, _frame: Any) -> None:
        self.reload = True

    def _on_term(self, _sig: int, _frame: Any) -> None:
        self.stopping = True

    def _sleep(self, seconds: float) -> None:
        """Until the next tick, or at once when a signal (a child's exit, SIGHUP) arrives."""
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r], [], [], seconds)
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 512):
                pass

    # -- state ---------------------------------------------------------------------

    def write_state(self) -> None:
        routes = self.routes
        fsutil.atomic_write_json(
            self.paths.state,
            {
                "format": STATE_FORMAT,
                "protocol": PROTOCOL,
                "supervisor": {"pid": self.pid, "start_time": self.start_time, "stopping": self.stopping},
                "generation": self.generation,
                "converged_generation": self.converged_generation,
                "updated_at": time.time(),
                "routes": {
                    "generation": (routes.config.get("generation", 0) if routes else 0),
                    "complete": bool(routes and routes.complete),
                    "digest": routes.digest if routes else None,
                    "error": self.routes_error,
                },
                "processes": {name: c.record() for name, c in self.children.items()},
                "retiring": [c.record() for c in self.retiring],
            },
        )
        self.dirty = False

    def adopt(self) -> None:
        """Children of a previous supervisor that still run (it was killed): keep watching them,
        and finish the changes it had under way."""
        old = read_json(self.paths.state) or {}
        self.converged_generation = int(old.get("converged_generation", 0))
        records = [(rec, False) for rec in (old.get("processes") or {}).values()]
        records += [(rec, True) for rec in (old.get("retiring") or [])]
        for rec, retiring in records:
            if not isinstance(rec, dict):
                continue
            pid, start = rec.get("pid"), rec.get("start_time")
            if not pid_alive(pid, start):
                continue
            child = Child(
                spec=_minimal_spec(rec, self.root),
                pid=pid,
                start_time=start,
                status=str(rec.get("status", "starting")),
                restarts=int(rec.get("restarts", 0)),
                started_at=rec.get("started_at"),
                healthy_at=rec.get("healthy_at"),
                adopted=True,
                ever_healthy=bool(rec.get("ever_healthy", rec.get("status") == "healthy")),
                config_applied=str(rec.get("config_applied", "")),
                listen_fds={str(k): int(v) for k, v in (rec.get("listen_fds") or {}).items()},
            )
            if retiring:
                child.phase, child.why, child.phase_since = (
                    str(rec.get("phase", "draining")),
                    "adopted",
                    time.monotonic(),
                )
                self.retiring.append(child)
            else:
                self.children[child.spec.name] = child
            self._keep_listeners(child)
            log(f"adopted {child.spec.name} (pid {pid}){' (retiring)' if retiring else ''} from a previous supervisor")

    def _keep_listeners(self, child: Child) -> None:
        """The listening sockets of an adopted gateway, duplicated from it, so that its next
        restart keeps them open too."""
        for role, fd in child.listen_fds.items():
            port = child.spec.ports.get(role)
            if port is None or port in self.listeners or child.pid is None:
                continue
            sock = take_socket(child.pid, fd, port)
            if sock is not None:
                self.listeners[port] = sock
                log(f"took over the listening socket of {child.spec.name} on port {port}")

    # -- reconcile -----------------------------------------------------------------

    def reconcile(self) -> None:
        desired = read_json(self.paths.desired)
        if desired is None:
            log("no desired.json: nothing to run")
            return
        specs = {p["name"]: ProcessSpec.from_dict(p) for p in desired.get("processes", [])}
        gateway = desired.get("gateway")
        self.desired_gateway = gateway if isinstance(gateway, dict) else None
        for name in list(self.children):
            child = self.children[name]
            spec = specs.get(name)
            if spec is None:
                del self.children[name]
                self.retire(child, "no longer wanted", "draining" if child.spec.kind == "model" else "stopping")
                continue
            if spec.fingerprint == child.spec.fingerprint:
                adopted = child.adopted
                child.spec, child.adopted = spec, False  # same process: its full description (argv, checks, config)
                if adopted and child.pid is None:  # it died before we learnt how to restart it
                    self.start_child(child)
                continue
            back = self._take_back(name, spec)
            if back is not None:  # a deploy was undone: the instance it replaced serves again
                del self.children[name]
                self.children[name] = back
                self.retire(child, "undone", "draining" if child.spec.kind == "model" else "stopping")
                continue
            new = Child(spec=spec)
            self.children[name] = new
            if child.pid is not None and child.alive() and can_overlap(child.spec, spec):
                self.retire(child, "changed", "serving")
                self.start_child(new)
            else:
                self.retire(child, "changed", "stopping")
                # it may itself still wait for an older instance that holds the same ports
                new.waits_for, new.status = (child if child.alive() else child.waits_for), "waiting"
        for name, spec in specs.items():
            if name not in self.children:
                self.children[name] = Child(spec=spec)
                self.start_child(self.children[name])
        self.generation = int(desired.get("generation", 0))
        self.dirty = True

    def _take_back(self, name: str, spec: ProcessSpec) -> Child | None:
        for old in self.retiring:
            if old.spec.name == name and old.spec.fingerprint == spec.fingerprint and old.phase == "serving":
                self.retiring.remove(old)
                old.phase, old.why = "", ""
                old.spec, old.adopted = spec, False
                log(f"{name}: the running instance (pid {old.pid}) stays")
                return old
        return None

    def retire(self, child: Child, why: str, phase: str) -> None:
        if child.pid is None or not child.alive():
            child.status = "stopped"
            self.dirty = True
            return
        child.why = why
        self.retiring.append(child)
        self._enter(child, phase)

    def _enter(self, child: Child, phase: str) -> None:
        child.phase, child.phase_since = phase, time.monotonic()
        self.dirty = True
        log(f"{child.spec.name} (pid {child.pid}): {child.why}, {phase}")
        if phase == "stopping":
            successor = self.children.get(child.spec.name)
            handing_over = child.spec.kind == "gateway" and successor is not None and successor.status == "healthy"
            self._signal(child, signal.SIGUSR2 if handing_over else signal.SIGTERM)

    def _signal(self, child: Child, sig: int) -> None:
        """SIGUSR2 (hand over) to the process itself, anything else to its whole group."""
        if not child.pid or not child.alive():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if sig == signal.SIGUSR2:
                os.kill(child.pid, sig)
            else:
                os.killpg(child.pid, sig)

    # -- starting --------------------------------------------------------------------

    def start_child(self, child: Child) -> None:
        from mlserve.errors import MlserveError
        from mlserve.tools import spawn

        spec = child.spec
        log_path = Path(spec.log_path)
        with contextlib.suppress(OSError), open(log_path, "ab") as fh:
            fh.write(f"\n==== mlserve: starting {spec.name}: {' '.join(spec.argv)}\n".encode())
        env = dict(spec.env)
        fds: dict[str, int] = {}
        try:
            for role in spec.listen:
                fds[role] = self._listener(spec.ports[role]).fileno()
            if spec.kind == "gateway":
                self._write_routes_file()  # it reads its routes at start
            if fds:
                env["MLSERVE_LISTEN_FDS"] = ",".join(f"{r}={fd}" for r, fd in fds.items())
            if spec.ready_file:
                env["MLSERVE_READY_FILE"] = spec.ready_file
            popen = spawn(spec.argv, log_path=log_path, cwd=Path(spec.cwd), env=env, pass_fds=tuple(fds.values()))
        except (MlserveError, OSError) as err:
            log(f"cannot start {spec.name}: {getattr(err, 'message', None) or err}")
            child.status = "crashed"
            child.last_exit = None
            self._schedule_restart(child)
            return
        child.popen = popen
        child.pid = popen.pid
        child.start_time = process_start_time(popen.pid)
        child.listen_fds = fds
        child.status = "starting"
        child.started_at = time.time()
        child.healthy_at = None
        # ever_healthy stays: a server restarted after a crash keeps its place in the routes (the
        # gateway retries its requests elsewhere meanwhile, and counts them against it)
        child.config_applied = spec.config_fingerprint if spec.kind != "gateway" else ""
        child.next_probe = time.monotonic() + 0.1
        self.dirty = True
        self.write_state()  # record the pid at once: `down` must find it even if we die now
        log(f"started {spec.name} (pid {popen.pid}, port {spec.port})")

    def _listener(self, port: int) -> socket.socket:
        sock = self.listeners.get(port)
        if sock is None:
            sock = self.listeners[port] = bind_listener(port)
        return sock

    def _release_listeners(self) -> None:
        wanted = {c.spec.ports.get(r) for c in [*self.children.values(), *self.retiring] for r in c.spec.listen}
        wanted |= {c.spec.ports.get(r) for c in [*self.children.values(), *self.retiring] for r in c.listen_fds}
        for port in [p for p in self.listeners if p not in wanted]:
            self.listeners.pop(port).close()

    def _schedule_restart(self, child: Child) -> None:
        child.streak += 1
        # At once the first time (a crashed gateway must answer again quickly), then backing off.
        delay = 0.0 if child.streak == 1 else min(BACKOFF_MAX, 0.5 * (2 ** (child.streak - 2)))
        child.next_start = time.monotonic() + delay
        child.status = "backoff"
        self.dirty = True
        log(f"{child.spec.name}: restarting in {delay:.1f}s (crash {child.streak} in a row)")
        if delay == 0.0:
            self.start_child(child)

    # -- stopping ----------------------------------------------------------------------

    def stop_child(self, child: Child, why: str) -> None:
        """Blocking stop (used when the supervisor itself exits)."""
        if child.pid and child.alive():
            log(f"stopping {child.spec.name} (pid {child.pid}): {why}")
            stop_group(child.pid, child.start_time)
        if child.popen is not None:
            with contextlib.suppress(Exception):
                child.popen.wait(timeout=1)
        child.status = "stopped"
        self.dirty = True

    # -- the loop ------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        for child in list(self.children.values()):
            self._watch(child, now)
        self._advance_retiring(now)
        self._push_routes(now)
        self._release_listeners()
        self._check_converged()

    def _watch(self, child: Child, now: float) -> None:
        if child.status == "waiting":
            if child.waits_for is None or not child.waits_for.alive():
                child.waits_for = None
                self.start_child(child)
            return
        if child.status == "backoff":
            if now >= child.next_start:
                self.start_child(child)
            return
        if child.status not in ("starting", "healthy", "unhealthy"):
            return
        if not child.alive():
            code = child.popen.returncode if child.popen is not None else None
            child.last_exit = code
            child.restarts += 1
            log(f"{child.spec.name} (pid {child.pid}) exited with {code}")
            child.popen, child.pid, child.start_time = None, None, None
            child.status = "crashed"
            self.dirty = True
            if child.adopted:
                self.reload = True  # we do not know its argv: reconcile restarts it
                return
            self._schedule_restart(child)
            return
        if now >= child.next_probe and child.spec.health_url:
            ok = self._healthy(child)
            child.next_probe = now + (0.1 if child.status == "starting" else HEALTH_EVERY)
            if ok and child.status != "healthy":
                child.status = "healthy"
                child.ever_healthy = True
                child.healthy_at = time.time()
                self.dirty = True
                log(f"{child.spec.name} healthy")
            elif not ok and child.status == "healthy":
                child.status = "unhealthy"
                self.dirty = True
                log(f"{child.spec.name} failed its health check")
            elif (
                child.status == "starting"
                and child.started_at is not None
                and time.time() - child.started_at > child.spec.start_timeout
            ):
                child.status = "unhealthy"
                self.dirty = True
                log(f"{child.spec.name} not healthy after {child.spec.start_timeout:g}s")
        if (
            child.status == "healthy"
            and child.streak
            and child.healthy_at
            and time.time() - child.healthy_at > STABLE_AFTER
        ):
            child.streak = 0
        self._reload_config(child, now)

    def _healthy(self, child: Child) -> bool:
        spec = child.spec
        if spec.ready_file and not child.ever_healthy:
            # the ports may be shared with the instance it replaces: only its own word counts
            try:
                if json.loads(Path(spec.ready_file).read_text()).get("pid") != child.pid:
                    return False
            except (OSError, ValueError, AttributeError):
                return False
        return all(probe(u) for u in [spec.health_url, *spec.ready_urls])

    def _reload_config(self, child: Child, now: float) -> None:
        spec = child.spec
        if not spec.reload_url or spec.config_fingerprint == child.config_applied or child.status != "healthy":
            return
        if now < child.reload_at:
            return
        try:
            req = urllib.request.Request(spec.reload_url, method="POST", data=b"")
            with urllib.request.urlopen(req, timeout=10) as resp:
                ok = 200 <= resp.status < 300
                detail = ""
        except urllib.error.HTTPError as exc:
            ok, detail = False, exc.read().decode("utf-8", "replace")[:300]
        except (OSError, urllib.error.URLError, ValueError) as exc:
            ok, detail = False, str(exc)
        if ok:
            child.config_applied, child.reload_error = spec.config_fingerprint, None
            log(f"{spec.name}: configuration reloaded in place (pid {child.pid})")
        else:
            child.reload_at, child.reload_error = now + 1.0, detail or "reload failed"
            log(f"{spec.name}: reload failed: {child.reload_error}")
        self.dirty = True

    # -- routes --------------------------------------------------------------------

    def _gateway(self) -> Child | None:
        return next((c for c in self.children.values() if c.spec.kind == "gateway"), None)

    def _effective_routes(self) -> Routes | None:
        if self.desired_gateway is None:
            return None
        servers: dict[tuple[str, str], ArmServer] = {}
        for child in self.children.values():
            spec = child.spec
            if spec.kind != "model" or spec.endpoint is None:
                continue
            before = next(
                (r for r in self.retiring if r.spec.name == spec.name and r.phase == "serving" and r.alive()), None
            )
            servers[(spec.endpoint, spec.route)] = ArmServer(
                endpoint=spec.endpoint,
                arm=spec.route,
                planned_url=child.url,
                ready_url=child.url if child.ever_healthy else None,
                predecessor_url=before.url if before is not None else None,
            )
        return effective(self.desired_gateway, servers)

    def _write_routes_file(self) -> None:
        routes = self._effective_routes()
        if routes is None:
            return
        fsutil.atomic_write_json(self.paths.gateway_config, routes.config)
        self.routes = routes

    def _push_routes(self, now: float) -> None:
        """Give the running gateway the routes of this moment (a reload, never a restart)."""
        routes = self._effective_routes()
        gw = self._gateway()
        if routes is None or gw is None:
            return
        if any(r.spec.kind == "gateway" for r in self.retiring):
            return  # a hand-over: the new process read the file at its start; wait until the old is gone
        if self.routes is not None and self.routes.digest == routes.digest:  # the gateway has these
            if routes.complete != self.routes.complete:  # the same routes, now the planned ones
                self.routes = routes
                self.dirty = True
            if routes.complete and gw.status == "healthy" and gw.config_applied != gw.spec.config_fingerprint:
                gw.config_applied = gw.spec.config_fingerprint
                self.dirty = True
            return
        if gw.status != "healthy" or now < self.routes_retry:
            return  # a gateway (re)starting reads the file the supervisor writes before it starts it
        fsutil.atomic_write_json(self.paths.gateway_config, routes.config)
        try:
            answer = self._admin("POST", "/admin/reload")
        except RuntimeError as exc:
            self.routes_error = str(exc)
            self.routes_retry = now + 1.0
            self.dirty = True
            log(f"gateway routes not applied: {exc}")
            return
        self.routes, self.routes_error = routes, None
        if routes.complete:
            gw.config_applied = gw.spec.config_fingerprint
        self.dirty = True
        log(
            f"gateway routes applied in place (pid {answer.get('pid')}): {'; '.join(answer.get('changes') or []) or 'no change'}"
        )

    def _admin(self, method: str, path: str) -> dict[str, Any]:
        """One call to the gateway's admin API; RuntimeError with the gateway's message."""
        base = (self.desired_gateway or {}).get("admin_port")
        gw = self._gateway()
        port = gw.spec.ports.get("admin") if gw is not None else base
        try:
            token = self.paths.admin_token.read_text(encoding="ascii").strip()
        except OSError as exc:
            raise RuntimeError(f"cannot read the admin token: {exc}") from None
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            method=method,
            data=b"" if method == "POST" else None,
            headers={"Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                data = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", "replace")
            with contextlib.suppress(ValueError, AttributeError):
                body = json.loads(body).get("error", body)
            raise RuntimeError(f"{method} {path}: {exc.code}: {body}") from None
        except (OSError, urllib.error.URLError, ValueError) as exc:
            raise RuntimeError(f"{method} {path}: {exc}") from None
        return data if isinstance(data, dict) else {}

    # -- retiring ------------------------------------------------------------------------

    def _advance_retiring(self, now: float) -> None:
        for old in list(self.retiring):
            if not old.alive():
                if old.popen is not None:
                    with contextlib.suppress(Exception):
                        old.popen.wait(timeout=0)
                self.retiring.remove(old)
                self.dirty = True
                log(f"{old.spec.name} (pid {old.pid}) has exited ({old.why})")
                continue
            successor = self.children.get(old.spec.name)
            if old.phase == "serving":
                if old.spec.kind == "gateway":
                    if successor is not None and successor.status == "healthy":
                        self._enter(old, "stopping")  # SIGUSR2: stop accepting, drain, exit
                elif successor is None or successor.ever_healthy or successor.spec.kind != "model":
                    self._enter(old, "draining")
            elif old.phase == "draining":
                self._drain(old, now)
            elif old.phase == "stopping":
                grace = HANDOVER_GRACE if old.spec.kind == "gateway" else STOP_GRACE
                if now - old.phase_since > grace:
                    log(f"{old.spec.name} (pid {old.pid}) still runs after {grace:g}s: SIGKILL")
                    self._signal(old, signal.SIGKILL)
                    old.phase_since = now  # again after another grace

    def _drain(self, old: Child, now: float) -> None:
        """Stop a removed model server once no request of the gateway holds it."""
        gw = self._gateway()
        limit = float((self.desired_gateway or {}).get("upstream_timeout", 30.0)) + DRAIN_MARGIN
        if gw is None or not gw.alive() or gw.status != "healthy":
            self._enter(old, "stopping")  # no gateway: nothing can be in flight through it
            return
        routes = self.routes
        if routes is None or old.url in routes.urls or any(r.spec.kind == "gateway" for r in self.retiring):
            if now - old.phase_since > limit + 30.0:
                self._enter(old, "stopping")
            return  # the gateway still routes to it: first the reload
        try:
            inflight = int((self._admin("GET", "/admin/upstreams").get("inflight") or {}).get(old.url, 0))
        except RuntimeError as exc:
            log(f"{old.spec.name}: cannot ask the gateway what it holds: {exc}")
            inflight = -1
        if inflight == 0 or now - old.phase_since > limit:
            if inflight:
                log(f"{old.spec.name}: still {inflight} request(s) after {limit:g}s; stopping anyway")
            self._enter(old, "stopping")

    def _check_converged(self) -> None:
        if self.converged_generation >= self.generation or self.retiring:
            return
        gw = self._gateway()
        routes_ok = gw is None or self.desired_gateway is None or (self.routes is not None and self.routes.complete)
        for child in self.children.values():
            if child.status != "healthy" or child.adopted:
                return
            if child.spec.config_fingerprint and child.config_applied != child.spec.config_fingerprint:
                return
        if not routes_ok or self.routes_error:
            return
        self.converged_generation = self.generation
        self.dirty = True
        log(f"generation {self.generation} in place")

    def shutdown(self) -> None:
        log("stopping every process")
        everyone = [*self.children.values(), *self.retiring]
        # SIGTERM to every group first, so they all shut down in parallel.
        for child in everyone:
            if child.pid and child.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGTERM)
        for child in everyone:
            self.stop_child(child, "shutting down")
            child.pid = None
            child.start_time = None
        self.retiring = []
        for sock in self.listeners.values():
            sock.close()
        self.listeners.clear()
        self.write_state()

    def run(self) -> int:
        self.install_signals()
        self.adopt()
        self.write_state()
        log(f"supervisor {self.pid} for {self.root}")
        while not self.stopping:
            if self.reload:
                self.reload = False
                try:
                    self.reconcile()
                except Exception as exc:
                    log(f"reconcile failed: {type(exc).__name__}: {exc}")
            try:
                self.tick()
            except Exception as exc:  # one bad tick must not take every process down with us
                log(f"tick failed: {type(exc).__name__}: {exc}")
            if self.dirty:
                self.write_state()
            self._sleep(TICK)
        self.shutdown()
        log("supervisor exits")
        return 0


def acquire_lock(path: Path) -> int | None:
    """An exclusive lock held for the supervisor's life; None when another one holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def lock_held(path: Path) -> bool:
    """True when a supervisor holds the project's lock now."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our lock if we got it
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlserve.local.supervisor", description=__doc__.split("\n")[0])
    parser.add_argument("--project-dir", required=True, type=Path)
    parser.add_argument("--daemonize", action="store_true", help="fork; the parent exits once the child runs")
    args = parser.parse_args(argv)
    root = args.project_dir.resolve()
    if args.daemonize and os.fork() > 0:
        # The parent returns at once; the child is re-parented away from the caller,
        # so the caller never has to reap it (no zombie that looks alive).
        return 0
    if args.daemonize:
        os.setsid()
    paths = LocalPaths(root / ".mlserve")
    fd = acquire_lock(paths.lock)
    if fd is None:
        log("another supervisor runs for this project; exiting")
        return 0
    try:
        return Supervisor(root).run()
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
