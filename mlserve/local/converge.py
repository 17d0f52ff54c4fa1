"""Hand a desired state to the supervisor and wait until it is in place, or put the last one back.

Used by ``deploy`` and by the arms API. "In place" (``converged_generation`` in
``state.json``) means: every process healthy with the wanted fingerprint, every reloadable
config taken over, the gateway routing every arm to its planned server, and nothing left
to drain. A change that cannot get there (a server that keeps crashing, a config the gateway
refuses, a timeout) fails with the reason and the end of the log that says why; the caller
then restores the previous desired state (:func:`restore`), which the supervisor reaches
without touching what kept running.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlserve import fsutil
from mlserve.errors import TargetError
from mlserve.local.desired import refresh, write
from mlserve.local.state import LocalPaths, ProcessSpec, pid_alive, read_json

Say = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


def signal_supervisor(paths: LocalPaths) -> bool:
    """SIGHUP to the running supervisor; False when none runs."""
    state = read_json(paths.state) or {}
    sup = state.get("supervisor") or {}
    if pid_alive(sup.get("pid"), sup.get("start_time")):
        os.kill(int(sup["pid"]), signal.SIGHUP)
        return True
    return False


def wait(
    paths: LocalPaths,
    specs: dict[str, ProcessSpec],
    generation: int,
    *,
    say: Say = _quiet,
    timeout: float | None = None,
    failed: Callable[[str, ProcessSpec, dict[str, Any], LocalPaths], TargetError],
    quiet: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Until ``generation`` is in place; TargetError (with the log excerpt) when it cannot be.

    Status changes are reported through ``say``, except "healthy" for the ``quiet`` ones
    (processes this change leaves running as they were)."""
    from mlserve.local.supervisor import lock_held

    limit = timeout if timeout is not None else max(p.start_timeout for p in specs.values()) + 30.0
    deadline = time.monotonic() + limit
    shown: dict[str, str] = {}
    first_restarts: dict[str, int] = {}
    t0 = time.monotonic()
    while True:
        state = read_json(paths.state) or {}
        applied = int(state.get("generation", 0)) >= generation
        records = {k: v for k, v in (state.get("processes") or {}).items() if isinstance(v, dict)}
        pending = []
        for name, spec in specs.items():
            rec = records.get(name)
            if not applied or rec is None or rec.get("fingerprint") != spec.fingerprint:
                pending.append(name)
                continue
            status = str(rec.get("status"))
            if shown.get(name) != status:
                shown[name] = status
                if name in quiet and status == "healthy":
                    continue
                where = f"pid {rec.get('pid')}, port {spec.port}" if rec.get("pid") else f"port {spec.port}"
                suffix = f" after {time.monotonic() - t0:.1f}s" if status == "healthy" else ""
                say(f"{name}: {status} ({where}){suffix}")
            restarts = int(rec.get("restarts", 0))
            first_restarts.setdefault(name, restarts)
            if restarts - first_restarts[name] >= 2 or (status == "unhealthy" and rec.get("pid")):
                raise failed(name, spec, rec, paths)
            if rec.get("reload_error"):
                raise TargetError(f"{name} did not take its new configuration: {rec['reload_error']}")
            if status != "healthy":
                pending.append(name)
        for old in state.get("retiring") or []:
            key = f"{old.get('name')}#{old.get('pid')}"
            phase = str(old.get("phase", ""))
            if applied and shown.get(key) != phase:
                shown[key] = phase
                say(f"{old.get('name')} (pid {old.get('pid')}, {old.get('why') or 'retiring'}): {phase}")
        routes = state.get("routes") or {}
        if applied and routes.get("error"):
            raise TargetError(f"the gateway refused its new configuration: {routes['error']}")
        if applied and not pending and int(state.get("converged_generation", 0)) >= generation:
            return
        if time.monotonic() > deadline:
            if pending:
                spec = specs[pending[0]]
                raise TargetError(
                    f"not healthy after {limit:.0f}s: {', '.join(pending)}\n"
                    f"last lines of {spec.log_path}:\n{fsutil.tail(Path(spec.log_path))}",
                    hint="`mlserve status` shows what runs; `mlserve down` stops everything",
                )
            left = ", ".join(f"{r.get('name')} ({r.get('phase')})" for r in state.get("retiring") or [])
            raise TargetError(f"the change was not in place after {limit:.0f}s: {left or 'the gateway routes'}")
        sup = state.get("supervisor") or {}
        gone = not pid_alive(sup.get("pid"), sup.get("start_time")) and not lock_held(paths.lock)
        if gone and (applied or time.monotonic() - t0 > 10.0):
            raise TargetError(
                "the local supervisor died during deploy",
                hint=f"see {paths.supervisor_log}; `mlserve down` stops what it started",
            )
        time.sleep(0.1)


def restore(
    paths: LocalPaths,
    previous: dict[str, Any],
    generation: int,
    failed: Callable[[str, ProcessSpec, dict[str, Any], LocalPaths], TargetError],
) -> int:
    """Make ``previous`` the desired state again (as generation ``generation``) and wait for it."""
    doc = copy.deepcopy(previous)
    doc["generation"] = generation
    if isinstance(doc.get("gateway"), dict):
        doc["gateway"]["generation"] = generation
    files = refresh(doc) if doc.get("scrape") else {}
    write(paths, doc, files)
    signal_supervisor(paths)
    specs = {p["name"]: ProcessSpec.from_dict(p) for p in doc.get("processes", [])}
    wait(paths, specs, generation, timeout=120.0, failed=failed)
    return generation


def prune_server_dirs(paths: LocalPaths, doc: dict[str, Any]) -> list[str]:
    """Folders of model servers that no longer run (a replaced instance's settings)."""
    used = {Path(p.get("cwd", "")).resolve() for p in doc.get("processes", [])}
    removed = []
    if paths.servers_dir.is_dir():
        for folder in paths.servers_dir.iterdir():
            if folder.is_dir() and folder.resolve() not in used:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
    return removed
