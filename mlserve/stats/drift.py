"""Distribution drift on binned counts: population stability index, Jensen-Shannon distance,
Wasserstein distance and a chi-square test of homogeneity.

Every function takes fixed-bin histograms: the reference's counts and the current window's
counts over the *same* bins (edges from the reference profile, see
:func:`quantile_edges`). Counts are the sufficient statistics here; no raw values are needed,
which is what lets the gateway keep a sliding window cheaply and never store payloads.

Conventions, stated once:

- PSI and Jensen-Shannon use proportions with an additive pseudo-count of ``SMOOTHING`` (0.5)
  per bin on both sides, so an empty bin gives a large but finite term instead of infinity
  (Evidently and NannyML replace zeros by a small epsilon for the same reason).
- Jensen-Shannon is the *distance* (square root of the divergence) in base 2, so it lies in
  [0, 1]; scipy's ``jensenshannon(p, q, base=2)`` is the reference implementation.
- Wasserstein-1 is computed on the bin representatives (the reference's mean inside each
  bin; the value itself for a categorical feature), and reported in units of the
  reference's standard deviation, so one threshold fits every feature (the normalisation
  Evidently uses for its default numeric test).
- The chi-square test compares the two histograms as a 2 x k contingency table. It is only
  reported where the window allows it: at least 80% of the expected counts are 5 or more and
  none is below 1 (Cochran's rule); otherwise its p-value is None. A p-value is valid for one
  window taken once; repeated every scrape it is a diagnostic, which is why the alerts use
  PSI (an effect size with a threshold) rather than the p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

SMOOTHING = 0.5

# Customary PSI reading (Siddiqi 2006, used across credit-risk monitoring): below 0.1 no
# significant change, 0.1-0.2 moderate, above 0.2 significant (the drift alerts' default).
PSI_SIGNIFICANT = 0.2


@dataclass(frozen=True)
class DriftStats:
    """One feature (or the prediction) of one window against its reference."""

    samples: int  # observations in the current window
    psi: float
    jensen_shannon: float
    wasserstein: float  # in reference standard deviations (nan when the reference is constant)
    chi2_p_value: float | None  # None when the window is too small for the test


def _proportions(counts: Array, pseudo: float = SMOOTHING) -> Array:
    c = np.asarray(counts, dtype=float) + pseudo
    out: Array = c / c.sum()
    return out


def psi(reference: Sequence[float] | Array, current: Sequence[float] | Array) -> float:
    """Population stability index: sum over bins of (q - p) * ln(q / p)."""
    p = _proportions(np.asarray(reference, dtype=float))
    q = _proportions(np.asarray(current, dtype=float))
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(reference: Sequence[float] | Array, current: Sequence[float] | Array) -> float:
    """Jensen-Shannon distance in base 2 (0: identical, 1: disjoint)."""
    p = _proportions(np.asarray(reference, dtype=float))
    q = _proportions(np.asarray(current, dtype=float))
    m = 0.5 * (p + q)
    div = 0.5 * float(np.sum(p * np.log2(p / m))) + 0.5 * float(np.sum(q * np.log2(q / m)))
    return math.sqrt(max(div, 0.0))


def wasserstein(
    centres: Sequence[float] | Array,
    reference: Sequence[float] | Array,
    current: Sequence[float] | Array,
    scale: float = 1.0,
) -> float:
    """Wasserstein-1 distance between two histograms on the same ordered support points,
    divided by ``scale``: the area between the two cumulative distributions."""
    x = np.asarray(centres, dtype=float)
    a = np.asarray(reference, dtype=float)
    b = np.asarray(current, dtype=float)
    if a.sum() <= 0 or b.sum() <= 0 or x.size < 2:
        return 0.0 if x.size < 2 else math.nan
    if not scale > 0 or not math.isfinite(scale):
        return math.nan
    order = np.argsort(x, kind="stable")
    x, a, b = x[order], a[order], b[order]
    cdf_gap = np.abs(np.cumsum(a / a.sum()) - np.cumsum(b / b.sum()))[:-1]
    return float(np.sum(cdf_gap * np.diff(x)) / scale)


def chi2_homogeneity(reference: Sequence[float] | Array, current: Sequence[float] | Array) -> tuple[float, int, float]:
    """Pearson's chi-square for a 2 x k table (no continuity correction): (statistic, dof, p).
    Bins empty on both sides are dropped."""
    from scipy.special import chdtrc

    a = np.asarray(reference, dtype=float)
    b = np.asarray(current, dtype=float)
    keep = (a + b) > 0
    a, b = a[keep], b[keep]
    k = a.size
    if k < 2 or a.sum() <= 0 or b.sum() <= 0:
        return 0.0, max(k - 1, 0), 1.0
    table = np.vstack([a, b])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    dof = k - 1
    return stat, dof, float(chdtrc(dof, stat))


def chi2_allowed(reference: Sequence[float] | Array, current: Sequence[float] | Array) -> bool:
    """Cochran's rule on the 2 x k table's expected counts."""
    a = np.asarray(reference, dtype=float)
    b = np.asarray(current, dtype=float)
    keep = (a + b) > 0
    a, b = a[keep], b[keep]
    if a.size < 2 or a.sum() <= 0 or b.sum() <= 0:
        return False
    table = np.vstack([a, b])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return bool(expected.min() >= 1.0 and np.mean(expected >= 5.0) >= 0.8)


def compare(
    reference: Sequence[float] | Array,
    current: Sequence[float] | Array,
    centres: Sequence[float] | Array,
    scale: float,
) -> DriftStats:
    """Every statistic of one window against its reference."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    p_value = chi2_homogeneity(ref, cur)[2] if chi2_allowed(ref, cur) else None
    return DriftStats(
        samples=int(cur.sum()),
        psi=psi(ref, cur),
        jensen_shannon=jensen_shannon(ref, cur),
        wasserstein=wasserstein(centres, ref, cur, scale),
        chi2_p_value=p_value,
    )


