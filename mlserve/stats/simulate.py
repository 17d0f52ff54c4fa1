"""Seeded synthetic rollouts: snapshots with known truth, for tests and benchmarks.

Requests arrive as Poisson counts at a fixed rate; each interval's traffic is split by
the weights in force (optionally misrouted); errors are Binomial; latencies are
log-normal and binned into Prometheus-style cumulative buckets. A regression is an
error-rate ratio and/or a multiplicative latency shift of the candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlserve.stats.snapshot import Histogram, Look, Snapshot, VariantStats

PROMETHEUS_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def geometric_buckets(start: float = 0.005, ratio: float = 1.05, stop: float = 10.0) -> tuple[float, ...]:
    """Finer buckets (5% apart by default) that can resolve a 10% latency margin."""
    out = [start]
    while out[-1] * ratio < stop:
        out.append(round(out[-1] * ratio, 6))
    return tuple(out)


@dataclass(frozen=True)
class Scenario:
    looks: int = 50
    rps: float = 20.0
    interval_s: float = 60.0
    weights: Sequence[float] = (10.0,)  # candidate percent; one per look, or one for all
    error_rate: float = 0.01
    error_ratio: float = 1.0
    latency_median_s: float = 0.05
    latency_sigma: float = 0.5
    latency_shift: float = 0.0  # +0.5 = candidate 50% slower
    buckets: Sequence[float] = PROMETHEUS_BUCKETS
    misroute: float = 0.0  # share of baseline-bound traffic that lands on the candidate
    latency: bool = True


def _weight_at(s: Scenario, j: int) -> float:
    return float(s.weights[j] if len(s.weights) > 1 else s.weights[0])


def simulate(s: Scenario, rng: np.random.Generator, name: str = "<simulated>") -> Snapshot:
    le = np.asarray(tuple(s.buckets), dtype=float)
    k = s.looks
    w = np.array([_weight_at(s, j) for j in range(k)]) / 100.0
    total = rng.poisson(s.rps * s.interval_s, k)
    n_c = rng.binomial(total, w)
    n_b = total - n_c
    if s.misroute > 0:
        moved = rng.binomial(n_b, s.misroute)
        n_b = n_b - moved
        n_c = n_c + moved
    mu = np.log(s.latency_median_s)
    le_out = (*(float(x) for x in le), float("inf"))
    per_variant = {}
    for name_v, n, ratio, shift in (("v1", n_b, 1.0, 0.0), ("v2", n_c, s.error_ratio, s.latency_shift)):
        errs = rng.binomial(n, min(1.0, s.error_rate * ratio))
        cdf = _norm_cdf((np.log(le) - mu - np.log1p(shift)) / s.latency_sigma)
        probs = np.clip(np.diff(np.concatenate([[0.0], cdf, [1.0]])), 0.0, 1.0)
        counts = rng.multinomial(n, probs / probs.sum())  # (K, B+1)
        mean = s.latency_median_s * (1.0 + shift) * np.exp(s.latency_sigma**2 / 2)
        cum_hist = np.cumsum(np.cumsum(counts, axis=0), axis=1).tolist()
        per_variant[name_v] = (np.cumsum(n).tolist(), np.cumsum(errs).tolist(), np.cumsum(n * mean).tolist(), cum_hist)
    looks = []
    for j in range(k):
        variants = {}
        for name_v, (req, err, sums, hist) in per_variant.items():
            h = Histogram(le_out, tuple(hist[j]), round(float(sums[j]), 6)) if s.latency else None
            variants[name_v] = VariantStats(int(req[j]), int(err[j]), h)
        weights = {"v1": 100.0 - _weight_at(s, j), "v2": _weight_at(s, j)}
        looks.append(Look(f"look-{j + 1}", weights, variants))
    return Snapshot("sim", "v1", "v2", "canary", tuple(looks), name)


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return np.asarray(ndtr(z), dtype=float)
