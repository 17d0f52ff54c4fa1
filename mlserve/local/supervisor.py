"""The per-project supervisor: keeps the processes of ``desired.json`` running.

Started detached by ``mlserve deploy`` (``python -m mlserve.local.supervisor
--project-dir DIR``), one per project (an exclusive lock on
``.mlserve/local/supervisor.lock``). SIGHUP: re-read ``desired.json`` and reconcile
(start what is missing, restart what changed, stop what is gone). SIGTERM/SIGINT:
stop every child and exit. A child that exits is restarted with exponential
backoff. Every change is written to ``state.json`` (atomically) with pids and
process start times, so that ``mlserve down`` can clean up even after this process
was killed with -9, and a new supervisor adopts children that still run.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve import fsutil
from mlserve.local.state import (
    STATE_FORMAT,
    LocalPaths,
    ProcessSpec,
    pid_alive,
    process_start_time,
    read_json,
    stop_group,
)

TICK = 0.2
HEALTH_EVERY = 2.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 30.0  # healthy this long: the crash streak is forgotten


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
    extra: dict[str, Any] = field(default_factory=dict)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid, self.start_time)

    def record(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "pid": self.pid,
            "start_time": self.start_time,
            "fingerprint": self.spec.fingerprint,
            "status": self.status,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "started_at": self.started_at,
            "healthy_at": self.healthy_at,
        }


class Supervisor:
    def __init__(self, project_dir: Path) -> None:
        self.root = project_dir
        self.paths = LocalPaths(project_dir / ".mlserve")
        self.children: dict[str, Child] = {}
        self.generation = 0
        self.reload = True
        self.stopping = False
        self.dirty = True
        self.pid = os.getpid()
        self.start_time = process_start_time(self.pid)

    # -- signals -----------------------------------------------------------------

    def install_signals(self) -> None:
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)

    def _on_hup(self, _sig: int, _frame: Any) -> None:
        self.reload = True

    def _on_term(self, _sig: int, _frame: Any) -> None:
        self.stopping = True

    # -- state ---------------------------------------------------------------------

    def write_state(self) -> None:
        fsutil.atomic_write_json(
            self.paths.state,
            {
                "format": STATE_FORMAT,
                "supervisor": {"pid": self.pid, "start_time": self.start_time, "stopping": self.stopping},
                "generation": self.generation,
                "updated_at": time.time(),
                "processes": {name: c.record() for name, c in self.children.items()},
            },
        )
        self.dirty = False

    def adopt(self) -> None:
        """Children of a previous supervisor that still run (it was killed): keep watching them."""
        old = read_json(self.paths.state) or {}
        for name, rec in (old.get("processes") or {}).items():
            if not isinstance(rec, dict):
                continue
            pid, start = rec.get("pid"), rec.get("start_time")
            if pid_alive(pid, start):
                self.children[name] = Child(
                    spec=ProcessSpec(
                        name=name,
                        kind="adopted",
                        argv=[],
                        env={},
                        cwd=str(self.root),
                        port=0,
                        log_path="",
                        health_url="",
                        fingerprint=str(rec.get("fingerprint", "")),
                    ),
                    pid=pid,
                    start_time=start,
                    status=str(rec.get("status", "starting")),
                    restarts=int(rec.get("restarts", 0)),
                    started_at=rec.get("started_at"),
                    healthy_at=rec.get("healthy_at"),
                )
                log(f"adopted {name} (pid {pid}) from a previous supervisor")

    # -- reconcile -----------------------------------------------------------------

    def reconcile(self) -> None:
        desired = read_json(self.paths.desired)
        if desired is None:
            log("no desired.json: nothing to run")
            return
        specs = {p["name"]: ProcessSpec.from_dict(p) for p in desired.get("processes", [])}
        for name in list(self.children):
            child = self.children[name]
            spec = specs.get(name)
            if spec is None or spec.fingerprint != child.spec.fingerprint:
                why = "no longer wanted" if spec is None else "changed"
                self.stop_child(child, why)
                del self.children[name]
            elif child.spec.kind == "adopted":
                child.spec = spec  # same fingerprint: adopt its full description
                if child.pid is None:  # it died before we learnt how to restart it
                    self.start_child(child)
        for name, spec in specs.items():
            if name not in self.children:
                self.children[name] = Child(spec=spec)
                self.start_child(self.children[name])
        self.generation = int(desired.get("generation", 0))
        self.dirty = True

    def start_child(self, child: Child) -> None:
        from mlserve.errors import MlserveError
        from mlserve.tools import spawn

        spec = child.spec
        log_path = Path(spec.log_path)
        with contextlib.suppress(OSError), open(log_path, "ab") as fh:
            fh.write(f"\n==== mlserve: starting {spec.name}: {' '.join(spec.argv)}\n".encode())
        try:
            popen = spawn(spec.argv, log_path=log_path, cwd=Path(spec.cwd), env=spec.env)
        except MlserveError as err:
            log(f"cannot start {spec.name}: {err.message}")
            child.status = "crashed"
            child.last_exit = None
            self._schedule_restart(child)
            return
        child.popen = popen
        child.pid = popen.pid
        child.start_time = process_start_time(popen.pid)
        child.status = "starting"
        child.started_at = time.time()
        child.healthy_at = None
        child.next_probe = time.monotonic() + 0.3
        self.dirty = True
        self.write_state()  # record the pid at once: `down` must find it even if we die now
        log(f"started {spec.name} (pid {popen.pid}, port {spec.port})")

    def stop_child(self, child: Child, why: str) -> None:
        if child.pid and child.alive():
            log(f"stopping {child.spec.name} (pid {child.pid}): {why}")
            stop_group(child.pid, child.start_time)
        if child.popen is not None:
            with contextlib.suppress(Exception):
                child.popen.wait(timeout=1)
        child.status = "stopped"
        self.dirty = True

    def _schedule_restart(self, child: Child) -> None:
        child.streak += 1
        delay = min(BACKOFF_MAX, 0.5 * (2 ** (child.streak - 1)))
        child.next_start = time.monotonic() + delay
        child.status = "backoff"
        self.dirty = True
        log(f"{child.spec.name}: restarting in {delay:.1f}s (crash {child.streak} in a row)")

    # -- the loop ------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.status in ("starting", "healthy", "unhealthy"):
                if not child.alive():
                    code = child.popen.returncode if child.popen is not None else None
                    child.last_exit = code
                    child.restarts += 1
                    log(f"{child.spec.name} (pid {child.pid}) exited with {code}")
                    child.popen = None
                    child.pid = None
                    child.start_time = None
                    if child.spec.kind == "adopted":
                        child.status = "crashed"
                        self.reload = True  # we do not know its argv: reconcile restarts it
                        continue
                    self._schedule_restart(child)
                    continue
                if now >= child.next_probe and child.spec.health_url:
                    ok = probe(child.spec.health_url)
                    child.next_probe = now + (0.3 if child.status == "starting" else HEALTH_EVERY)
                    if ok and child.status != "healthy":
                        child.status = "healthy"
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
            elif child.status == "backoff" and now >= child.next_start:
                self.start_child(child)

    def shutdown(self) -> None:
        log("stopping every process")
        # SIGTERM to every group first, so they all shut down in parallel.
        for child in self.children.values():
            if child.pid and child.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGTERM)
        for child in self.children.values():
            self.stop_child(child, "shutting down")
            child.pid = None
            child.start_time = None
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
            self.tick()
            if self.dirty:
                self.write_state()
            time.sleep(TICK)
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
