"""The resumable state of a batch job: a folder per job, a part file per chunk, a journal.

The job's folder is named by a hash of what decides its output: the input's bytes
(SHA-256), its format and columns, the chunk size, the endpoint, version, outputs and
output path. A chunk is finished when its result and error parts have been written
atomically (temp file, fsync, rename) *and* its journal line appended and fsynced, in
that order; a SIGKILL between any two steps leaves either a finished chunk or one that
is scored again, never half of one. A line cut short by a kill is ignored on reading.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlserve.errors import StateError
from mlserve.fsutil import atomic_write_bytes, atomic_write_json, fsync_dir

JOB_FORMAT = "mlserve.batch-job/v1"
JOURNAL = "journal.jsonl"
JOB_FILE = "job.json"
LOCK_FILE = "lock"


def job_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class ChunkResult:
    """A scored chunk, ready to commit: result lines, error lines and its journal entry."""

    index: int
    results: bytes
    errors: bytes
    entry: dict[str, Any]


class Job:
    """One job's folder. Only the driver process writes here (Ray workers return results)."""

    def __init__(self, directory: Path, identity: dict[str, Any]) -> None:
        self.dir = Path(directory)
        self.identity = identity
        self.parts = self.dir / "parts"
        self._lock = threading.Lock()
        self._lock_fh: Any = None

    def part(self, index: int) -> Path:
        return self.parts / f"part-{index:06d}.jsonl"

    def errors_part(self, index: int) -> Path:
        return self.parts / f"errors-{index:06d}.jsonl"

    def open(self) -> dict[int, dict[str, Any]]:
        """Take the job's lock and return the chunks already finished (index -> entry)."""
        self.parts.mkdir(parents=True, exist_ok=True)
        fh = open(self.dir / LOCK_FILE, "a+")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise StateError(
                f"another mlserve batch runs this job now (its state is {self.dir})",
                hint="wait for it to finish, or stop it; a second run of the same job would score it twice",
            ) from None
        self._lock_fh = fh
        job_file = self.dir / JOB_FILE
        if job_file.exists():
            try:
                saved = json.loads(job_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                saved = None
            if (
                not isinstance(saved, dict)
                or saved.get("format") != JOB_FORMAT
                or saved.get("identity") != json.loads(json.dumps(self.identity, default=str))
            ):
                # A different or unreadable job under this name: start it afresh.
                self._reset()
        atomic_write_json(self.dir / JOB_FILE, {"format": JOB_FORMAT, "identity": self.identity})
        for stale in self.parts.glob(".*.tmp"):  # a kill between a part's write and its rename
            stale.unlink(missing_ok=True)
        return self._finished()

    def _reset(self) -> None:
        shutil.rmtree(self.parts, ignore_errors=True)
        (self.dir / JOURNAL).unlink(missing_ok=True)
        self.parts.mkdir(parents=True, exist_ok=True)

    def _finished(self) -> dict[int, dict[str, Any]]:
        done: dict[int, dict[str, Any]] = {}
        path = self.dir / JOURNAL
        if not path.exists():
            return done
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                    index = int(entry["chunk"])
                    size = int(entry["bytes"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill
                part = self.part(index)
                if part.is_file() and part.stat().st_size == size and self.errors_part(index).is_file():
                    done[index] = entry
        return done

    def commit(self, result: ChunkResult) -> None:
        atomic_write_bytes(self.errors_part(result.index), result.errors)
        atomic_write_bytes(self.part(result.index), result.results)
        entry = dict(result.entry, chunk=result.index, bytes=len(result.results))
        line = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
        with self._lock:
            fd = os.open(self.dir / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(self.dir)

    def close(self) -> None:
        if self._lock_fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)
