"""The gateway's fine latency buckets: bounds a few percent apart, one bisect per observation."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlserve.metrics.buckets import LATENCY_BUCKETS, FineHistogram, latency_buckets


def test_bounds_are_three_percent_apart_from_half_a_millisecond_to_thirty_seconds() -> None:
    b = np.array(LATENCY_BUCKETS)
    assert b[0] == 0.0005 and b[-1] >= 30.0
    ratios = b[1:] / b[:-1]
    assert ratios.max() < 1.031 and ratios.min() > 1.029
    assert len(latency_buckets(ratio=1.1)) < len(LATENCY_BUCKETS)


def test_exported_buckets_are_the_cumulative_counts_of_a_linear_scan() -> None:
    rng = np.random.default_rng(3)
    xs = np.concatenate([rng.lognormal(np.log(0.02), 0.6, 5000), [0.0, 0.0005, 40.0, 1e-9]])
    reg = CollectorRegistry()
    hist = FineHistogram("t_seconds", "test", ("endpoint", "variant"))
    reg.register(hist)
    hist.labels("e", "idle")  # a label set with no observation exports zeros
    for x in xs:
        hist.observe(("e", "v1"), float(x))
    fams = {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}
    samples = [s for s in fams["t_seconds"].samples if s.labels.get("variant") == "v1"]
    buckets = {float(s.labels["le"]): s.value for s in samples if s.name == "t_seconds_bucket"}
    for le in (0.0005, 0.01, 0.0203, 0.1, 30.0):
        bound = min(b for b in buckets if b >= le)
        assert buckets[bound] == int((xs <= bound).sum()), bound
    assert buckets[float("inf")] == len(xs)
    count = next(s.value for s in samples if s.name == "t_seconds_count")
    total = next(s.value for s in samples if s.name == "t_seconds_sum")
    assert count == len(xs) and abs(total - xs.sum()) < 1e-6
    idle = [s for s in fams["t_seconds"].samples if s.labels.get("variant") == "idle" and s.name.endswith("_count")]
    assert idle and idle[0].value == 0
