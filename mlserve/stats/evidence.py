"""The evidence of one metric at every look: always-valid p-values for "worse beyond the
margin" and "within the margin", and a summary (values, estimate, interval) at any look.

Every metric is oriented so that "worse" is one direction of a rate ratio (see
sequential.py and latency.py), and everything is computed for all looks at once. The
metric kinds of :mod:`mlserve.stats.kinds` build their tracks with these functions.

What counts as one piece of evidence is the analysis spec's ``test_unit``, one of
:data:`UNITS`: ``request`` (every request an independent trial: the mixture tests of
sequential.py and latency.py) or ``interval`` (one bet per look, betting.py: valid when
the requests of an interval are dependent, against an exchangeable concurrent control).
The engine builds the spec's unit once (:func:`evidence_for`) and hands it to every kind,
which gives it its counts (:meth:`Evidence.counts`) or its histograms
(:meth:`Evidence.latency`); so a kind works with either unit and a unit with every kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

from mlserve.errors import UsageError
from mlserve.stats import betting as bt
from mlserve.stats import latency as lat
from mlserve.stats.multiple import holm_weight
from mlserve.stats.sequential import (
    always_valid_p,
    invert_interval,
    log_beta_binomial_below,
    log_difference_above,
    log_mixture_last,
    log_mixture_per_look,
    log_mixture_rate_ratio,
    merge_intervals,
    rate_ratio_interval,
)
from mlserve.stats.spec import AnalysisSpec, MetricSpec

Array = NDArray[np.float64]
# (baseline value, candidate value, estimate, interval, unit, note) at a look
Summary = tuple[float | None, float | None, float | None, tuple[float, float] | None, str, str]


@dataclass(frozen=True)
class Track:
    """One metric's evidence at every look of the snapshot."""

    spec: MetricSpec
    present: NDArray[np.bool_]  # (K,)
    p_fail: Array  # (K,) running always-valid p
    p_pass: Array
    summary: Callable[[int], Summary]


Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class Counts:
    """A count metric at every look: cumulative events ``x`` over exposures ``n`` of the
    baseline and the candidate, and the unit of their ratio (for display). ``share``: each
    exposure has at most one event (errors of requests, broken streams of streams), so the
    rates lie in [0, 1] and the per-request test adds its absolute-margin routes."""

    xb: Array
    nb: Array
    xc: Array
    nc: Array
    unit: str
    share: bool = False


@dataclass(frozen=True)
class Histograms:
    """A latency metric at every look: cumulative bucket counts (K, B) of the baseline and
    the candidate, with the bucket bounds ``le`` (+Inf last)."""

    base: Array
    cand: Array
    le: Array


def increments(cum: Array) -> Array:
    return np.diff(np.concatenate([[0.0], cum]))


def _spread(values: Array, present: NDArray[np.bool_], fill: float) -> Array:
    """Values computed on the present looks, carried forward to the missing ones
    (evidence gathered so far stays valid); ``fill`` before the first present look."""
    k = present.shape[0]
    full = np.full(k, fill)
    full[np.flatnonzero(present)] = values
    last = np.maximum.accumulate(np.where(present, np.arange(k), -1))
    out: Array = np.where(last >= 0, full[np.maximum(last, 0)], fill)
    return out


