"""Always-valid tests with intervals as the unit: valid under dependence within an interval.

On a shared machine the requests of one interval are not independent: a pause or a
burst of CPU contention makes many nearby requests slow (or failing) together, and the
load drifts from interval to interval. A per-request model (sequential.py) then counts a
burst of ten slow requests as ten independent pieces of evidence. Here the unit is the
interval (a look, or a scrape): each interval gives one number ``y_i`` per metric,
a weighted difference between the candidate's share of "bad" requests and the control's,
and the test bets on its sign.

**The null.** The candidate and its concurrent control (a fresh instance of the baseline
with the candidate's traffic share) see the same load at the same time. For an A/A pair
their data in one interval are exchangeable given everything before it, so ``z_i``, the
weighted difference of their shares, is *conditionally symmetric*: given the past it is as
likely to be ``+z`` as ``-z``, however the requests inside the interval depend on each
other. A candidate that is no worse than the margin makes ``y_i <= z_i`` for such a
symmetric ``z_i`` (the margin is what ``y_i`` subtracts; see ``count_increments`` and
``tail_increments``). That is all the test assumes.

**The test.** For any odd, non-decreasing ``psi`` with values in ``(-1, 1)`` and any
predictable choice of it, ``E[psi(y_i) | past] <= E[psi(z_i) | past] = 0``, so the capital

    K_t = prod_{i <= t} (1 + psi_i(y_i))

is a non-negative supermartingale under the null, and by Ville's inequality it ever
reaches ``1/alpha`` with probability at most ``alpha``: testing by betting (Shafer 2021;
Waudby-Smith and Ramdas 2023), here on the sign of a symmetric increment, which needs no
bound on the range of ``y`` and no variance. mlserve bets ``psi_i(y) = tanh(lam_i * y)``:
``1 + tanh(x) = e^x / cosh(x)`` is the exact sign-flip likelihood ratio, never worse than
de la Pena's self-normalised ``exp(x - x^2/2)``. The stake ``lam_i`` is tuned to the
planned horizon of T looks (``Betting``): by default it replicates a fixed-horizon test
that decides after T looks (the "deadline" strategy), or it is the constant
``kappa * sqrt(2 log(1/alpha) / T) / s_i`` (Howard et al.'s 2021 mixture scale for a
target sample size, in plug-in form), with ``s_i^2`` a predictable estimate of the
increments' variance. One interval can at most double the capital, so a single burst can
never roll a candidate back on its own: at ``alpha = 0.05`` it takes five intervals at least.

**Confidence sequences.** The same capital for a family of nulls (a rate ratio, or the
factor by which the candidate's latency threshold is shifted) is inverted: the values that
neither one-sided test rejects at ``alpha/2`` form a confidence sequence, valid at every
look at once.

Everything is vectorised over looks (and over the family of nulls, on a leading axis).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

# Stake multiplier of the constant strategy: kappa = 1 makes its linear boundary tightest
# at exactly T looks; a little more catches a real regression earlier (1.3 caught the most
# 2x error regressions within T looks of 1.0-2.0, simulated on the streams of
# benchmarks/decision_quality.py part 3).
DEFAULT_KAPPA = 1.3
DEFAULT_HORIZON = 60  # looks: the default policy's max_duration / interval
# The deadline strategy aims to reach 1 / (TARGET * alpha) by the horizon: aiming past
# 1 / alpha lets it stop early when the evidence is clear (simulated on the same streams,
# targets 0.3 to 0.6 caught about the same share, 1.0 several points less).
DEFAULT_TARGET = 0.5


@dataclass(frozen=True)
class Betting:
    """How the capital stakes, knowing the planned number of looks ``horizon``.

    ``deadline`` (the default) bets as if to replicate the payoff of a fixed-horizon test
    at level ``target * alpha`` after ``horizon`` looks: the stake at each look is the
    delta of that payoff's value, given the capital so far and the looks left. It spends
    the evidence where a fixed-horizon design would and so loses little power to it.
    ``constant`` stakes ``kappa`` times the horizon-tuned amount at every look (Howard et
    al.'s mixture scale for a target sample size, as a plug-in). Either way the stake is
    predictable and the bet odd in the increment, which is all validity needs."""

    horizon: float = DEFAULT_HORIZON
    strategy: Literal["deadline", "constant"] = "deadline"
    kappa: float = DEFAULT_KAPPA
    target: float = DEFAULT_TARGET


def _log1p_tanh(x: Array) -> Array:
    """log(1 + tanh(x)) = log 2 - softplus(-2x), stable for large |x|."""
    out: Array = math.log(2.0) - np.logaddexp(0.0, -2.0 * x)
    return out


def predictable_variance(y: Array, floor: Array, live: NDArray[np.bool_] | None = None) -> Array:
    """A variance for each interval's increment computed from earlier intervals only:
    the sample variance of ``y`` over the earlier intervals with data (once there are
    two), never below ``floor`` (a model-based variance the caller computed from the past
    and the interval's exposures). Predictable, so any value keeps the test valid; a good
    one only makes it more powerful. Broadcasts over leading axes; looks on the last."""
    y = np.asarray(y, dtype=float)
    mask = np.ones(y.shape[-1], dtype=bool) if live is None else np.asarray(live, dtype=bool)
    yl = np.where(mask, y, 0.0)
    zero = np.zeros((*y.shape[:-1], 1))
    s1 = np.concatenate([zero, np.cumsum(yl, axis=-1)[..., :-1]], axis=-1)
    s2 = np.concatenate([zero, np.cumsum(yl * yl, axis=-1)[..., :-1]], axis=-1)
    m = np.concatenate([[0.0], np.cumsum(mask.astype(float))[:-1]])  # earlier intervals with data
    var = np.where(m >= 2, (s2 - s1 * s1 / np.maximum(m, 1.0)) / np.maximum(m - 1.0, 1.0), 0.0)
    out: Array = np.maximum(np.maximum(var, 0.0), np.asarray(floor, dtype=float))
    return out


def standardise(y: Array, variance: Array) -> Array:
    """``y / sqrt(variance)``, 0 where the variance is 0 (no data, no bet)."""
    v = np.asarray(variance, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: Array = np.where(v > 0, np.asarray(y, dtype=float) / np.sqrt(np.where(v > 0, v, 1.0)), 0.0)
    return out


def log_capital(
    y: Array,
    variance: Array,
    alpha: float | Array,
    side: int = 1,
    betting: Betting | None = None,
) -> Array:
    """Log capital after each interval for the null ``y_i <= z_i`` (``z_i`` conditionally
    symmetric), betting that ``side * y`` is positive. ``variance`` must be predictable
    (``predictable_variance``); intervals with zero variance or no data carry no bet.
    ``alpha`` is the level the test will be judged at (it tunes the stakes; an array
    broadcasts against the leading axes). Broadcasts over leading axes; looks on the last."""
    bet = betting or Betting()
    a = standardise(y, variance) * (1.0 if side > 0 else -1.0)
    return _strategy(a, np.asarray(alpha, dtype=float), bet)


def _strategy(a: Array, alpha: Array, bet: Betting) -> Array:
    if bet.strategy == "constant":
        c = np.sqrt(2.0 * np.log(1.0 / alpha) / max(float(bet.horizon), 1.0))
        out: Array = np.cumsum(_log1p_tanh(bet.kappa * c * a), axis=-1)
        return out
    return _deadline(a, alpha * bet.target, float(bet.horizon))


def log_capital_both(
    y: Array, variance: Array, alpha_up: float, alpha_down: float, betting: Betting | None = None
) -> tuple[Array, Array]:
    """The capitals betting that ``y`` is positive (at level ``alpha_up``) and negative
    (``alpha_down``), in one pass: ``log_capital`` on ``y`` and ``-y`` stacked."""
    y, var = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(variance, dtype=float))
    levels = np.array([alpha_up, alpha_down]).reshape((2,) + (1,) * y.ndim)
    both = log_capital(np.stack([y, -y]), np.stack([var, var]), levels, 1, betting)
    return both[0], both[1]


_TABLE_LOW, _TABLE_STEP = -60.0, 0.005


@functools.lru_cache(maxsize=1)
def _delta_table() -> Array:
    """``phi(d) / Phi(d)`` at ``d = Phi^-1(p)`` on a uniform grid of ``log p`` from -60 to 0,
    read at the nearest point below (it only picks stakes, so a table is as valid as the
    exact function; below the grid the capital is spent and the stake stays at its end)."""
    from scipy.special import ndtri_exp

    logp = np.arange(_TABLE_LOW, _TABLE_STEP / 2, _TABLE_STEP)
    d = ndtri_exp(np.minimum(logp, math.log1p(-1e-12)))
    ratio: Array = np.exp(-0.5 * d * d - 0.5 * math.log(2.0 * math.pi) - logp)
    ratio.flags.writeable = False
    return ratio


def _deadline(a: Array, level: Array, horizon: float) -> Array:
    """Capital of the deadline strategy on standardised increments ``a``.

    Planning model (used only to choose stakes): the standardised increments are N(0, 1)
    under the null, and the test to replicate rejects when their sum after ``horizon``
    looks exceeds ``c = z_{1-level} sqrt(horizon)``. Its value with ``r`` looks to go and
    sum ``S`` is ``Phi((S - c) / sqrt(r)) / level``. The capital so far fixes the implied
    ``d = (S - c) / sqrt(r)``, and the stake per unit of increment is the value's delta over
    the capital, ``phi(d) / (sqrt(r) Phi(d))``: small when far ahead, bold when behind.
    Past the horizon it keeps the one-look-to-go stake."""
    table = _delta_table()
    top = table.shape[0] - 1
    k = a.shape[-1]
    out = np.empty(a.shape)
    log_level = np.broadcast_to(np.log(level), (*a.shape[:-1], 1))[..., 0]
    logp = log_level.copy()  # log(level) + log(capital so far)
    ln2 = math.log(2.0)
    inv = 1.0 / _TABLE_STEP
    # -2 / sqrt(looks to go) folded into the increments once
    scaled = a * (-2.0 / np.sqrt(np.maximum(horizon - np.arange(k), 1.0)))
    for i in range(k):
        j = np.minimum(np.maximum(logp * inv - _TABLE_LOW * inv, 0.0), top).astype(np.intp)
        logp = logp + (ln2 - np.logaddexp(0.0, table[j] * scaled[..., i]))
        out[..., i] = logp
    out -= log_level[..., None]
    return out


def always_valid_p(log_k: Array) -> Array:
    """Running always-valid p-value: min over looks so far of 1 / capital, capped at 1."""
    running = np.maximum.accumulate(np.maximum(np.asarray(log_k, dtype=float), 0.0), axis=-1)
    out: Array = np.exp(-running)
    return out


# ---------------------------------------------------------------------------
# Increments: counts (errors, ratio metrics)
# ---------------------------------------------------------------------------


def _weights(nc: Array, nb: Array) -> tuple[Array, NDArray[np.bool_]]:
    """``nc*nb/(nc+nb)``, the inverse variance of a difference of two shares up to the
    rate: symmetric in the two arms, so weighting by it keeps the increment symmetric."""
    live = (nc > 0) & (nb > 0)
    w = np.where(live, nc * nb / np.where(live, nc + nb, 1.0), 0.0)
    return w, live


def count_increments(
    xc: Array,
    nc: Array,
    xb: Array,
    nb: Array,
    ratio: Array | float = 1.0,
    shift: Array | float = 0.0,
) -> tuple[Array, Array]:
    """Per-interval increments ``y = w * (xc/nc - ratio * xb/nb - shift)`` and a
    predictable variance for each, for the null "the candidate's event share is at most
    ``ratio`` times the control's plus ``shift``".

    ``xc, nc, xb, nb`` are per-interval (not cumulative) events and exposures of the
    candidate and the control, shape (K,). ``ratio`` and ``shift`` broadcast against a
    leading axis (a family of nulls, for confidence sequences). The null holds exactly
    when, in every interval, the candidate's share is at most ``ratio`` times (plus
    ``shift``) that of an exchangeable copy of the control: then ``y <= ratio * z`` (or
    ``z``) with ``z`` symmetric."""
    xc, nc, xb, nb = (np.asarray(a, dtype=float) for a in (xc, nc, xb, nb))
    w, live = _weights(nc, nb)
    u = np.where(live, xc / np.where(live, nc, 1.0), 0.0)
    v = np.where(live, xb / np.where(live, nb, 1.0), 0.0)
    r = np.asarray(ratio, dtype=float)
    d = np.asarray(shift, dtype=float)
    y = np.where(live, w * (u - r * v - d), 0.0)
    # model-based floor: Poisson variance at the pooled rate of the earlier intervals
    # (with half an event and one request of prior, so the first interval barely bets)
    past_x = np.concatenate([[0.0], np.cumsum(np.where(live, xc + xb, 0.0))[:-1]])
    past_n = np.concatenate([[0.0], np.cumsum(np.where(live, nc + nb, 0.0))[:-1]])
    rate = (past_x + 0.5) / (past_n + 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        floor = np.where(live, w * w * rate * (1.0 / np.where(live, nc, 1.0) + r * r / np.where(live, nb, 1.0)), 0.0)
    y = np.broadcast_to(y, np.broadcast_shapes(y.shape, floor.shape)).copy()
    return y, predictable_variance(y, np.broadcast_to(floor, y.shape), live)


# ---------------------------------------------------------------------------
# Increments: latency tails from cumulative histograms
# ---------------------------------------------------------------------------


def _below(cum: Array, le: Array, t: Array, width: int | None = None) -> Array:
    """Requests at or below ``t`` in each row of ``cum`` (K, B), with a threshold per look
    and per family member: ``t`` is (G, K); returns (G, K). Linear inside a bucket; the
    first bucket starts at 0; above the last finite bound the whole +Inf bucket counts as
    slower. With ``width``, ``cum`` holds two histograms side by side (K, 2B) and the
    answer is (2, G, K), one per histogram."""
    if width is None:
        return _gather(cum, *_locate(le, t))
    where = _locate(le[:width], t)
    return np.stack([_gather(cum[:, :width], *where), _gather(cum[:, width:], *where)])


def _locate(le: Array, t: Array) -> tuple[NDArray[np.intp], Array, NDArray[np.bool_]]:
    finite = le[:-1]
    nf = finite.shape[0]
    j = np.searchsorted(finite, t, side="left")  # bucket holding t
    jj = np.minimum(j, nf - 1)
    lo_edge = np.where(j > 0, finite[np.maximum(j - 1, 0)], 0.0)
    hi_edge = finite[jj]
    width = np.where(hi_edge > lo_edge, hi_edge - lo_edge, 1.0)
    frac = np.minimum(np.maximum((t - lo_edge) / width, 0.0), 1.0)
    return j, frac, j >= nf


def _gather(cum: Array, j: NDArray[np.intp], frac: Array, beyond: NDArray[np.bool_]) -> Array:
    nf = cum.shape[1] - 1
    k = np.arange(cum.shape[0])[None, :]
    cum_lo = np.where(j > 0, cum[k, np.maximum(j - 1, 0)], 0.0)
    cum_hi = cum[k, np.minimum(j, nf - 1)]
    out: Array = np.where(beyond, cum[k, nf - 1], cum_lo + frac * (cum_hi - cum_lo))
    return out


@dataclass(frozen=True)
class TailIncrements:
    """Per-interval tail increments for a latency quantile, with the control's boundary
    ``b_i`` chosen from the looks before interval i only (so it is predictable)."""

    y: Array  # (G, K) increments, one row per threshold factor
    variance: Array  # (G, K) predictable variances
    bidx: NDArray[np.int64]  # (K,) bucket index of b_i, -1 where no earlier data
    boundary: Array  # (K,) b_i in seconds (nan where undefined)
    resolved_q: Array  # (K,) the quantile b_i resolves in the control's past

    @property
    def defined(self) -> NDArray[np.bool_]:
        out: NDArray[np.bool_] = self.bidx >= 0
        return out


# buckets at most this wide (upper / lower bound) are read by interpolation; in wider ones
# (Prometheus' and most runtimes' defaults, 2-2.5x) linear interpolation would blur the
# comparison, so the nearest bucket bound is compared there and reports name its quantile
FINE_BUCKET = 1.25


def predictable_boundary(base_cum: Array, le: Array, q: float) -> tuple[NDArray[np.int64], Array, Array]:
    """For each interval, the control's q-quantile over all looks *before* it: interpolated
    linearly inside the bucket that holds it when that bucket is fine (at most
    :data:`FINE_BUCKET` wide), so the quantile compared is the one the policy names to within
    the bucket's width; else the bucket bound whose past share of slower requests is nearest
    ``1 - q`` on a log scale. Returns the bucket index (-1 where there is no earlier data),
    the boundary in seconds and the past share of slower requests above it."""
    base_cum = np.asarray(base_cum, dtype=float)
    le = np.asarray(le, dtype=float)
    k = base_cum.shape[0]
    if base_cum.shape[1] < 2:
        return np.full(k, -1, dtype=np.int64), np.full(k, np.nan), np.full(k, np.nan)
    prev = np.vstack([np.zeros((1, base_cum.shape[1])), base_cum[:-1]])
    totals = prev[:, -1]
    safe = np.where(totals > 0, totals, 1.0)[:, None]
    share = (totals[:, None] - prev[:, :-1]) / safe
    ok = (share > 0) & (totals[:, None] > 0)
    dist = np.where(ok, np.abs(np.log(np.where(ok, share, 1.0)) - math.log(1.0 - q)), np.inf)
    near = np.where(ok.any(axis=1), np.argmin(dist, axis=1), -1).astype(np.int64)
    near_share = np.where(near >= 0, share[np.arange(k), np.maximum(near, 0)], np.nan)
    near_b = le[np.maximum(near, 0)]
    # the interpolated quantile
    target = q * totals
    finite = prev[:, :-1]
    nf = finite.shape[1]
    j = np.array([int(np.searchsorted(row, t, side="left")) for row, t in zip(finite, target, strict=True)])
    jj = np.minimum(j, nf - 1)
    rows = np.arange(k)
    lo_edge = np.where(jj > 0, le[np.maximum(jj - 1, 0)], 0.0)
    hi_edge = le[jj]
    cum_lo = np.where(jj > 0, finite[rows, np.maximum(jj - 1, 0)], 0.0)
    span = finite[rows, jj] - cum_lo
    frac = np.where(span > 0, (target - cum_lo) / np.where(span > 0, span, 1.0), 1.0)
    interp = lo_edge + np.clip(frac, 0.0, 1.0) * (hi_edge - lo_edge)
    with np.errstate(divide="ignore", invalid="ignore"):
        fine = (totals > 0) & (j < nf) & (lo_edge > 0) & (hi_edge / np.where(lo_edge > 0, lo_edge, 1.0) <= FINE_BUCKET)
    bidx = np.where(fine, jj, near).astype(np.int64)
    boundary = np.where(fine, interp, near_b)
    chosen = np.where(fine, 1.0 - q, near_share)
    return bidx, np.where(bidx >= 0, boundary, np.nan), chosen


def tail_increments(
    cand_cum: Array,
    base_cum: Array,
    le: Array,
    q: float,
    factors: Array,
    shift: float = 0.0,
) -> TailIncrements:
    """Increments ``y = w * (share of candidate requests slower than t_i - share of control
    requests slower than b_i)`` with ``t_i = factor * b_i + shift``, for every factor.

    ``cand_cum, base_cum`` are (K, B) cumulative bucket counts per look (Prometheus ``le``
    semantics, +Inf last). If the candidate's latency is at most ``factor`` times (plus
    ``shift``) that of an exchangeable copy of the control, its share above ``t_i`` is at
    most the copy's share above ``b_i``, so ``y <= z`` with ``z`` symmetric: the null
    of ``log_capital``. The candidate's count above ``t_i`` is interpolated inside its
    bucket (the one approximation; its size is the bucket's width)."""
    cand_cum = np.asarray(cand_cum, dtype=float)
    base_cum = np.asarray(base_cum, dtype=float)
    le = np.asarray(le, dtype=float)
    f = np.atleast_1d(np.asarray(factors, dtype=float))
    bidx, boundary, share = predictable_boundary(base_cum, le, q)
    defined = bidx >= 0
    n_c = np.diff(np.concatenate([[0.0], cand_cum[:, -1]]))
    n_b = np.diff(np.concatenate([[0.0], base_cum[:, -1]]))
    w, live = _weights(n_c, n_b)
    live = live & defined
    b = np.where(defined, np.nan_to_num(boundary, nan=1.0), 1.0)
    t = f[:, None] * b[None, :] + shift  # (G, K)
    prev_c = np.vstack([np.zeros((1, cand_cum.shape[1])), cand_cum[:-1]])
    # requests above t_i by look i minus those by look i - 1: one lookup for both
    both = _below(np.hstack([cand_cum, prev_c]), np.concatenate([le, le]), t, cand_cum.shape[1])
    above_c = (cand_cum[:, -1] - prev_c[:, -1])[None, :] - (both[0] - both[1])
    prev_b = np.vstack([np.zeros((1, base_cum.shape[1])), base_cum[:-1]])
    # the control's requests above b_i in interval i, interpolated inside b_i's bucket exactly
    # as the candidate's are above t_i (at factor 1 both are read at the same point)
    both_b = _below(np.hstack([base_cum, prev_b]), np.concatenate([le, le]), b[None, :], base_cum.shape[1])
    above_b = (base_cum[:, -1] - prev_b[:, -1]) - (both_b[0, 0] - both_b[1, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(live, np.maximum(above_c, 0.0) / np.where(live, n_c, 1.0), 0.0)
        v = np.where(live, np.maximum(above_b, 0.0) / np.where(live, n_b, 1.0), 0.0)
        y = np.where(live, w * (u - v[None, :]), 0.0)
        rate = np.where(defined, share, 0.0)
        floor = np.where(live, w * w * rate * (1.0 / np.where(live, n_c, 1.0) + 1.0 / np.where(live, n_b, 1.0)), 0.0)
    y = np.asarray(y, dtype=float)
    var = predictable_variance(y, np.broadcast_to(floor, y.shape), live)
    resolved = np.where(defined, 1.0 - share, np.nan)
    return TailIncrements(y, var, bidx, np.where(defined, boundary, np.nan), resolved)


# ---------------------------------------------------------------------------
# Confidence sequences
# ---------------------------------------------------------------------------


def invert(values: Array, log_fail: Array, log_pass: Array, alpha: float) -> tuple[float, float] | None:
    """The hull of the family values (ascending) that neither one-sided test rejects at
    ``alpha/2``, from each test's running maximum of log capital at one look (the capital
    is monotone in the family value up to the plug-in variance, so the kept set is an
    interval in practice; the hull can only be wider). Open ends are -inf/inf; None when
    every value is rejected."""
    crit = math.log(2.0 / alpha)
    keep = (np.asarray(log_fail) < crit) & (np.asarray(log_pass) < crit)
    if not keep.any():
        return None
    idx = np.flatnonzero(keep)
    low = -math.inf if idx[0] == 0 else float(values[idx[0]])
    high = math.inf if idx[-1] == len(values) - 1 else float(values[idx[-1]])
    return (low, high)


def running_max(log_k: Array) -> Array:
    out: Array = np.maximum.accumulate(np.asarray(log_k, dtype=float), axis=-1)
    return out


def _for_sequences(betting: Betting | None) -> Betting:
    """Confidence sequences use the constant stake at the same horizon: any predictable
    stake gives a valid sequence, and the constant one is a cumulative sum over looks, cheap
    for a whole family of nulls. (So the reported interval need not agree to the look with
    the deadline test's decision.)"""
    bet = betting or Betting()
    return Betting(horizon=bet.horizon, strategy="constant", kappa=bet.kappa)


RATIO_GRID: Array = np.exp(np.linspace(-3.0, 3.0, 121))
FACTOR_GRID: Array = np.exp(np.linspace(-1.0, 1.6, 105))


def ratio_sequence(
    xc: Array, nc: Array, xb: Array, nb: Array, alpha: float, betting: Betting | None = None
) -> tuple[Array, Array, Array]:
    """For every look, the confidence sequence for the ratio of the candidate's event
    rate to the control's: returns (grid, log_fail, log_pass) with running maxima of log
    capital per grid value (G, K); ``invert`` a column for the interval at that look."""
    grid = RATIO_GRID
    y, var = count_increments(xc, nc, xb, nb, ratio=grid[:, None])
    fail, ok = log_capital_both(y, var, alpha / 2.0, alpha / 2.0, _for_sequences(betting))
    return grid, running_max(fail), running_max(ok)


def ratio_interval(
    xc: Array, nc: Array, xb: Array, nb: Array, alpha: float, betting: Betting | None = None
) -> tuple[float, float]:
    """The rate ratio's confidence sequence at the last look (-inf/inf ends open; the
    pooled ratio twice when every value is rejected)."""
    grid, fail, ok = ratio_sequence(xc, nc, xb, nb, alpha, betting)
    found = invert(grid, fail[:, -1], ok[:, -1], alpha)
    if found is None:
        sx, sn, bx, bn = (float(np.sum(a)) for a in (xc, nc, xb, nb))
        est = (sx / sn) / (bx / bn) if min(sx, sn, bx, bn) > 0 else math.nan
        return (est, est)
    return found


def factor_sequence(
    cand_cum: Array, base_cum: Array, le: Array, q: float, alpha: float, betting: Betting | None = None
) -> tuple[Array, Array, Array]:
    """For every look, the confidence sequence for the factor by which the candidate's
    ``q'``-quantile exceeds the control's boundary: (grid, log_fail, log_pass), running
    maxima of log capital per factor (G, K); ``invert`` a column."""
    grid = FACTOR_GRID
    inc = tail_increments(cand_cum, base_cum, le, q, grid)
    fail, ok = log_capital_both(inc.y, inc.variance, alpha / 2.0, alpha / 2.0, _for_sequences(betting))
    return grid, running_max(fail), running_max(ok)


# ---------------------------------------------------------------------------
# One metric's evidence, as the engine uses it
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """Running always-valid p-values at each look, for "worse beyond the margin" (fail)
    and for "not non-inferior" (pass)."""

    p_fail: Array
    p_pass: Array


def count_evidence(
    xc: Array,
    nc: Array,
    xb: Array,
    nb: Array,
    margin: float,
    relative: bool,
    lower_better: bool,
    alpha_fail: float,
    alpha_pass: float,
    betting: Betting | None = None,
) -> Evidence:
    """Error rates and ratio metrics, per interval (``x``/``n`` are per-interval increments
    of the candidate and the control). A relative margin ``r`` is the null
    "candidate's rate <= (1 + r) x control's" (``>= (1 - r) x`` when higher is better); an
    absolute one ``m`` is "candidate's rate <= control's + m" (``>= control's - m``),
    tested directly on the difference: no plug-in of the control's rate, so an error-free
    control is no special case. ``alpha_*`` are the levels each test will be judged at
    (they tune the stakes, not validity)."""
    if relative:
        r = min(margin, 0.999)
        ratio, shift = (1.0 + r, 0.0) if lower_better else (1.0 - r, 0.0)
    else:
        ratio, shift = 1.0, (margin if lower_better else -margin)
    y, var = count_increments(xc, nc, xb, nb, ratio, shift)
    if lower_better:
        fail, ok = log_capital_both(y, var, alpha_fail, alpha_pass, betting)
    else:
        ok, fail = log_capital_both(y, var, alpha_pass, alpha_fail, betting)
    return Evidence(always_valid_p(fail), always_valid_p(ok))


@dataclass(frozen=True)
class TailEvidence(Evidence):
    boundary: Array  # (K,) the control's boundary b_i (nan where undefined)
    threshold: Array  # (K,) the candidate's threshold t_i
    resolved_q: Array  # (K,) the quantile b_i resolves
    defined: NDArray[np.bool_]  # (K,) looks with a boundary (the first look has none)


def tail_evidence(
    cand_cum: Array,
    base_cum: Array,
    le: Array,
    q: float,
    margin: float,
    relative: bool,
    alpha_fail: float,
    alpha_pass: float,
    betting: Betting | None = None,
) -> TailEvidence:
    """A latency quantile with a relative (``t = b (1 + r)``) or absolute (``t = b + m``
    seconds) margin, from cumulative histograms (K, B) of the candidate and the control."""
    factor, shift = (1.0 + margin, 0.0) if relative else (1.0, margin)
    inc = tail_increments(cand_cum, base_cum, le, q, np.array([factor]), shift)
    fail, ok = log_capital_both(inc.y[0], inc.variance[0], alpha_fail, alpha_pass, betting)
    return TailEvidence(
        always_valid_p(fail),
        always_valid_p(ok),
        inc.boundary,
        inc.boundary * factor + shift,
        inc.resolved_q,
        inc.defined,
    )
