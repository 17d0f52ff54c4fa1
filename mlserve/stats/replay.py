"""Replaying many snapshots in a process pool.

A directory of saved rollouts (thousands of snapshots) is replayed in parallel across
the machine's cores, in chunks, keeping the given order. Each snapshot that cannot be
read becomes an error entry instead of stopping the batch. Which spec judges a snapshot
is the caller's business (``spec_for``: endpoint -> spec and where it came from, e.g.
:class:`mlserve.manifest.analysis.Policies`): nothing here reads a manifest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from mlserve.stats.spec import AnalysisSpec

SpecFor = Callable[[str], tuple[AnalysisSpec, str]]

MIN_PARALLEL = 64  # below this, starting workers costs more than it saves
CHUNK = 50


def error_entry(path: Path, err: Any) -> dict[str, Any]:
    return {
        "snapshot": str(path),
        "verdict": None,
        "decided_at_look": None,
        "reason": err.message,
        "srm": None,
        "metrics": [],
        "error": err.to_dict(),
    }


def _replay_chunk(paths: Sequence[Path], spec_for: SpecFor, final: bool) -> list[dict[str, Any]]:
    from mlserve.errors import MlserveError
    from mlserve.stats.engine import analyze
    from mlserve.stats.snapshot import read_snapshot

    out: list[dict[str, Any]] = []
    for p in paths:
        try:
            snap = read_snapshot(p)
            spec, source = spec_for(snap.endpoint)
            out.append(analyze(snap, spec, final=final, policy_source=source).to_dict())
        except MlserveError as err:
            out.append(error_entry(p, err))
    return out


_WORKER_SPECS: SpecFor | None = None


def _init_worker(spec_for: SpecFor) -> None:
    global _WORKER_SPECS
    _WORKER_SPECS = spec_for


def _worker(paths: list[Path], final: bool) -> list[dict[str, Any]]:
    assert _WORKER_SPECS is not None
    return _replay_chunk(paths, _WORKER_SPECS, final)


def replay_files(
    paths: Sequence[Path], spec_for: SpecFor, *, final: bool = False, workers: int | None = None
) -> list[dict[str, Any]]:
    """Verdict dicts (or error entries) for every path, in order."""
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers <= 1 or len(paths) < MIN_PARALLEL:
        return _replay_chunk(paths, spec_for, final)
    import multiprocessing

    # import what every worker needs once, before forking, instead of once per worker
    import scipy.special  # noqa: F401

    import mlserve.stats.engine  # noqa: F401

    chunks = [list(paths[i : i + CHUNK]) for i in range(0, len(paths), CHUNK)]
    ctx = multiprocessing.get_context("fork") if hasattr(os, "fork") else None
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)), mp_context=ctx, initializer=_init_worker, initargs=(spec_for,)
    ) as pool:
        for part in pool.map(_worker, chunks, [final] * len(chunks)):
            results.extend(part)
    return results