def count_track(
    spec: MetricSpec,
    present: NDArray[np.bool_],
    xb_cum: Array,
    nb_cum: Array,
    xc_cum: Array,
    nc_cum: Array,
    regime: Array,
    alpha: float,
    unit: str,
    *,
    share: bool = False,
) -> Track:
    """Events ``x`` over exposures ``n`` (cumulative, per look) of the baseline and the candidate.

    ``share``: each exposure has at most one event (errors of requests, broken streams of
    streams), so the rates lie in [0, 1] and an absolute margin also gets the one-arm routes
    of :func:`_count_p_values`."""
    idx = np.flatnonzero(present)
    xb, nb, xc, nc = (np.asarray(a, dtype=float)[idx] for a in (xb_cum, nb_cum, xc_cum, nc_cum))
    if idx.size:
        p_fail, p_pass = _count_p_values(spec, xb, nb, xc, nc, share)
    else:
        p_fail = p_pass = np.ones(0)

    def summary(j: int) -> Summary:
        upto = idx[idx <= j]
        if not upto.size:
            return None, None, None, None, unit, ""
        last = upto[-1]
        b_rate = xb_cum[last] / nb_cum[last] if nb_cum[last] > 0 else None
        c_rate = xc_cum[last] / nc_cum[last] if nc_cum[last] > 0 else None
        est = c_rate / b_rate - 1.0 if (b_rate and c_rate is not None) else None
        incs = [increments(np.asarray(a, float)[upto]) for a in (xb_cum, nb_cum, xc_cum, nc_cum)]
        dxb_, dnb_, dxc_, dnc_ = merge_intervals(regime[upto], *incs)
        lo, hi = rate_ratio_interval(dxc_, dxb_, dnc_, dnb_, alpha)
        ci = (math.expm1(lo) if math.isfinite(lo) else -1.0, math.expm1(hi) if math.isfinite(hi) else math.inf)
        return b_rate, c_rate, est, ci, unit, ""

    return Track(spec, present, _spread(p_fail, present, 1.0), _spread(p_pass, present, 1.0), summary)


def _count_p_values(spec: MetricSpec, xb: Array, nb: Array, xc: Array, nc: Array, share: bool) -> tuple[Array, Array]:
    """Running always-valid p for "worse beyond the margin" and "within it", at the looks with data."""
    lower_better = spec.better == "lower"
    margin = spec.margin
    dxb, dnb, dxc, dnc = (increments(a) for a in (xb, nb, xc, nc))
    if margin.relative:
        r = min(margin.value, 0.999)
        log_rho0: float | Array = math.log1p(r) if lower_better else -math.log1p(-r)
    else:
        # plug-in: the absolute margin as a ratio of the baseline's rate so far
        base_rate = (xb + 0.5) / (nb + 1.0)
        frac = margin.value / base_rate
        log_rho0 = np.log1p(frac) if lower_better else -np.log1p(-np.minimum(frac, 0.999))
    xa_, xb_, na_, nb_ = (dxc, dxb, dnc, dnb) if lower_better else (dxb, dxc, dnb, dnc)
    mixture = log_mixture_rate_ratio if isinstance(log_rho0, float) else log_mixture_per_look
    p_fail = always_valid_p(mixture(xa_, xb_, na_, nb_, log_rho0, +1))  # type: ignore[arg-type]
    p_pass = always_valid_p(mixture(xa_, xb_, na_, nb_, log_rho0, -1))  # type: ignore[arg-type]
    if share and lower_better and not margin.relative and margin.value > 0:
        # a second route to "pass": the candidate's own error rate is below the
        # absolute margin (so below baseline + margin); alpha split between routes
        p_single = always_valid_p(log_beta_binomial_below(xc, nc, margin.value))
        p_pass = np.minimum(1.0, 2.0 * np.minimum(p_pass, p_single))
        # and a second route to "fail": the ratio test turns the absolute margin into a
        # ratio of the baseline's estimated rate, which is unbounded when the baseline
        # has (almost) no errors; confidence sequences on the two rates are not.
        p_diff = np.minimum(1.0, 2.0 * np.exp(-log_difference_above(xc, nc, xb, nb, margin.value)))
        p_fail = np.minimum(1.0, 2.0 * np.minimum(p_fail, p_diff))
    return p_fail, p_pass


