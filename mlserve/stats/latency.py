"""Latency quantiles compared from histogram buckets, sequentially.

Averages hide tail regressions and per-request samples are not kept, so latency is
judged on the cumulative bucket counts Prometheus already has. For quantile ``q`` and
margin (relative ``r`` or absolute ``m`` seconds):

1. pick the baseline's bucket boundary ``b`` whose share of slower requests is closest
   to ``1 - q`` (the quantile the buckets can actually resolve, ``q' = 1 - share``);
2. set the threshold ``t = b * (1 + r)`` (or ``b + m``);
3. count, per interval, baseline requests slower than ``b`` and candidate requests
   slower than ``t``. If the candidate's q'-quantile is within the margin, its share
   above ``t`` is at most the baseline's share above ``b``; if it is worse by more than
   the margin, its share is larger. That is a rate-ratio question with null ``rho = 1``,
   answered by the same always-valid mixture as error rates (sequential.py).

``t`` rarely falls on a bucket boundary: the candidate's count above ``t`` is linearly
interpolated within its bucket (uniform within the bucket). That is the one
approximation here, and its size is the bucket's width: ``resolution`` reports the
ratio of the bucket bounds around ``t`` (Prometheus' default buckets grow by 2-2.5x,
so a 10% margin sits deep inside one bucket; use finer buckets near the SLO).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def exceedances(cum: Array, le: Array, thresholds: Array) -> Array:
    """Requests slower than each threshold, at each look.

    ``cum`` is (L, B) cumulative bucket counts, ``le`` (B,) bounds with +Inf last,
    ``thresholds`` (T,). Returns (L, T). Linear interpolation inside a bucket; the
    first bucket starts at 0; above the last finite bound nothing can be resolved and
    the whole +Inf bucket counts as slower.
    """
    cum = np.asarray(cum, dtype=float)
    le = np.asarray(le, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    finite = le[:-1]
    total = cum[:, -1:]
    j = np.searchsorted(finite, t, side="left")  # bucket index holding t
    lower_edge = np.where(j > 0, finite[np.maximum(j - 1, 0)], 0.0)
    upper_j = np.minimum(j, len(finite) - 1) if len(finite) else j
    if not len(finite):
        return np.zeros((cum.shape[0], t.shape[0]))
    upper_edge = finite[upper_j]
    cum_low = np.where(j[None, :] > 0, cum[:, np.maximum(j - 1, 0)], 0.0)
    cum_up = cum[:, upper_j]
    width = np.where(upper_edge > lower_edge, upper_edge - lower_edge, 1.0)
    frac = np.clip((t - lower_edge) / width, 0.0, 1.0)
    below = cum_low + frac[None, :] * (cum_up - cum_low)
    beyond = j >= len(finite)
    below = np.where(beyond[None, :], cum[:, len(finite) - 1][:, None], below)
    out: Array = np.maximum(total - below, 0.0)
    return out


def quantile(cum_last: Array, le: Array, q: float) -> float:
    """Interpolated q-quantile from one cumulative histogram (nan when empty; the last
    finite bound when the quantile lies in the +Inf bucket)."""
    cum_last = np.asarray(cum_last, dtype=float)
    le = np.asarray(le, dtype=float)
    total = cum_last[-1]
    if total <= 0:
        return float("nan")
    target = q * total
    j = int(np.searchsorted(cum_last, target, side="left"))
    if j >= len(le) - 1:
        return float(le[-2]) if len(le) > 1 else float("nan")
    lo_edge = float(le[j - 1]) if j > 0 else 0.0
    lo_cum = float(cum_last[j - 1]) if j > 0 else 0.0
    in_bucket = float(cum_last[j]) - lo_cum
    frac = (target - lo_cum) / in_bucket if in_bucket > 0 else 1.0
    return lo_edge + frac * (float(le[j]) - lo_edge)


@dataclass(frozen=True)
class LatencyPaths:
    """Tail-event increments per interval, for each baseline boundary in use."""

    rows: dict[int, tuple[Array, Array]]  # boundary index -> (candidate slower than t, baseline slower than b)
    n_cand: Array  # (K,) request increments
    n_base: Array
    bidx: Array  # (K,) boundary index chosen at each look, -1 where undefined
    boundary: Array  # (K,) b_j in seconds (nan where undefined)
    threshold: Array  # (K,) t_j in seconds
    resolved_q: Array  # (K,) the quantile the buckets resolve at look j

    @property
    def defined(self) -> NDArray[np.bool_]:
        out: NDArray[np.bool_] = self.bidx >= 0
        return out


def shifted(boundary: float, margin_value: float, relative: bool) -> float:
    return boundary * (1.0 + margin_value) if relative else boundary + margin_value


def latency_paths(
    base_cum: Array, cand_cum: Array, le: Array, q: float, margin_value: float, relative: bool
) -> LatencyPaths:
    """Tail-event counts for every look. The baseline boundary is re-chosen at each look
    from the baseline's cumulative histogram so far (a plug-in: the baseline carries most
    of the traffic and its boundary settles within a few looks); looks that share a
    boundary share one path."""
    base_cum = np.asarray(base_cum, dtype=float)
    cand_cum = np.asarray(cand_cum, dtype=float)
    le = np.asarray(le, dtype=float)
    k = base_cum.shape[0]
    totals = base_cum[:, -1]
    safe = np.where(totals > 0, totals, 1.0)[:, None]
    share = (totals[:, None] - base_cum[:, :-1]) / safe  # (K, B-1)
    ok = (share > 0) & (totals[:, None] > 0)
    dist = np.where(ok, np.abs(np.log(np.where(ok, share, 1.0)) - np.log(1.0 - q)), np.inf)
    bidx = np.where(ok.any(axis=1), np.argmin(dist, axis=1), -1) if share.shape[1] else np.full(k, -1)
    n_c = np.diff(np.concatenate([[0.0], cand_cum[:, -1]]))
    n_b = np.diff(np.concatenate([[0.0], totals]))
    rows: dict[int, tuple[Array, Array]] = {}
    boundary = np.full(k, np.nan)
    thr = np.full(k, np.nan)
    resolved = np.full(k, np.nan)
    for b in np.unique(bidx[bidx >= 0]):
        b = int(b)
        t = shifted(float(le[b]), margin_value, relative)
        cand_ex = exceedances(cand_cum, le, np.array([t]))[:, 0]
        base_ex = totals - base_cum[:, b]
        rows[b] = (
            np.maximum(np.diff(np.concatenate([[0.0], cand_ex])), 0.0),
            np.maximum(np.diff(np.concatenate([[0.0], base_ex])), 0.0),
        )
        at = bidx == b
        boundary[at] = le[b]
        thr[at] = t
    has = bidx >= 0
    resolved[has] = 1.0 - share[np.flatnonzero(has), bidx[has]]
    return LatencyPaths(rows, n_c, n_b, bidx, boundary, thr, resolved)


def resolution(le: Array, threshold: float) -> float:
    """Ratio of the bucket bounds around ``threshold`` (1.0 would be exact)."""
    le = np.asarray(le, dtype=float)
    finite = le[:-1]
    j = int(np.searchsorted(finite, threshold, side="left"))
    if j >= len(finite):
        return float("inf")
    lo = float(finite[j - 1]) if j > 0 else 0.0
    hi = float(finite[j])
    return hi / lo if lo > 0 else float("inf")
