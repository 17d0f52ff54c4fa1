"""Absolute error-rate margins when the baseline has (almost) no errors.

A ratio test turns an absolute margin into a ratio of the baseline's estimated rate; with
zero baseline errors that ratio grows without bound and a clearly broken candidate could
never be rolled back on its errors. The engine also tests the difference of the two rates
with time-uniform confidence sequences; these tests pin both sides of that change."""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy import stats

from mlserve.manifest.analysis import analysis_spec
from mlserve.manifest.models import MetricSpec, RolloutPolicy
from mlserve.manifest.units import Margin
from mlserve.stats.engine import analyze
from mlserve.stats.sequential import log_beta_binomial_point, log_difference_above
from mlserve.stats.simulate import Scenario, simulate
from mlserve.stats.snapshot import Look, Snapshot, VariantStats

ERRORS_ONLY = RolloutPolicy(
    min_requests=100,
    metrics=[MetricSpec(name="error_rate", kind="error_rate", margin=Margin(0.005, False), critical=True)],
)


def _snapshot(looks: list[tuple[int, int, int, int]]) -> Snapshot:
    """(baseline requests, baseline errors, candidate requests, candidate errors) per look."""
    out = []
    for i, (nb, xb, nc, xc) in enumerate(looks):
        out.append(
            Look(
                at=f"2026-11-23T10:{i:02d}:00Z",
                weights={"v1": 80, "v2": 20},
                variants={
                    "v1": VariantStats(requests=nb, errors=xb),
                    "v2": VariantStats(requests=nc, errors=xc),
                },
            )
        )
    return Snapshot(endpoint="fraud", baseline="v1", candidate="v2", strategy="canary", looks=tuple(out))


def test_error_free_baseline_and_a_failing_candidate_is_rolled_back() -> None:
    rng = np.random.default_rng(7)
    looks, nb, xb, nc, xc = [], 0, 0, 0, 0
    for _ in range(20):
        nb += 400
        nc += 100
        xc += int(rng.binomial(100, 0.05))  # 5% errors; the baseline has none
        looks.append((nb, xb, nc, xc))
    verdict = analyze(_snapshot(looks), analysis_spec(ERRORS_ONLY))
    assert verdict.verdict == "rollback", verdict.reason
    assert verdict.decided_at_look is not None and verdict.decided_at_look <= 6


def test_confidence_sequence_covers_the_rate() -> None:
    # the point null at the true rate is rarely excluded (Ville: at most alpha, any time)
    rng = np.random.default_rng(3)
    misses = 0
    for _ in range(300):
        x = np.cumsum(rng.binomial(50, 0.02, size=40))
        n = np.arange(1, 41) * 50.0
        misses += bool(np.any(log_beta_binomial_point(x, n, np.array(0.02)) >= np.log(1 / 0.05)))
    assert misses <= stats.binom.ppf(0.999, 300, 0.05)


def test_difference_route_holds_alpha_at_the_margin() -> None:
    # the hardest null: the candidate exactly `margin` worse (1.0% -> 1.5%)
    reps, alpha = 250, ERRORS_ONLY.alpha
    scenario = Scenario(looks=50, rps=20, error_rate=0.01, error_ratio=1.5, latency=False)
    rng = np.random.default_rng(11)
    verdicts = Counter(analyze(simulate(scenario, rng), analysis_spec(ERRORS_ONLY)).verdict for _ in range(reps))
    assert verdicts["rollback"] <= stats.binom.ppf(0.999, reps, alpha)


def test_difference_evidence_needs_separation() -> None:
    same = log_difference_above(np.array([10.0]), np.array([1000.0]), np.array([10.0]), np.array([1000.0]), 0.005)
    assert same[0] == -np.inf
    apart = log_difference_above(np.array([40.0]), np.array([800.0]), np.array([0.0]), np.array([3000.0]), 0.005)
    assert 2 * np.exp(-apart[0]) < 1e-6