def latency_track(
    spec: MetricSpec,
    present: NDArray[np.bool_],
    base_cum: Array,
    cand_cum: Array,
    le: Array,
    regime: Array,
    alpha: float,
) -> Track:
    q = float(spec.quantile or 0.99)
    idx = np.flatnonzero(present)
    margin = spec.margin
    paths = None
    p_fail = p_pass = np.ones(idx.size)
    if idx.size:
        paths = lat.latency_paths(base_cum[idx], cand_cum[idx], le, q, margin.value, margin.relative)
        lf = np.zeros(idx.size)
        lp = np.zeros(idx.size)
        for b, (xc, xb) in paths.rows.items():
            at = paths.bidx == b
            lf[at] = log_mixture_rate_ratio(xc, xb, paths.n_cand, paths.n_base, 0.0, +1)[at]
            lp[at] = log_mixture_rate_ratio(xc, xb, paths.n_cand, paths.n_base, 0.0, -1)[at]
        p_fail = always_valid_p(lf)
        p_pass = always_valid_p(lp)

    def summary(j: int) -> Summary:
        upto = idx[idx <= j]
        if not upto.size or paths is None:
            return None, None, None, None, "s", "no latency data for both variants yet"
        pos = upto.size - 1
        if not paths.defined[pos]:
            return None, None, None, None, "s", "no slow baseline requests yet"
        b = float(paths.boundary[pos])
        bi = int(paths.bidx[pos])
        sub_c = cand_cum[upto]
        sub_b = base_cum[upto]
        factors = np.exp(np.linspace(-1.0, 1.6, 105))
        cand_ex = lat.exceedances(sub_c, le, b * factors)  # (L, C)
        cand_inc = np.maximum(np.diff(np.vstack([np.zeros((1, factors.size)), cand_ex]), axis=0).T, 0.0)
        base_inc = np.maximum(increments(sub_b[:, -1] - sub_b[:, bi]), 0.0)
        n_c = increments(sub_c[:, -1])
        n_b = increments(sub_b[:, -1])
        cand_inc, base_inc, n_c, n_b = merge_intervals(regime[upto], cand_inc, base_inc, n_c, n_b)
        zeros = np.zeros(factors.size)
        fail = log_mixture_last(cand_inc, base_inc, n_c, n_b, zeros, +1)
        ok = log_mixture_last(cand_inc, base_inc, n_c, n_b, zeros, -1)
        found = invert_interval(factors - 1.0, fail, ok, alpha)
        # point estimate: the shift at which the candidate's tail share equals the baseline's
        q_res = float(paths.resolved_q[pos])
        c_q = lat.quantile(sub_c[-1], le, q_res)
        est = c_q / b - 1.0 if math.isfinite(c_q) and b > 0 else None
        thr = float(paths.threshold[pos])
        res = lat.resolution(le, thr)
        note = f"p{q_res * 100:.4g} compared (the bucket bound nearest p{q * 100:g} is {b:g}s)"
        if math.isfinite(res) and margin.relative and res > 1 + margin.value + 1e-9:
            note += f"; buckets near {thr:g}s are {res:.2g}x wide, coarser than the {margin} margin"
        return b, _nan_none(c_q), est, found, "s", note

    return Track(spec, present, _spread(p_fail, present, 1.0), _spread(p_pass, present, 1.0), summary)


def _nan_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def no_summary(_j: int) -> Summary:
    return None, None, None, None, "s", "no latency histogram in the snapshot"


def absent(spec: MetricSpec, k: int) -> Track:
    """A metric with no data at any look (never a pass)."""
    return Track(spec, np.zeros(k, dtype=bool), np.ones(k), np.ones(k), no_summary)


# ---------------------------------------------------------------------------
# Intervals as the unit (test_unit = "interval")
# ---------------------------------------------------------------------------


