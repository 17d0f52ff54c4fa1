"""UTC timestamps as people read them in files, written and parsed in one place."""

from __future__ import annotations

import datetime as _dt
import time

_FORMATS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ")


def utc(ts: float | None = None, *, fraction: bool = True) -> str:
    """Seconds since the epoch as ISO-8601 UTC: ``2026-12-01T21:56:39.58Z`` (hundredths), or
    to the second with ``fraction=False`` (the ``at`` of a snapshot look)."""
    t = time.time() if ts is None else ts
    stamp = _dt.datetime.fromtimestamp(t, _dt.UTC)
    if not fraction:
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def parse_utc(text: str, default: float | None = None) -> float:
    """Seconds since the epoch of a timestamp written by :func:`utc`; ``default`` (when
    given) instead of a ValueError for anything else."""
    for fmt in _FORMATS:
        try:
            return _dt.datetime.strptime(text, fmt).replace(tzinfo=_dt.UTC).timestamp()
        except (ValueError, TypeError):
            continue
    if default is not None:
        return default
    raise ValueError(f"not a UTC timestamp: {text!r}")
