"""Always-valid tests on counts: a mixture of likelihood ratios for a rate ratio.

Two variants produce events (errors, conversions, requests above a latency threshold)
against an exposure (requests). Treat each as a Poisson process; conditional on the
total number of events in an interval, the candidate's share of them is Binomial with
success probability ``theta = rho * n_a / (rho * n_a + n_b)``, a known function of the
rate ratio ``rho`` and of the interval's exposures (Lindon and Malek 2022). Because the
exposures may change between intervals (canary steps), the likelihood ratio is a
product over intervals, and a fixed mixture over a grid of alternatives is a test
martingale under the null: by Ville's inequality it exceeds ``1/alpha`` with probability
at most ``alpha`` however often it is looked at (Johari et al. 2017; Howard et al. 2021).

The null is composite and one-sided (``rho <= rho0``); the binomial family has a
monotone likelihood ratio, so every alternative ``rho1 > rho0`` gives a supermartingale
for any ``rho <= rho0`` and the guarantee holds on the whole null.

All functions are pure and vectorised over looks: a snapshot of K looks costs a few
numpy operations on (K, G) arrays per distinct null.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

# Mixture over log rate-ratio alternatives (distance from the null on the log scale).
# Tuned by benchmarks/decision_quality.py: most of the weight sits where canary
# regressions worth catching live (1.3x to 3x beyond the margin), a little on large
# jumps so that a broken candidate is caught within a handful of events.
DEFAULT_GRID: tuple[float, ...] = (0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.95, 1.1, 1.4, 2.0)
DEFAULT_WEIGHTS: tuple[float, ...] = (0.04, 0.07, 0.10, 0.13, 0.15, 0.15, 0.13, 0.10, 0.08, 0.05)


@dataclass(frozen=True)
class Mixture:
    """A discrete mixing distribution over log rate-ratio distances (all > 0)."""

    grid: tuple[float, ...] = DEFAULT_GRID
    weights: tuple[float, ...] = DEFAULT_WEIGHTS

    def arrays(self) -> tuple[Array, Array]:
        return _mixture_arrays(self.grid, self.weights)


@functools.lru_cache(maxsize=64)
def _mixture_arrays(grid: tuple[float, ...], weights: tuple[float, ...]) -> tuple[Array, Array]:
    g = np.asarray(grid, dtype=float)
    w = np.asarray(weights, dtype=float)
    g.flags.writeable = False
    logw = np.log(w / w.sum())
    logw.flags.writeable = False
    return g, logw


DEFAULT_MIXTURE = Mixture()


def logsumexp(x: Array, axis: int = -1) -> Array:
    """log(sum(exp(x))) along an axis, stable (numpy's logaddexp.reduce is pairwise and slow)."""
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    out: Array = np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(x - top), axis=axis))
    return out


def _softplus(x: Array) -> Array:
    return np.logaddexp(0.0, x)


def _step(x_a: Array, x_b: Array, r0: Array, r1: Array, g: Array) -> Array:
    """Log likelihood ratio of one interval, alternative (r1 = r0 + g) over null (r0),
    where r is the log odds of an event being the candidate's. With
    log(theta) = -softplus(-r) and log(1 - theta) = -softplus(r), and
    softplus(-r) = softplus(r) - r, it is (x_a + x_b) * (sp(r0) - sp(r1)) + x_a * g."""
    out: Array = (x_a + x_b) * (_softplus(r0) - _softplus(r1)) + x_a * g
    return out