def interval_count_track(
    spec: MetricSpec, present: Mask, data: Counts, level: float, alpha: float, bet: bt.Betting
) -> Track:
    """Events over exposures, one bet per look on the sign of the difference between the
    candidate's share and the baseline's (which must be its concurrent control). ``level``
    is the share of alpha the metric is judged at first (it tunes the stakes only)."""
    idx = np.flatnonzero(present)
    unit = data.unit
    xb_cum, nb_cum, xc_cum, nc_cum = (np.asarray(a, dtype=float) for a in (data.xb, data.nb, data.xc, data.nc))
    dxc, dnc, dxb, dnb = (increments(a[idx]) for a in (xc_cum, nc_cum, xb_cum, nb_cum))
    margin = spec.margin
    lower = spec.better == "lower"
    ev = bt.count_evidence(dxc, dnc, dxb, dnb, margin.value, margin.relative, lower, level, alpha, bet)

    def summary(j: int) -> Summary:
        upto = int(np.searchsorted(idx, j, side="right"))
        if not upto:
            return None, None, None, None, unit, ""
        last = idx[upto - 1]
        b_rate = xb_cum[last] / nb_cum[last] if nb_cum[last] > 0 else None
        c_rate = xc_cum[last] / nc_cum[last] if nc_cum[last] > 0 else None
        est = c_rate / b_rate - 1.0 if (b_rate and c_rate is not None) else None
        lo, hi = bt.ratio_interval(dxc[:upto], dnc[:upto], dxb[:upto], dnb[:upto], alpha, bet)
        ci = (lo - 1.0 if math.isfinite(lo) else -1.0, hi - 1.0 if math.isfinite(hi) else math.inf)
        return b_rate, c_rate, est, ci, unit, INTERVAL_NOTE

    return Track(spec, present, _spread(ev.p_fail, present, 1.0), _spread(ev.p_pass, present, 1.0), summary)


def interval_latency_track(
    spec: MetricSpec, present: Mask, data: Histograms, level: float, alpha: float, bet: bt.Betting
) -> Track:
    """A latency quantile from cumulative histograms, one bet per look on the tail shares
    above the baseline's (control's) boundary chosen from the earlier looks only."""
    idx = np.flatnonzero(present)
    le = data.le
    base_cum, cand_cum = (np.asarray(a, dtype=float)[idx] for a in (data.base, data.cand))
    q = float(spec.quantile or 0.99)
    margin = spec.margin
    tail = bt.tail_evidence(cand_cum, base_cum, le, q, margin.value, margin.relative, level, alpha, bet)

    def summary(j: int) -> Summary:
        upto = int(np.searchsorted(idx, j, side="right"))
        if not upto:
            return None, None, None, None, "s", "no latency data for both variants yet"
        defined = np.flatnonzero(tail.defined[:upto])
        if not defined.size:
            return None, None, None, None, "s", "no control latency from an earlier look yet"
        pos = int(defined[-1])
        b = float(tail.boundary[pos])
        q_res = float(tail.resolved_q[pos])
        c_q = lat.quantile(cand_cum[upto - 1], le, q_res)
        est = c_q / b - 1.0 if math.isfinite(c_q) and b > 0 else None
        grid, fail, ok = bt.factor_sequence(cand_cum[:upto], base_cum[:upto], le, q, alpha, bet)
        found = bt.invert(grid - 1.0, fail[:, -1], ok[:, -1], alpha)
        thr = float(tail.threshold[pos])
        res = lat.resolution(le, thr)
        note = (
            f"p{q_res * 100:.4g} compared (the control's p{q * 100:g} before this look, {b:.4g}s, interpolated in a "
            f"bucket {fmt_width(le, b)} wide)"
        )
        if math.isfinite(res) and margin.relative and res > 1 + margin.value + 1e-9:
            note += f"; buckets near {thr:g}s are {res:.2g}x wide, coarser than the {margin} margin"
        return b, _nan_none(c_q), est, found, "s", f"{note}; {INTERVAL_NOTE}"

    return Track(spec, present, _spread(tail.p_fail, present, 1.0), _spread(tail.p_pass, present, 1.0), summary)


INTERVAL_NOTE = "interval test: one bet per look"


