"""Seeded rollouts whose requests are *not* independent: load waves, stalls, error bursts.

``simulate.py`` draws every request independently. A shared machine does not: a
process that stalls for 200 ms (a pause, CPU contention) makes every request that
arrives meanwhile slow, errors come in bursts, and the load moves in waves that slow
both arms at once while the request rate drifts. This module draws requests one by one
in time, per arm, with those three mechanisms, and bins them into the cumulative
per-look counts and fine latency histograms of a ``mlserve.snapshot/v1``:

- **load waves**: a factor ``exp(A sin(2 pi t / P + phase) + AR noise)`` shared by both
  arms multiplies every latency; the request rate drifts from interval to interval by a
  log-normal AR(1) factor;
- **stalls**: each arm (one model-server process) stalls at random onsets (a Poisson
  process per arm) for 50-500 ms; a request arriving during a stall waits for its end.
  Stalls can span the end of an interval;
- **error bursts**: each arm has bursts (a Poisson process of onsets, 0.5-3 s long)
  during which a request fails with a high probability.

The two arms of an A/A stream are exchangeable (the same processes, drawn
independently, under the same shared load): the situation of a candidate against its
concurrent control. With ``baseline_percent = None`` the baseline is the primary with
the rest of the traffic, as when there is no control.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mlserve.stats.snapshot import Histogram, Look, Snapshot, VariantStats

Array = NDArray[np.float64]


def fine_buckets(start: float = 0.001, ratio: float = 1.04, stop: float = 10.0) -> tuple[float, ...]:
    """Bucket bounds ``ratio`` apart (4% by default): fine enough for a 10% margin."""
    n = math.floor(math.log(stop / start) / math.log(ratio)) + 1
    return tuple(round(start * ratio**i, 9) for i in range(n))


@dataclass(frozen=True)
class DependentScenario:
    looks: int = 50
    interval_s: float = 10.0
    rps: float = 200.0  # requests/s to the whole endpoint
    candidate_percent: float = 10.0
    baseline_percent: float | None = 10.0  # the control's share; None: the primary (the rest)
    error_rate: float = 0.01
    error_ratio: float = 1.0
    latency_median_s: float = 0.005
    latency_sigma: float = 0.3
    latency_shift: float = 0.0  # +0.25: every candidate latency 25% longer
    buckets: Sequence[float] = fine_buckets()
    # shared load: latency factor and request-rate drift
    wave_amplitude: float = 0.3  # on the log scale
    wave_period_s: float = 120.0
    wave_noise: float = 0.1  # AR(1) noise of the factor between intervals, log scale
    rate_drift: float = 0.2  # AR(1) log-scale drift of the request rate between intervals
    # per-arm stalls
    stall_rate: float = 0.03  # onsets per second, per arm: one stall every ~33 s per process
    stall_min_s: float = 0.05
    stall_max_s: float = 0.5
    # per-arm error bursts
    burst_rate: float = 0.01  # onsets per second, per arm
    burst_min_s: float = 0.5
    burst_max_s: float = 3.0
    burst_error_rate: float = 0.3
    independent: bool = False  # switch every mechanism off (a control for the benchmark)


def _ar1(rng: np.random.Generator, k: int, sd: float, phi: float = 0.8) -> Array:
    e = rng.normal(0.0, sd * math.sqrt(1 - phi * phi), k)
    out = np.zeros(k)
    acc = rng.normal(0.0, sd)
    for i in range(k):
        acc = phi * acc + e[i]
        out[i] = acc
    return out


def _episodes(rng: np.random.Generator, rate: float, horizon: float, lo: float, hi: float) -> tuple[Array, Array]:
    """Onsets (sorted) and running maximum of end times of a Poisson process of episodes."""
    n = rng.poisson(rate * horizon) if rate > 0 else 0
    onsets = np.sort(rng.uniform(-hi, horizon, n))
    ends = np.maximum.accumulate(onsets + rng.uniform(lo, hi, n)) if n else np.zeros(0)
    return onsets, ends


def _inside(t: Array, onsets: Array, ends: Array) -> Array:
    """For each time, how long until the episode covering it ends (0 when none does)."""
    if not onsets.size:
        return np.zeros_like(t)
    j = np.searchsorted(onsets, t, side="right") - 1
    until = np.where(j >= 0, ends[np.maximum(j, 0)], -np.inf)
    out: Array = np.maximum(until - t, 0.0)
    return out


def _arm(
    rng: np.random.Generator,
    s: DependentScenario,
    n: NDArray[np.int64],
    load: Array,
    le: Array,
    candidate: bool,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], Array]:
    """Cumulative requests, errors, histogram counts (K, B+1) and latency sums of one arm."""
    k = s.looks
    horizon = k * s.interval_s
    look = np.repeat(np.arange(k), n)
    t = (look + rng.random(look.size)) * s.interval_s
    # the shared load factor, interpolated between interval centres
    centres = (np.arange(k) + 0.5) * s.interval_s
    factor = np.exp(np.interp(t, centres, load))
    lat = np.exp(math.log(s.latency_median_s) + s.latency_sigma * rng.standard_normal(t.size)) * factor
    if candidate:
        lat = lat * (1.0 + s.latency_shift)
    p = np.full(t.size, s.error_rate * (s.error_ratio if candidate else 1.0))
    if not s.independent:
        onsets, ends = _episodes(rng, s.stall_rate, horizon, s.stall_min_s, s.stall_max_s)
        lat = lat + _inside(t, onsets, ends)
        b_on, b_end = _episodes(rng, s.burst_rate, horizon, s.burst_min_s, s.burst_max_s)
        in_burst = _inside(t, b_on, b_end) > 0
        burst_p = s.burst_error_rate * (s.error_ratio if candidate else 1.0)
        p = np.where(in_burst, np.maximum(p, burst_p), p)
    err = rng.random(t.size) < np.minimum(p, 1.0)
    bucket = np.searchsorted(le, lat, side="left")  # le[j-1] < lat <= le[j]; len(le) is +Inf
    nb = le.size + 1
    hist = np.bincount(look * nb + bucket, minlength=k * nb).reshape(k, nb)
    cum_hist = np.cumsum(np.cumsum(hist, axis=0), axis=1)
    errors = np.cumsum(np.bincount(look, weights=err, minlength=k)).astype(np.int64)
    sums = np.cumsum(np.bincount(look, weights=lat, minlength=k)).astype(float)
    return np.cumsum(n).astype(np.int64), errors, cum_hist.astype(np.int64), sums


def simulate_dependent(s: DependentScenario, rng: np.random.Generator, name: str = "<simulated>") -> Snapshot:
    """One seeded rollout of ``s.looks`` looks: v1 is the control (or the primary), v2 the
    candidate. Weights in the snapshot are the two arms' configured shares."""
    k = s.looks
    le = np.asarray(tuple(s.buckets), dtype=float)
    cand = s.candidate_percent / 100.0
    base = (100.0 - s.candidate_percent if s.baseline_percent is None else s.baseline_percent) / 100.0
    drift = np.zeros(k) if s.independent else _ar1(rng, k, s.rate_drift)
    total = rng.poisson(s.rps * s.interval_s * np.exp(drift - 0.5 * s.rate_drift**2 * (not s.independent)))
    rest = max(0.0, 1.0 - cand - base)
    split = np.array([rng.multinomial(int(m), [cand, base, rest]) for m in total])
    if s.independent:
        load = np.zeros(k)
    else:
        phase = rng.uniform(0.0, 2.0 * math.pi)
        centres = (np.arange(k) + 0.5) * s.interval_s
        load = s.wave_amplitude * np.sin(2.0 * math.pi * centres / s.wave_period_s + phase)
        load = load + _ar1(rng, k, s.wave_noise)
    arms = {
        "v1": _arm(rng, s, split[:, 1], load, le, candidate=False),
        "v2": _arm(rng, s, split[:, 0], load, le, candidate=True),
    }
    le_out = (*(float(x) for x in le), float("inf"))
    weights = {"v1": base * 100.0, "v2": cand * 100.0}
    looks = []
    for j in range(k):
        variants = {}
        for arm, (req, errs, hist, sums) in arms.items():
            h = Histogram(le_out, tuple(int(c) for c in hist[j]), round(float(sums[j]), 6))
            variants[arm] = VariantStats(int(req[j]), int(errs[j]), h)
        looks.append(Look(f"look-{j + 1}", weights, variants))
    return Snapshot("sim", "v1", "v2", "canary", tuple(looks), name)
