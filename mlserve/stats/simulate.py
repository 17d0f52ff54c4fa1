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
    edges = np.log(le)
    mu = np.log(s.latency_median_s)
    nb_buckets = len(le) + 1
    cum = {"v1": np.zeros(4 + nb_buckets), "v2": np.zeros(4 + nb_buckets)}  # req, err, sum, pad, buckets
    looks = []
    for j in range(s.looks):
        w = _weight_at(s, j) / 100.0
        total = rng.poisson(s.rps * s.interval_s)
        n_c = rng.binomial(total, w)
        n_b = total - n_c
        if s.misroute > 0:
            moved = rng.binomial(n_b, s.misroute)
            n_b -= moved
            n_c += moved
        for name_v, n, ratio, shift in (("v1", n_b, 1.0, 0.0), ("v2", n_c, s.error_ratio, s.latency_shift)):
            errs = rng.binomial(n, min(1.0, s.error_rate * ratio))
            probs = np.diff(np.concatenate([[0.0], _norm_cdf((edges - mu - np.log1p(shift)) / s.latency_sigma), [1.0]]))
            counts = rng.multinomial(n, np.clip(probs, 0.0, 1.0) / np.clip(probs, 0.0, 1.0).sum())
            mean = s.latency_median_s * (1.0 + shift) * np.exp(s.latency_sigma**2 / 2)
            c = cum[name_v]
            c[0] += n
            c[1] += errs
            c[2] += n * mean
            c[4:] += counts
        variants = {}
        for name_v in ("v1", "v2"):
            c = cum[name_v]
            hist = None
            if s.latency:
                hist = Histogram(
                    (*(float(x) for x in le), float("inf")),
                    tuple(int(x) for x in np.cumsum(c[4:])),
                    round(float(c[2]), 6),
                )
            variants[name_v] = VariantStats(int(c[0]), int(c[1]), hist)
        weights = {"v1": 100.0 - _weight_at(s, j), "v2": _weight_at(s, j)}
        looks.append(Look(f"look-{j + 1}", weights, variants))
    return Snapshot("sim", "v1", "v2", "canary", tuple(looks), name)


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return np.asarray(ndtr(z), dtype=float)
