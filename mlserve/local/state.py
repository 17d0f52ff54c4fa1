"""Files the local target keeps under ``.mlserve/``, and the process facts recorded in them.

``desired.json`` is what ``deploy`` asks for; ``state.json`` is what the supervisor
has running. Both are written atomically (temp file + ``os.replace``) so a reader
never sees half a document. Every recorded process carries its start time as the
kernel reports it, so that a pid reused by an unrelated program is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve import fsutil
from mlserve.errors import StateError

DESIRED_FORMAT = "mlserve.local.desired/v1"
STATE_FORMAT = "mlserve.local.state/v1"
SHADOW_SAMPLES = "llm-shadow-samples.json"  # beside the gateway's state file, in .mlserve/local/


@dataclass(frozen=True)
class LocalPaths:
    """Where the local target keeps its files for one project."""

    state_dir: Path  # the project's .mlserve/

    @property
    def local_dir(self) -> Path:
        return self.state_dir / "local"

    @property
    def desired(self) -> Path:
        return self.local_dir / "desired.json"

    @property
    def state(self) -> Path:
        return self.local_dir / "state.json"

    @property
    def lock(self) -> Path:
        return self.local_dir / "supervisor.lock"

    @property
    def servers_dir(self) -> Path:
        return self.local_dir / "servers"

    @property
    def gateway_config(self) -> Path:
        return self.local_dir / "gateway.json"

    @property
    def shadow_samples(self) -> Path:
        """Recent (routed, mirrored) generation pairs of LLM shadows, written by the gateway."""
        return self.local_dir / SHADOW_SAMPLES

    @property
    def prometheus_config(self) -> Path:
        return self.local_dir / "prometheus.yml"

    @property
    def prometheus_data(self) -> Path:
        return self.state_dir / "prometheus"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def supervisor_log(self) -> Path:
        return self.logs_dir / "supervisor.log"

    @property
    def admin_token(self) -> Path:
        return self.state_dir / "admin-token"

    @property
    def seldon_venv(self) -> Path:
        return self.state_dir / "seldon-venv"

    @property
    def gateway_ready(self) -> Path:
        return self.local_dir / "gateway.ready"

    @property
    def traffic(self) -> Path:
        return self.local_dir / "traffic.json"

    @property
    def arms(self) -> Path:
        return self.local_dir / "arms.json"


@dataclass(frozen=True)
class ProcessSpec:
    """One process the supervisor keeps running (a model server, the gateway, Prometheus)."""

    name: str  # unique: "fraud/v1", "gateway", "prometheus"
    kind: str  # "model" | "gateway" | "prometheus"
    argv: list[str]
    env: dict[str, str]
    cwd: str
    port: int
    log_path: str
    health_url: str
    fingerprint: str  # changes whenever the process must be restarted
    endpoint: str | None = None
    version: str | None = None
    metrics_url: str | None = None
    ports: dict[str, int] = field(default_factory=dict)  # every port it listens on, by role
    start_timeout: float = 120.0
    # The route name of a model server in the gateway (default: its version); an extra arm of
    # an endpoint (a rollout's control) serves a version under another name.
    arm: str | None = None
    ready_urls: list[str] = field(default_factory=list)  # further checks that must answer 2xx
    # Port roles the supervisor binds itself and hands down (the gateway's): the sockets stay
    # open across the child's restarts, so a restart never refuses a connection.
    listen: list[str] = field(default_factory=list)
    # Configuration the running process can take over without a restart: a change of this
    # fingerprint alone means reload (``reload_url``, or the gateway's admin reload).
    config_fingerprint: str = ""
    reload_url: str | None = None
    ready_file: str | None = None  # the process writes {"pid": N} there once it serves

    @property
    def route(self) -> str:
        """The arm name of a model server in its endpoint's route table."""
        return self.arm or self.version or self.name

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ProcessSpec:
        return ProcessSpec(**data)


def read_json(path: Path) -> dict[str, Any] | None:
    """The document, or None when the file does not exist."""
    return fsutil.read_json(path, hint="run `mlserve down` to stop what is recorded there, or delete the file")


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest  # rest[0] is field 3 (state), rest[19] is field 22 (starttime)


def process_start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def pid_alive(pid: int | None, start_time: int | None = None) -> bool:
    """True when ``pid`` runs and, if given, started at ``start_time`` (not a reused pid).

    A zombie counts as gone: it holds no port and no memory, only a table entry that
    its parent (perhaps an init that never reaps) has not collected.
    """
    if not pid or pid <= 0:
        return False
    fields = _stat_fields(pid)
    if fields is None:
        return False
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


def group_alive(pgid: int) -> bool:
    """True when any live (non-zombie) process is left in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and len(fields) > 3 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def stop_group(pid: int, start_time: int | None, timeout: float = 10.0) -> bool:
    """SIGTERM the process group led by ``pid``; SIGKILL what is left after ``timeout``.

    Does nothing when the pid is gone or now belongs to another program. Returns
    True when something was signalled.
    """
    if not pid_alive(pid, start_time):
        # The leader is gone but may have left children in its group. Linux does not
        # hand out a pid that is still some group's id, so a live group is still ours.
        # A live pid with another start time is a stranger: leave it and its group alone.
        if pid_alive(pid):
            return False
        if start_time is not None and group_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            return True
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_alive(pid):
            return True
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and group_alive(pid):
        time.sleep(0.05)
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def read_shadow_samples(paths: LocalPaths, endpoint: str, since: float, keep: int = 5) -> tuple[dict[str, Any], ...]:
    """The latest ``keep`` generation pairs the gateway kept for an LLM endpoint's shadow, made
    at or after ``since`` (a step's anchor); none for a V2 endpoint or an unreadable file (the
    examples are a nicety of the report: they never hold a look)."""
    try:
        data = fsutil.read_json(paths.shadow_samples)
    except StateError:
        return ()
    got = data.get("endpoints", {}).get(endpoint, []) if isinstance(data, dict) else []
    if not isinstance(got, list):
        return ()
    kept = [x for x in got if isinstance(x, dict)][-keep:]
    return tuple(x for x in kept if isinstance(x.get("at"), int | float) and x["at"] >= since)
