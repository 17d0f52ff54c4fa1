"""Sample-ratio mismatch: is the observed split the one the router was told to make?

A broken split (sticky sessions gone wrong, a misrouting proxy, a crashing candidate
whose requests never get counted) invalidates every comparison, so it is checked
before any verdict. The weights change between canary steps, so both tests below work
on the increments of each interval against that interval's weights.

``srm_p_values`` (the one decisions use) is always valid: conditional on an interval's
requests, the candidate's count is Binomial with probability ``rho*w_c/(rho*w_c+w_b)``,
and a two-sided mixture over the odds ratio ``rho`` is a test martingale under a
correct split (the same construction as sequential.py, with the weights as exposures).
Re-running a fixed-sample chi-square at every look, as ``chisquare_p_values`` does,
raises false halts well above the nominal level over 50 looks; it is kept as a
diagnostic and as the scipy-checked reference.

With more than two arms (a primary, a concurrent control and the candidate),
``srm_p_values_arms`` checks every arm against its weight: the multinomial split is
checked as a chain of binomial splits (the first arm against all the others, the second
against those after it, ...), each the test above, and the chain's p-values are combined
with a union bound (``arms - 1`` times the smallest), valid at every look.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mlserve.stats.sequential import Mixture, always_valid_p, log_mixture_rate_ratio

Array = NDArray[np.float64]


SRM_MIXTURE = Mixture(
    grid=(0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5),
    weights=(0.1, 0.12, 0.14, 0.14, 0.13, 0.12, 0.1, 0.08, 0.07),
)


def srm_p_values(n_base: Array, n_cand: Array, w_base: Array, w_cand: Array) -> Array:
    """Always-valid two-sided p-value at each look (running minimum)."""
    n_b = np.asarray(n_base, dtype=float)
    n_c = np.asarray(n_cand, dtype=float)
    wb = np.asarray(w_base, dtype=float)
    wc = np.asarray(w_cand, dtype=float)
    total = n_b + n_c
    impossible = (total > 0) & (((wc <= 0) & (n_c > 0)) | ((wb <= 0) & (n_b > 0)))
    up = log_mixture_rate_ratio(n_c, n_b, wc, wb, 0.0, +1, SRM_MIXTURE)
    down = log_mixture_rate_ratio(n_c, n_b, wc, wb, 0.0, -1, SRM_MIXTURE)
    p = np.minimum(1.0, 2.0 * np.minimum(always_valid_p(up), always_valid_p(down)))
    ever_impossible = np.maximum.accumulate(impossible.astype(float)) > 0
    out: Array = np.where(ever_impossible, 0.0, p)
    return out


def srm_p_values_arms(counts: Array, weights: Array) -> Array:
    """Always-valid p-value at each look for a split over several arms: ``counts`` are (A, K)
    per-interval requests of each arm, ``weights`` (A, K) the weights in force. A chain of
    binomial checks (arm i against the arms after it), combined by a union bound."""
    n = np.asarray(counts, dtype=float)
    w = np.asarray(weights, dtype=float)
    arms = n.shape[0]
    if arms < 2:
        return np.ones(n.shape[1] if n.ndim == 2 else 0)
    ps = [srm_p_values(n[i + 1 :].sum(axis=0), n[i], w[i + 1 :].sum(axis=0), w[i]) for i in range(arms - 1)]
    out: Array = np.minimum(1.0, (arms - 1) * np.min(np.vstack(ps), axis=0))
    return out


def chisquare_p_values(n_base: Array, n_cand: Array, w_base: Array, w_cand: Array) -> Array:
    """Fixed-sample p-value at each look: Pearson's chi-square of each interval's split
    against its weights, summed over intervals (df = informative intervals). Valid at
    one look only; a diagnostic beside the always-valid ``srm_p_values``."""
    from scipy.special import chdtrc  # the chi-square survival function, without scipy.stats' overhead

    n_b = np.asarray(n_base, dtype=float)
    n_c = np.asarray(n_cand, dtype=float)
    wb = np.asarray(w_base, dtype=float)
    wc = np.asarray(w_cand, dtype=float)
    total = n_b + n_c
    wsum = wb + wc
    share = np.where(wsum > 0, wc / np.where(wsum > 0, wsum, 1.0), 0.0)
    informative = (total > 0) & (share > 0) & (share < 1)
    exp_c = total * share
    var = total * share * (1.0 - share)
    contrib = np.where(informative, (n_c - exp_c) ** 2 / np.where(informative, var, 1.0), 0.0)
    stat = np.cumsum(contrib)
    df = np.cumsum(informative.astype(float))
    out: Array = np.where(df > 0, chdtrc(np.maximum(df, 1.0), stat), 1.0)
    return out


def srm_p_values_after_retries(counts: Array, weights: Array, candidate: int, failed: Array) -> Array:
    """The split's always-valid p-values once the candidate's failed attempts are taken as
    retried on the other arms.

    A router that retries a refused request on another arm (the local gateway does once,
    Istio's default retry policy does on connect failures) counts it twice: as a failed
    attempt at the candidate and as a request to the arm it was retried on. A candidate that
    is down then looks under-represented whatever the router does. ``counts`` and ``weights``
    are (A, K) per-interval requests and weights (as for :func:`srm_p_values_arms`),
    ``failed`` (K,) the candidate's failed requests per interval; each interval's failures
    are removed from the other arms in proportion to their weights (from arm 0, the primary,
    when they have none), as the retries would have landed. A p-value that stays high means
    the candidate's failures account for the mismatch."""
    n = np.array(counts, dtype=float)
    w = np.asarray(weights, dtype=float)
    arms = n.shape[0]
    others = [i for i in range(arms) if i != candidate]
    if not others:
        return np.ones(n.shape[1])
    wo = w[others]
    total = wo.sum(axis=0)
    fallback = np.zeros_like(wo)
    fallback[0] = 1.0
    share = np.where(total > 0, wo / np.where(total > 0, total, 1.0), fallback)
    n[others] = np.maximum(0.0, n[others] - share * np.asarray(failed, dtype=float))
    if arms == 2:
        return srm_p_values(n[0], n[1], w[0], w[1])
    return srm_p_values_arms(n, w)
