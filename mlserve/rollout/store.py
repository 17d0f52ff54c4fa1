"""A rollout's run directory: crash-safe state, the event log, the lock and control requests.

``experiments/ENDPOINT/RUN_ID/``::

    state.json      the run record, mlserve.rollout/v2 (atomic: temp file + fsync + os.replace)
    snapshot.json   the cumulative mlserve.snapshot/v1 of the run (derived from state.json)
    snapshots/      one mlserve.snapshot/v1 per step: exactly what each decision saw
    events.jsonl    append-only event log (one JSON object per line, fsync'd)
    lock            pid, process start time and host of the process driving the run
    control.json    a request (pause, abort, rollback, promote) left for the lock holder

``experiments/ENDPOINT/current`` names the run in progress (or the last one).

The lock is an ``flock`` on ``lock``: the kernel drops it when its holder dies, even after
``kill -9``, so a stale lock can never block a resume; what the file says (pid, since,
host) is only for the message. Taking over a lock whose recorded pid is dead is logged as
an event.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlserve import fsutil
from mlserve.errors import StateError
from mlserve.fsutil import read_json
from mlserve.timefmt import parse_utc, utc

if TYPE_CHECKING:
    from mlserve.rollout.record import Run
    from mlserve.targets.base import LiveRollout


def _write(path: Path, data: Any) -> None:
    """Readers see the old or the new file, never half (run directories are committed: 0644)."""
    fsutil.atomic_write_json(path, data, indent=1)


def _process_start(pid: int) -> int | None:
    from mlserve.local.state import process_start_time

    return process_start_time(pid)


def _pid_alive(pid: int, start: int | None) -> bool:
    from mlserve.local.state import pid_alive

    return pid_alive(pid, start)


@dataclass(frozen=True)
class LockInfo:
    pid: int
    start_time: int | None
    hostname: str
    since: float

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "start_time": self.start_time, "hostname": self.hostname, "since": utc(self.since)}

    @classmethod
    def from_text(cls, text: str) -> LockInfo | None:
        try:
            data = json.loads(text)
            since = parse_utc(data["since"])
            return cls(int(data["pid"]), data.get("start_time"), str(data.get("hostname", "")), since)
        except (ValueError, KeyError, TypeError):
            return None


class RunLock:
    """An exclusive, non-blocking lock on one run; released on close or by the kernel at death."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.took_over: LockInfo | None = None  # a dead holder's record we replaced

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = LockInfo.from_text(_read_fd(fd))
            os.close(fd)
            if holder is None:
                raise StateError(f"rollout run {self.path.parent.name} is locked by another process") from None
            raise StateError(
                f"locked by pid {holder.pid} since {utc(holder.since)} on {holder.hostname or 'this host'}: "
                f"another mlserve process is driving rollout run {self.path.parent.name}",
                hint="wait for it, or use `mlserve rollout pause|abort` to ask it to stop",
            ) from None
        previous = LockInfo.from_text(_read_fd(fd))
        if previous is not None and previous.pid != os.getpid():
            self.took_over = previous  # its holder died (the kernel released its flock)
        me = LockInfo(os.getpid(), _process_start(os.getpid()), socket.gethostname(), time.time())
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me.to_dict()) + "\n").encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_fd(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return ""


def lock_holder(path: Path) -> LockInfo | None:
    """Who holds the lock now (None when free), without taking it."""
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return LockInfo.from_text(_read_fd(fd)) or LockInfo(0, None, "", 0.0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RunDir:
    """Paths of one run."""

    root: Path

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def snapshot(self) -> Path:
        return self.root / "snapshot.json"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def control(self) -> Path:
        return self.root / "control.json"

    def step_snapshot(self, index: int) -> Path:
        return self.snapshots / f"step-{index + 1:02d}.json"

    # -- state -----------------------------------------------------------------

    def read_state(self) -> Run:
        """The run record (an ``mlserve.rollout/v1`` state is migrated on the way in)."""
        from mlserve.rollout.record import load

        data = read_json(self.state)
        if data is None:
            raise StateError(f"{self.state}: no rollout state (was the run started?)")
        return load(data, str(self.state))

    def write_state(self, record: Run) -> Run:
        record = replace(record, updated_at=utc())
        _write(self.state, record.to_dict())
        return record

    def write_snapshots(self, record: Run) -> None:
        """What each step's decision saw (the finished steps' once), and the whole run."""
        for i, step in enumerate(record.steps):
            if step.looks and (i == len(record.steps) - 1 or not self.step_snapshot(i).exists()):
                _write(self.step_snapshot(i), record.step_snapshot(step).to_dict())
        _write(self.snapshot, record.cumulative_snapshot().to_dict())

    def report_paths(self) -> dict[str, Path]:
        from mlserve.report import report_paths

        return report_paths(self.root)

    # -- events ----------------------------------------------------------------

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"at": utc(), "event": kind, **fields}
        line = json.dumps(record, sort_keys=True, allow_nan=False, default=str) + "\n"
        with open(self.events, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return record

    def read_events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        try:
            lines = self.events.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash mid-write
            if isinstance(item, dict):
                out.append(item)
        return out

    # -- control requests ------------------------------------------------------

    def request(self, action: str, **fields: Any) -> None:
        _write(self.control, {"action": action, "at": utc(), "pid": os.getpid(), **fields})

    def take_request(self) -> dict[str, Any] | None:
        try:
            data = read_json(self.control)
        except StateError:
            data = None
        if data is not None:
            self.control.unlink(missing_ok=True)
        return data

    # -- lock --------------------------------------------------------------------

    def locked(self) -> RunLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return RunLock(self.lock)

    def holder(self) -> LockInfo | None:
        return lock_holder(self.lock)


def endpoint_dir(experiments: Path, endpoint: str) -> Path:
    return experiments / endpoint


def current_run(experiments: Path, endpoint: str) -> RunDir | None:
    """The run named by ``experiments/ENDPOINT/current``, if any."""
    pointer = endpoint_dir(experiments, endpoint) / "current"
    try:
        run_id = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise StateError(f"{pointer}: does not name a run")
    run = RunDir(endpoint_dir(experiments, endpoint) / run_id)
    if not run.state.exists():
        raise StateError(f"{pointer} names run {run_id!r}, but {run.state} does not exist")
    return run


def set_current(experiments: Path, endpoint: str, run: RunDir) -> None:
    pointer = endpoint_dir(experiments, endpoint) / "current"
    fd, tmp = tempfile.mkstemp(prefix=".current.", dir=pointer.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(run.run_id + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, pointer)


def new_run_id(candidate: str, now: float | None = None) -> str:
    stamp = _dt.datetime.fromtimestamp(time.time() if now is None else now, _dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{candidate}"


@contextlib.contextmanager
def holding(run: RunDir) -> Iterator[RunLock]:
    lock = run.locked().acquire()
    try:
        if lock.took_over is not None:
            alive = _pid_alive(lock.took_over.pid, lock.took_over.start_time)
            run.event(
                "lock_taken_over",
                previous_pid=lock.took_over.pid,
                previous_since=utc(lock.took_over.since),
                previous_alive=alive,
            )
        yield lock
    finally:
        lock.release()


def rollout_in_progress(experiments: Path, endpoint: str) -> LiveRollout | None:
    """The rollout of ``endpoint`` that has not ended (named by ``experiments/ENDPOINT/current``),
    or None; read-only. Deploy and render are given it (``rollout.service.live_rollouts``) so
    that they keep its traffic instead of the manifest's stable split."""
    from mlserve.targets.base import LiveRollout

    try:
        run = current_run(experiments, endpoint)
        record = run.read_state() if run is not None else None
    except StateError:
        return None
    if record is None or record.status.terminal:
        return None
    return LiveRollout(
        endpoint=endpoint,
        run_id=record.run_id,
        env=record.env,
        status=str(record.status),
        baseline=record.baseline,
        candidate=record.candidate,
        step=len(record.steps),
        steps=len(record.plans),
        plan=record.traffic,  # what it last applied (a pending change is re-applied by its resume)
    )
