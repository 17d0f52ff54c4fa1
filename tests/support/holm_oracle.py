"""Scalar Holm (Holm 1979), written the textbook way: the oracle that the engine's vectorised
weighted Holm (:func:`mlserve.stats.multiple.holm_columns`) is checked against.

Holm controls the family-wise error rate at alpha under any dependence between the
metrics, and is uniformly more powerful than Bonferroni. Applied to always-valid
p-values at any stopping time it keeps that guarantee, because each always-valid
p-value is itself valid at a stopping time.
"""

from __future__ import annotations

from collections.abc import Sequence


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (reject where adjusted <= alpha), in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def weighted_holm_adjusted(p_values: Sequence[float], weights: Sequence[float]) -> list[float]:
    """Weighted Holm (Holm 1979, section 5): at each step the hypothesis with the smallest
    p/w among those left is rejected if p <= alpha * w / (sum of the weights left). The
    family-wise error rate stays at alpha; a hypothesis with more weight gets more of it.
    Returns adjusted p-values (reject where <= alpha). Equal weights give plain Holm."""
    m = len(p_values)
    left = list(range(m))
    adjusted = [1.0] * m
    running = 0.0
    while left:
        total = sum(weights[i] for i in left)
        i = min(left, key=lambda k: p_values[k] / weights[k])
        running = max(running, min(1.0, p_values[i] * total / weights[i]))
        adjusted[i] = running
        left.remove(i)
    return adjusted


def holm_reject(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Which hypotheses Holm rejects at family-wise level alpha."""
    return [p <= alpha for p in holm_adjusted(p_values)]
