"""How numbers, units, changes and p-values are written, in the CLI and in every report.

One module so that a decision reads the same in a terminal, a Markdown report and a JUnit
file. Conventions: a metric value in its unit with three significant digits (``96.9ms``,
``4.35%``); a relative change with three significant digits and its sign (``+288%``,
``-12.7%``); a p-value with two (``0.0036``, ``9.7e-135``); a count with thousands
separators (``100,000``), a rate as a whole number (``26,604`` rows/s); a model-quality
metric and an absolute difference of two with fixed decimals (``0.9055``, ``+0.0060``); an
interval that could not be computed, a missing or an undefined value as ``-``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def value(x: Any, unit: str = "") -> str:
    """A metric's value in its unit: seconds as milliseconds, error rates and shares of
    positive predictions as percent."""
    if not _finite(x):
        return "-"
    if unit == "s":
        return f"{x * 1000:.3g}ms"
    if unit in ("errors/request", "positives/prediction"):
        return percent(x)
    return f"{x:.4g}"


def percent(x: Any) -> str:
    """A proportion as percent with three significant digits (0.0435 -> ``4.35%``)."""
    return f"{x * 100:.3g}%" if _finite(x) else "-"


def change(x: Any) -> str:
    """A relative change of the candidate against the baseline (0.12 -> ``+12%``, 10.78 ->
    ``+1,078%``: three significant digits, and never an exponent)."""
    if isinstance(x, int | float) and not isinstance(x, bool) and math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    if not _finite(x):
        return "-"
    pct = x * 100
    return f"{pct:+,.0f}%" if abs(pct) >= 1000 else f"{pct:+.3g}%"


def share(x: Any, digits: int = 2) -> str:
    """A proportion as percent with ``digits`` decimals (0.9931 -> ``99.31%``)."""
    return f"{x * 100:.{digits}f}%" if _finite(x) else "-"


def count(n: Any) -> str:
    """A count with thousands separators (100000 -> ``100,000``)."""
    return f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else "-"


def rate(x: Any) -> str:
    """Events per second as a whole number with separators (26604.4 -> ``26,604``)."""
    return f"{x:,.0f}" if _finite(x) else "-"


def fixed(x: Any, digits: int = 4, *, sign: bool = False) -> str:
    """A number with ``digits`` decimals: accuracy, AUC, log loss, RMSE and their differences
    (``0.9055``, ``+0.0060`` with ``sign``), seconds to one decimal (``3.8``)."""
    if not _finite(x):
        return "-"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def p_value(x: Any) -> str:
    return f"{x:.2g}" if _finite(x) else "-"


def interval(ci: Sequence[Any] | None, kind: str = "") -> str:
    """A confidence interval: of a relative change (open ends as -inf/+inf), of a share, or
    (``kind="difference"``) of an absolute difference of two metrics (``[+0.0009, +0.0113]``)."""
    if not ci or len(ci) != 2:
        return "-"
    lo, hi = ci
    if kind == "agreement":
        return f"[{value(lo)}, {value(hi)}]"
    if kind == "difference":  # an open end (no interval from one row) as -inf/+inf
        low = fixed(lo, sign=True) if _finite(lo) else "-inf"
        high = fixed(hi, sign=True) if _finite(hi) else "+inf"
        return f"[{low}, {high}]"
    if lo is None and hi is None:
        return "-"
    return f"[{change(lo) if lo is not None else '-inf'}, {change(hi) if hi is not None else '+inf'}]"


def weights(w: dict[str, int] | Any) -> str:
    """Traffic weights as ``v1 80%, v2 20%``."""
    return ", ".join(f"{v} {p}%" for v, p in dict(w).items())
