"""Several metrics, one decision: Holm's step-down correction (Holm 1979).

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


def holm_reject(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Which hypotheses Holm rejects at family-wise level alpha."""
    return [p <= alpha for p in holm_adjusted(p_values)]
