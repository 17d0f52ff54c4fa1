"""Parsing of the small value languages used in the manifest: durations and margins.

A parsed margin is the statistics' own :class:`~mlserve.stats.spec.Margin`.
"""

from __future__ import annotations

import re

from mlserve.stats.spec import Margin

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Return seconds for "250ms", "30s", "5m", "1h", "1d" or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30s', '5m' or '1h' (got {value!r})")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative (got {value!r})")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '30s', '5m' or '1h' (got {value!r})")
    m = _DURATION_RE.match(value)
    if not m:
        raise ValueError(f"expected a duration like '30s', '5m' or '1h' (got {value!r})")
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def format_duration(seconds: float) -> str:
    """Short human form: 90 -> '1m30s', 0.25 -> '250ms'."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    total = round(seconds)
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    parts = []
    if h:
        parts.append(f"{h}h")
    if m:
        parts.append(f"{m}m")
    if s or not parts:
        parts.append(f"{s}s")
    return "".join(parts)


_MARGIN_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_margin(value: object) -> Margin:
    """``"10%"`` is relative (0.10 of the baseline); a number is absolute."""
    if isinstance(value, Margin):  # already parsed (model defaults, model_copy)
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a margin like '10%' or 0.002 (got {value!r})")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"margin must not be negative (got {value!r})")
        return Margin(float(value), relative=False)
    if isinstance(value, str):
        m = _MARGIN_RE.match(value)
        if m:
            pct = float(m.group(1))
            if pct > 1000:
                raise ValueError(f"relative margin must be at most 1000% (got {value!r})")
            return Margin(pct / 100.0, relative=True)
        try:
            num = float(value)
        except ValueError:
            pass
        else:
            if num >= 0:
                return Margin(num, relative=False)
    raise ValueError(f"expected a margin like '10%' or 0.002 (got {value!r})")