def fmt_width(le: Array, value: float) -> str:
    """The relative width of the bucket holding ``value``: the resolution of a quantile read there."""
    res = lat.resolution(le, value)
    return "unbounded" if not math.isfinite(res) else f"{(res - 1) * 100:.2g}%"


# ---------------------------------------------------------------------------
# The units: what one piece of evidence is
# ---------------------------------------------------------------------------


class Evidence(Protocol):
    """The spec's test unit, as the kinds use it: it turns a metric's counts or histograms
    into its :class:`Track`. ``present`` marks the looks with data for the metric;
    ``regime`` is the candidate's configured share at each look."""

    name: ClassVar[str]

    def counts(self, spec: MetricSpec, present: Mask, data: Counts, regime: Array) -> Track: ...

    def latency(self, spec: MetricSpec, present: Mask, data: Histograms, regime: Array) -> Track: ...


@dataclass(frozen=True)
class PerRequest:
    """``test_unit = "request"`` (the default): every request an independent trial."""

    alpha: float
    name: ClassVar[str] = "request"

    @classmethod
    def for_spec(cls, spec: AnalysisSpec) -> PerRequest:
        return cls(spec.alpha)

    def counts(self, spec: MetricSpec, present: Mask, data: Counts, regime: Array) -> Track:
        return count_track(
            spec, present, data.xb, data.nb, data.xc, data.nc, regime, self.alpha, data.unit, share=data.share
        )

    def latency(self, spec: MetricSpec, present: Mask, data: Histograms, regime: Array) -> Track:
        return latency_track(spec, present, data.base, data.cand, data.le, regime, self.alpha)


@dataclass(frozen=True)
class PerInterval:
    """``test_unit = "interval"``: one bet per look (:mod:`mlserve.stats.betting`), stakes
    planned for ``betting.horizon`` looks. Each metric's bets are tuned to its share of
    alpha at Holm's first step (``alpha * weight / family_weight``); that share only sets
    the stakes, the p-values go through Holm in the engine like every other. Each interval
    is its own bet, so a change of split between looks (``regime``) needs no merging."""

    alpha: float
    family_weight: float
    betting: bt.Betting
    name: ClassVar[str] = "interval"

    @classmethod
    def for_spec(cls, spec: AnalysisSpec) -> PerInterval:
        family = sum(holm_weight(m.critical) for m in spec.metrics)
        return cls(spec.alpha, family, bt.Betting(horizon=spec.horizon))

    def level(self, spec: MetricSpec) -> float:
        return self.alpha * holm_weight(spec.critical) / self.family_weight

    def counts(self, spec: MetricSpec, present: Mask, data: Counts, regime: Array) -> Track:
        return interval_count_track(spec, present, data, self.level(spec), self.alpha, self.betting)

    def latency(self, spec: MetricSpec, present: Mask, data: Histograms, regime: Array) -> Track:
        return interval_latency_track(spec, present, data, self.level(spec), self.alpha, self.betting)


UNITS: dict[str, Callable[[AnalysisSpec], Evidence]] = {
    PerRequest.name: PerRequest.for_spec,
    PerInterval.name: PerInterval.for_spec,
}


def unit_name(spec: AnalysisSpec, controlled: bool) -> str:
    """The spec's test unit; unset, ``interval`` where the comparison arm is a concurrent control
    (its exchangeability is what the interval test needs) and ``request`` elsewhere."""
    if spec.test_unit is not None:
        return spec.test_unit
    return PerInterval.name if controlled else PerRequest.name


def evidence_for(spec: AnalysisSpec, controlled: bool = False) -> Evidence:
    """The spec's test unit, ready for the kinds (``controlled``: the snapshot has a control arm)."""
    name = unit_name(spec, controlled)
    build = UNITS.get(name)
    if build is None:
        raise UsageError(f"test_unit {name!r} is not known (known: {', '.join(sorted(UNITS))})")
    return build(spec)