def log_mixture_rate_ratio(
    x_a: Array,
    x_b: Array,
    n_a: Array,
    n_b: Array,
    log_rho0: float,
    side: int = 1,
    mixture: Mixture = DEFAULT_MIXTURE,
) -> Array:
    """Log of the mixture martingale at each look for H0: rate_a / rate_b <= rho0
    (side=+1) or H0: rate_a / rate_b >= rho0 (side=-1).

    ``x_a, x_b`` are event increments per interval (K,), ``n_a, n_b`` exposure
    increments. Intervals where either exposure is zero carry no information.
    """
    g, logw = mixture.arrays()
    g = g * (1.0 if side > 0 else -1.0)
    n_a = np.asarray(n_a, dtype=float)
    n_b = np.asarray(n_b, dtype=float)
    live = (n_a > 0) & (n_b > 0)
    base = np.log(np.where(live, n_a, 1.0)) - np.log(np.where(live, n_b, 1.0))
    x_a = np.where(live, np.asarray(x_a, dtype=float), 0.0)
    x_b = np.where(live, np.asarray(x_b, dtype=float), 0.0)
    r0 = base + float(log_rho0)  # (k,)
    r1 = r0[:, None] + g[None, :]  # (k, G)
    step = _step(x_a[:, None], x_b[:, None], r0[:, None], r1, g[None, :])
    path = np.cumsum(step, axis=0)  # (K, G)
    out: Array = logsumexp(path + logw[None, :], axis=1)
    return out


def log_mixture_per_look(
    x_a: Array,
    x_b: Array,
    n_a: Array,
    n_b: Array,
    log_rho0: Array,
    side: int = 1,
    mixture: Mixture = DEFAULT_MIXTURE,
    step: float = 0.01,
) -> Array:
    """As ``log_mixture_rate_ratio`` with a null that is re-estimated at every look (a
    plug-in, e.g. an absolute margin turned into a ratio of the baseline's rate). The
    null is rounded to a ``step`` on the log scale, towards the side that is harder to
    reject, so that looks sharing a null share one path (a handful of paths per run)."""
    lr = np.asarray(log_rho0, dtype=float)
    q = np.ceil(lr / step - 1e-9) if side > 0 else np.floor(lr / step + 1e-9)
    keys, which = np.unique(q, return_inverse=True)
    g, logw = mixture.arrays()
    g = g * (1.0 if side > 0 else -1.0)
    n_a = np.asarray(n_a, dtype=float)
    n_b = np.asarray(n_b, dtype=float)
    live = (n_a > 0) & (n_b > 0)
    base = np.log(np.where(live, n_a, 1.0)) - np.log(np.where(live, n_b, 1.0))
    xa = np.where(live, np.asarray(x_a, dtype=float), 0.0)
    xb = np.where(live, np.asarray(x_b, dtype=float), 0.0)
    r0 = base[None, :] + (keys * step)[:, None]  # (U, k)
    r1 = r0[:, :, None] + g[None, None, :]  # (U, k, G)
    inc = _step(xa[None, :, None], xb[None, :, None], r0[:, :, None], r1, g[None, None, :])
    paths = logsumexp(np.cumsum(inc, axis=1) + logw[None, None, :], axis=2)  # (U, K)
    out: Array = paths[which.reshape(-1), np.arange(lr.shape[0])]
    return out


def merge_intervals(keys: Array, *arrays: Array) -> list[Array]:
    """Sum consecutive intervals that share a key (the weights in force). Within one
    canary step the exposure ratio is constant up to noise, so the likelihood barely
    changes; used for reporting intervals, where it saves most of the work."""
    keys = np.asarray(keys)
    if keys.size == 0:
        return [np.asarray(a, dtype=float) for a in arrays]
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return [np.add.reduceat(np.asarray(a, dtype=float), starts, axis=-1) for a in arrays]


def always_valid_p(log_m: Array) -> Array:
    """Running always-valid p-value: min over looks so far of 1/M, capped at 1."""
    running = np.maximum.accumulate(np.maximum(log_m, 0.0))
    out: Array = np.exp(-running)
    return out