# ---------------------------------------------------------------------------
# Bins from a reference sample
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bins:
    """Fixed bins of one feature: value ``x`` falls in bin ``bisect_right(edges, x)``, so
    ``len(edges) + 1`` bins, the outer two open-ended."""

    edges: tuple[float, ...]
    centres: tuple[float, ...]
    categorical: bool

    @property
    def size(self) -> int:
        return len(self.edges) + 1


def quantile_edges(values: Sequence[float] | Array, bins: int = 10, max_categories: int = 10) -> Bins:
    """Bins for a reference sample: one bin per value when it takes at most ``max_categories``
    distinct values (labels, flags, small counts), otherwise ``bins`` bins of roughly equal
    reference mass (deciles by default), ties merged."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Bins((), (0.0,), True)
    distinct = np.unique(x)
    if distinct.size <= max_categories:
        edges = tuple(float(v) for v in (distinct[:-1] + distinct[1:]) / 2.0)
        return Bins(edges, tuple(float(v) for v in distinct), True)
    qs = np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    inner = np.unique(qs)
    # a value on an edge belongs to the bin above it: an edge at the minimum would leave bin 0 empty
    inner = inner[inner > distinct[0]]
    # each bin is represented by the reference's mean inside it (what Wasserstein moves)
    idx = np.searchsorted(inner, x, side="right")
    sums = np.bincount(idx, weights=x, minlength=inner.size + 1)
    counts = np.bincount(idx, minlength=inner.size + 1)
    points = np.concatenate([[distinct[0]], inner, [distinct[-1]]])
    mids = (points[:-1] + points[1:]) / 2.0
    centres = np.where(counts > 0, sums / np.maximum(counts, 1), mids)
    return Bins(tuple(float(e) for e in inner), tuple(float(c) for c in centres), False)


def histogram(bins: Bins, values: Sequence[float] | Array) -> list[int]:
    """Counts of ``values`` in ``bins`` (non-finite values are skipped)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    idx = np.searchsorted(np.asarray(bins.edges, dtype=float), x, side="right")
    return [int(c) for c in np.bincount(idx, minlength=bins.size)]
