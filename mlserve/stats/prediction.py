"""The prediction gate: is the candidate's share of positive predictions the control's, within a
factor, under the same traffic?

A fraud model that suddenly flags twice as many transactions is a regression even when its
latency and errors are fine. Both arms of a canary see the same traffic (random split), so
their shares of positive predictions estimate the same quantity unless the model changed its
behaviour. Positives are events and predictions their exposure, exactly as errors and
requests are for the error-rate gate, so the same always-valid mixture test of a rate ratio
applies (:mod:`mlserve.stats.sequential`: conditional binomial likelihood ratios mixed over
alternatives, a test martingale under the null, valid however often it is looked at).

The gate is two-sided with a relative margin ``m`` (the manifest's ``margin = "25%"``):

- **fail** (roll back): evidence that ``rho = share_c / share_b`` is above ``1 + m`` *or* below
  ``1 / (1 + m)``. Two one-sided always-valid tests, Bonferroni: ``p = 2 min(p_up, p_down)``.
- **pass** (promotable): evidence that ``rho`` is inside ``(1 / (1 + m), 1 + m)``: both
  one-sided nulls at the edges are rejected (an intersection-union test, so ``p = max``),
  the sequential counterpart of TOST equivalence.

Assumption, written down: each prediction is a Bernoulli draw whose positive probability does
not depend on the arm under the null. Positives of a Bernoulli stream are less dispersed than
Poisson events of the same rate, so the conditional binomial model is conservative here; the
false-rollback rate on A/A streams is measured in ``tests/monitoring/test_prediction_gate.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlserve.stats.evidence import Array, Summary
from mlserve.stats.evidence import increments as _cum_increments
from mlserve.stats.sequential import always_valid_p, log_mixture_rate_ratio, merge_intervals, rate_ratio_interval


def _increments(cum: Array) -> Array:
    return _cum_increments(np.asarray(cum, dtype=float))


@dataclass(frozen=True)
class PredictionEvidence:
    """Running always-valid p-values at each look (where both arms have predictions)."""

    p_fail: Array
    p_pass: Array
    p_up: Array  # candidate flags more than (1 + m) times as often
    p_down: Array  # candidate flags less than 1 / (1 + m) as often


def prediction_evidence(pos_b: Array, n_b: Array, pos_c: Array, n_c: Array, margin: float) -> PredictionEvidence:
    """Cumulative positives and predictions of the control (b) and candidate (c) per look."""
    if not margin > 0:
        raise ValueError("the prediction gate needs a relative margin above 0")
    dxb, dnb, dxc, dnc = (_increments(a) for a in (pos_b, n_b, pos_c, n_c))
    edge = math.log1p(margin)
    p_up = always_valid_p(log_mixture_rate_ratio(dxc, dxb, dnc, dnb, edge, +1))
    p_down = always_valid_p(log_mixture_rate_ratio(dxc, dxb, dnc, dnb, -edge, -1))
    inside_high = always_valid_p(log_mixture_rate_ratio(dxc, dxb, dnc, dnb, edge, -1))
    inside_low = always_valid_p(log_mixture_rate_ratio(dxc, dxb, dnc, dnb, -edge, +1))
    p_fail = np.minimum(1.0, 2.0 * np.minimum(p_up, p_down))
    p_pass = np.maximum(inside_high, inside_low)
    return PredictionEvidence(p_fail, p_pass, p_up, p_down)


def prediction_summary(
    pos_b: Array, n_b: Array, pos_c: Array, n_c: Array, regime: Array, alpha: float
) -> Callable[[int], Summary]:
    """For the report at look ``j`` (an index into these arrays): the two shares, their ratio
    minus one, and the confidence sequence for it."""

    def summary(j: int) -> Summary:
        if j < 0 or n_b[j] <= 0 or n_c[j] <= 0:
            return None, None, None, None, "positives/prediction", "no predictions for both variants yet"
        b_share = float(pos_b[j] / n_b[j])
        c_share = float(pos_c[j] / n_c[j])
        est = c_share / b_share - 1.0 if b_share > 0 else None
        incs = [_increments(np.asarray(a, float)[: j + 1]) for a in (pos_b, n_b, pos_c, n_c)]
        dxb, dnb, dxc, dnc = merge_intervals(np.asarray(regime)[: j + 1], *incs)
        lo, hi = rate_ratio_interval(dxc, dxb, dnc, dnb, alpha)
        ci = (math.expm1(lo) if math.isfinite(lo) else -1.0, math.expm1(hi) if math.isfinite(hi) else math.inf)
        note = f"share of positive predictions, {int(n_c[j]):,} candidate / {int(n_b[j]):,} control predictions"
        return b_share, c_share, est, ci, "positives/prediction", note

    return summary
