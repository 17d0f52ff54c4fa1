"""Atomic file writes and JSON reads, shared by every module that persists state.

Temp file in the same directory (created 0600 by mkstemp), fsync, chmod to the final
mode, rename over the target, fsync the directory: readers see the old or the new file,
never half of one, and a crash leaves no partial state behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from mlserve.errors import StateError


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    with atomic_writer(path, mode) as fh:
        fh.write(data)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` whole when the block ends, or not at all:
    for outputs too large to hold in memory (batch results are streamed into one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def atomic_write_json(path: Path, data: Any, mode: int = 0o644, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=True, allow_nan=False) + "\n", mode)


def read_json(path: Path, *, hint: str | None = None) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when the file does not exist; StateError (naming the
    file, and the line of a syntax error) when it cannot be read or is not an object."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}", hint=hint) from None
    if not isinstance(data, dict):
        raise StateError(f"{path}: expected a JSON object")
    return data


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a (log) file, from its last 64 KiB; empty when unreadable."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