def log_mixture_last(
    x_a: Array,
    x_b: Array,
    n_a: Array,
    n_b: Array,
    log_rho0: Array,
    side: int = 1,
    mixture: Mixture = DEFAULT_MIXTURE,
) -> Array:
    """The mixture at the last look only, for many nulls at once: row i of the (R, k)
    count arrays is tested against ``log_rho0[i]``. Used to invert the test into an
    interval (a confidence sequence evaluated at the reported look)."""
    g, logw = mixture.arrays()
    g = g * (1.0 if side > 0 else -1.0)
    n_a = np.asarray(n_a, dtype=float)
    n_b = np.asarray(n_b, dtype=float)
    live = (n_a > 0) & (n_b > 0)
    base = np.where(live, np.log(np.where(live, n_a, 1.0)) - np.log(np.where(live, n_b, 1.0)), 0.0)
    rows = np.asarray(log_rho0, dtype=float).shape[0]
    x_a = np.where(live, np.broadcast_to(np.asarray(x_a, dtype=float), (rows, n_a.shape[0])), 0.0)
    x_b = np.where(live, np.broadcast_to(np.asarray(x_b, dtype=float), (rows, n_a.shape[0])), 0.0)
    r0 = base[None, :] + np.asarray(log_rho0, dtype=float)[:, None]
    r1 = r0[:, :, None] + g[None, None, :]
    step = _step(x_a[:, :, None], x_b[:, :, None], r0[:, :, None], r1, g[None, None, :])
    out: Array = logsumexp(step.sum(axis=1) + logw[None, :], axis=1)
    return out


def invert_interval(values: Array, log_fail: Array, log_pass: Array, alpha: float) -> tuple[float, float] | None:
    """The values (sorted ascending) that neither one-sided test rejects at alpha/2.
    ``log_fail`` must reject small values and ``log_pass`` large ones. Open ends are
    -inf/inf; None when every value is rejected (the data sit off the grid)."""
    crit = np.log(2.0 / alpha)
    keep = (log_fail < crit) & (log_pass < crit)
    if not keep.any():
        return None
    idx = np.flatnonzero(keep)
    low = -np.inf if idx[0] == 0 else float(values[idx[0]])
    high = np.inf if idx[-1] == len(values) - 1 else float(values[idx[-1]])
    return (low, high)


def rate_ratio_interval(
    x_a: Array,
    x_b: Array,
    n_a: Array,
    n_b: Array,
    alpha: float,
    mixture: Mixture = DEFAULT_MIXTURE,
) -> tuple[float, float]:
    """Confidence-sequence interval for log(rate_a / rate_b) at the last look (natural-log
    bounds; -inf/inf when the data cannot bound that side)."""
    grid = np.linspace(-4.0, 4.0, 121)
    fail = log_mixture_last(x_a, x_b, n_a, n_b, grid, 1, mixture)
    ok = log_mixture_last(x_a, x_b, n_a, n_b, grid, -1, mixture)
    found = invert_interval(grid, fail, ok, alpha)
    if found is None:
        est = _log_ratio_estimate(float(np.sum(x_a)), float(np.sum(x_b)), float(np.sum(n_a)), float(np.sum(n_b)))
        return (est, est)
    return found


def _log_ratio_estimate(x_a: float, x_b: float, n_a: float, n_b: float) -> float:
    if x_a <= 0 or x_b <= 0 or n_a <= 0 or n_b <= 0:
        return float("nan")
    return float(np.log((x_a / n_a) / (x_b / n_b)))


def wald_sprt_log_lr(x_a: Array, x_b: Array, n_a: Array, n_b: Array, log_rho0: float, log_rho1: float) -> Array:
    """Cumulative log likelihood ratio of a simple rho1-vs-rho0 test (Wald's SPRT): the
    oracle that knows the true alternative, used as the benchmark's lower bound."""
    n_a = np.asarray(n_a, dtype=float)
    n_b = np.asarray(n_b, dtype=float)
    live = (n_a > 0) & (n_b > 0)
    base = np.where(live, np.log(np.where(live, n_a, 1.0)) - np.log(np.where(live, n_b, 1.0)), 0.0)
    r0 = base + log_rho0
    r1 = base + log_rho1
    step = np.where(
        live,
        np.asarray(x_a, float) * (_softplus(-r0) - _softplus(-r1))
        + np.asarray(x_b, float) * (_softplus(r0) - _softplus(r1)),
        0.0,
    )
    out: Array = np.cumsum(step)
    return out


