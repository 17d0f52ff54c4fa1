"""Several metrics, one decision: weighted Holm across the metric family (Holm 1979).

Holm controls the family-wise error rate at alpha under any dependence between the
metrics, and is uniformly more powerful than Bonferroni. Applied to always-valid
p-values at any stopping time it keeps that guarantee, because each always-valid
p-value is itself valid at a stopping time. The weighted form (Holm 1979, section 5):
at each step the hypothesis with the smallest p/w among those left is rejected if
p <= alpha * w / (sum of the weights left); equal weights give plain Holm.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

# In the Holm family a critical metric carries this many times the weight of a
# non-critical one: it can roll back on its own with most of alpha, while the family-wise
# error rate stays at alpha (weighted Holm). With all metrics alike this is plain Holm.
CRITICAL_WEIGHT = 4.0


def holm_weight(critical: bool) -> float:
    """A metric's weight in the Holm family."""
    return CRITICAL_WEIGHT if critical else 1.0


def holm_columns(p: Array, weights: Array) -> Array:
    """Weighted-Holm-adjusted p-values for each column (look) of an (m, K) array."""
    m, k = p.shape
    w = np.asarray(weights, dtype=float)[:, None] * np.ones((1, k))
    left = np.ones((m, k), dtype=bool)
    out = np.ones((m, k))
    running = np.zeros(k)
    cols = np.arange(k)
    for _ in range(m):
        total = np.where(left, w, 0.0).sum(axis=0)
        ratio = np.where(left, p / w, np.inf)
        i = np.argmin(ratio, axis=0)
        adj = np.minimum(1.0, p[i, cols] * total / w[i, cols])
        running = np.maximum(running, adj)
        out[i, cols] = running
        left[i, cols] = False
    return out
