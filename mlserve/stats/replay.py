"""Replaying many snapshots: policy resolution and a process pool.

A directory of saved rollouts (thousands of snapshots) is replayed in parallel across
the machine's cores, in chunks, keeping the given order. Each snapshot that cannot be
read becomes an error entry instead of stopping the batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from mlserve.manifest.models import RolloutPolicy

MIN_PARALLEL = 64  # below this, starting workers costs more than it saves
CHUNK = 50


class Policies:
    """``--policy FILE``, else the snapshot's endpoint in the project's mlserve.toml, else
    the built-in defaults; each answer says where the policy came from."""

    def __init__(self, project_dir: Path, policy_file: Path | None) -> None:
        from mlserve.manifest.loader import load_manifest, load_policy

        self.fixed: tuple[RolloutPolicy, str] | None = None
        self.manifest: Any = None
        self.manifest_path = project_dir / "mlserve.toml"
        self.default = (RolloutPolicy(), "built-in defaults")
        if policy_file is not None:
            self.fixed = (load_policy(policy_file), f"--policy {policy_file}")
            return
        if self.manifest_path.is_file():
            self.manifest = load_manifest(self.manifest_path)

    def for_endpoint(self, endpoint: str | None) -> tuple[RolloutPolicy, str]:
        if self.fixed is not None:
            return self.fixed
        if self.manifest is not None and endpoint in self.manifest.endpoints:
            return self.manifest.endpoints[endpoint].rollout, f"{self.manifest_path}: endpoints.{endpoint}.rollout"
        return self.default


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


def _replay_chunk(paths: Sequence[Path], policies: Policies, final: bool) -> list[dict[str, Any]]:
    from mlserve.errors import MlserveError
    from mlserve.stats.engine import analyze
    from mlserve.stats.snapshot import read_snapshot

    out: list[dict[str, Any]] = []
    for p in paths:
        try:
            snap = read_snapshot(p)
            policy, source = policies.for_endpoint(snap.endpoint)
            out.append(analyze(snap, policy, final=final, policy_source=source).to_dict())
        except MlserveError as err:
            out.append(error_entry(p, err))
    return out


_WORKER_POLICIES: Policies | None = None


def _init_worker(policies: Policies) -> None:
    global _WORKER_POLICIES
    _WORKER_POLICIES = policies


def _worker(paths: list[Path], final: bool) -> list[dict[str, Any]]:
    assert _WORKER_POLICIES is not None
    return _replay_chunk(paths, _WORKER_POLICIES, final)


def replay_files(
    paths: Sequence[Path], policies: Policies, *, final: bool = False, workers: int | None = None
) -> list[dict[str, Any]]:
    """Verdict dicts (or error entries) for every path, in order."""
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers <= 1 or len(paths) < MIN_PARALLEL:
        return _replay_chunk(paths, policies, final)
    import multiprocessing

    # import what every worker needs once, before forking, instead of once per worker
    import scipy.special  # noqa: F401

    import mlserve.stats.engine  # noqa: F401

    chunks = [list(paths[i : i + CHUNK]) for i in range(0, len(paths), CHUNK)]
    ctx = multiprocessing.get_context("fork") if hasattr(os, "fork") else None
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)), mp_context=ctx, initializer=_init_worker, initargs=(policies,)
    ) as pool:
        for part in pool.map(_worker, chunks, [final] * len(chunks)):
            results.extend(part)
    return results