def log_beta_binomial_below(x: Array, n: Array, bound: float, prior: tuple[float, float] = (1.0, 100.0)) -> Array:
    """Log mixture martingale for one Bernoulli stream, H0: rate >= bound, mixing over
    alternatives below the bound with a Beta prior truncated to [0, bound] (exact, no
    normal approximation). It lets an error rate pass an absolute margin even when
    neither variant has seen an error yet: zero errors in many requests is evidence.
    ``x, n`` are cumulative counts per look."""
    from scipy.special import betainc, betaln

    a, b = prior
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    if not 0.0 < bound < 1.0:
        return np.zeros_like(x)
    with np.errstate(divide="ignore"):
        log_num = betaln(a + x, b + n - x) + np.log(betainc(a + x, b + n - x, bound))
        log_den = betaln(a, b) + np.log(betainc(a, b, bound)) + x * np.log(bound) + (n - x) * np.log1p(-bound)
    out: Array = np.where(np.isfinite(log_num), log_num - log_den, -np.inf)
    return out


def log_beta_binomial_point(x: Array, n: Array, p: Array, prior: tuple[float, float] = (0.5, 20.0)) -> Array:
    """Log of Robbins' beta-binomial mixture martingale for one Bernoulli stream against the
    point null ``rate = p``: ``B(a + x, b + n - x) / B(a, b) / (p^x (1 - p)^(n - x))``.

    Under the null it is a test martingale, so ``{p : value < log(1/alpha)}`` is a
    time-uniform confidence sequence for the rate (an interval around x/n). Broadcasts
    ``x, n`` (looks) against ``p`` (candidate null values)."""
    from scipy.special import betaln

    a, b = prior
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: Array = betaln(a + x, b + n - x) - betaln(a, b) - (x * np.log(p) + (n - x) * np.log1p(-p))
    return out


def log_difference_above(xc: Array, nc: Array, xb: Array, nb: Array, margin: float, grid_size: int = 192) -> Array:
    """Per look, the log evidence that ``rate_c - rate_b > margin`` (absolute), from two
    time-uniform confidence sequences at alpha/2 each: the candidate's lower bound above
    some ``c`` and the baseline's upper bound below ``c - margin``.

    ``2 * exp(-value)`` is an always-valid p-value: if the true difference is at most the
    margin, the bounds can only separate by more than it when one of the two sequences
    misses its rate, which happens with probability at most alpha/2 each, however often
    we look. Unlike a test of the rate ratio, it needs no estimate of the baseline's rate,
    so a baseline without a single error does not make an absolute margin untestable."""
    xc, nc, xb, nb = (np.asarray(a, dtype=float)[:, None] for a in (xc, nc, xb, nb))
    if not 0.0 < margin < 1.0:
        return np.full(xc.shape[0], -np.inf)
    # split points c strictly between the margin and 1, denser near small rates
    u = np.geomspace(1e-6, 1.0 - margin - 1e-6, grid_size)[None, :]
    c = margin + u
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_c = np.where(nc > 0, xc / np.maximum(nc, 1.0), 0.0)
        rate_b = np.where(nb > 0, xb / np.maximum(nb, 1.0), 1.0)
    m_c = log_beta_binomial_point(xc, nc, c)
    m_b = log_beta_binomial_point(xb, nb, c - margin)
    # only exclusions on the right side count: c below the candidate's rate (lower bound
    # above c), c - margin above the baseline's rate (upper bound below it)
    usable = (c < rate_c) & (c - margin > rate_b) & (nc > 0) & (nb > 0)
    both = np.where(usable, np.minimum(m_c, m_b), -np.inf)
    out: Array = np.max(both, axis=1)
    return out
