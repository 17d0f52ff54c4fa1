"""The decision engine on seeded simulated rollouts with a known truth."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from mlserve.manifest.analysis import analysis_spec
from mlserve.manifest.models import MetricSpec, RolloutPolicy
from mlserve.manifest.units import Margin
from mlserve.stats.engine import analyze
from mlserve.stats.simulate import Scenario, geometric_buckets, simulate
from mlserve.stats.snapshot import Look, Snapshot, VariantStats

# The hardest null for false rollbacks: margins of zero, so an A/A candidate sits exactly
# on the boundary of "worse".
STRICT = RolloutPolicy(
    metrics=[
        MetricSpec(name="error_rate", kind="error_rate", margin=Margin(0.0, False), critical=True),
        MetricSpec(name="latency_p99", kind="latency", quantile=0.99, margin=Margin(0.0, True)),
    ]
)


def _false_rollbacks(reps: int, seed: int, scenario: Scenario) -> int:
    rng = np.random.default_rng(seed)
    verdicts = Counter(analyze(simulate(scenario, rng), analysis_spec(STRICT)).verdict for _ in range(reps))
    return verdicts["rollback"]


def _bound(reps: int, alpha: float) -> int:
    """A count that a rate of alpha exceeds with probability below 0.1%."""
    return int(stats.binom.ppf(0.999, reps, alpha))


def test_aa_false_rollback_at_most_alpha_over_50_looks() -> None:
    reps = 250
    scenario = Scenario(looks=50, rps=20)
    assert _false_rollbacks(reps, 101, scenario) <= _bound(reps, STRICT.alpha)


@pytest.mark.slow
def test_aa_false_rollback_at_most_alpha_many_replications() -> None:
    reps = 1500
    for i, scenario in enumerate(
        [
            Scenario(looks=50, rps=20, buckets=geometric_buckets()),
            Scenario(looks=50, rps=20, weights=[5] * 10 + [10] * 10 + [25] * 10 + [50] * 20),
        ]
    ):
        assert _false_rollbacks(reps, 202 + i, scenario) <= _bound(reps, STRICT.alpha)


def test_fixed_horizon_test_rerun_at_every_look_does_not_hold_alpha() -> None:
    """The contrast that motivates all this: a z-test re-run at each of 50 looks."""
    rng = np.random.default_rng(7)
    alarms = 0
    for _ in range(300):
        xb = rng.binomial(900, 0.01, 50).cumsum()
        xc = rng.binomial(100, 0.01, 50).cumsum()
        nb = 900 * np.arange(1, 51)
        nc = 100 * np.arange(1, 51)
        pooled = (xb + xc) / (nb + nc)
        se = np.sqrt(pooled * (1 - pooled) * (1 / nb + 1 / nc))
        z = np.where(se > 0, (xc / nc - xb / nb) / np.where(se > 0, se, 1), 0)
        alarms += bool((z > stats.norm.ppf(0.95)).any())
    assert alarms / 300 > 0.10


@pytest.mark.parametrize("seed", range(5))
def test_doubled_error_rate_at_ten_percent_is_rolled_back(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    # 1% baseline errors, 2% on the candidate: beyond the default 0.5-point margin
    v = analyze(simulate(Scenario(weights=(10.0,), error_ratio=2.0, rps=100), rng), analysis_spec(RolloutPolicy()))
    assert v.verdict == "rollback"
    err = next(m for m in v.metrics if m.name == "error_rate")
    assert err.verdict == "fail"
    assert v.decided_at_look is not None and v.decided_at_look <= 50
    assert "error_rate" in v.reason


@pytest.mark.parametrize("buckets", [None, geometric_buckets()], ids=["prometheus-buckets", "fine-buckets"])
def test_latency_shift_of_fifty_percent_is_rolled_back(buckets: tuple[float, ...] | None) -> None:
    rng = np.random.default_rng(2024)
    scenario = Scenario(latency_shift=0.5, rps=20)
    if buckets is not None:
        scenario = dataclasses.replace(scenario, buckets=buckets)
    v = analyze(simulate(scenario, rng), analysis_spec(RolloutPolicy()))
    assert v.verdict == "rollback"
    assert next(m for m in v.metrics if m.name == "latency_p99").verdict == "fail"


def test_harmless_candidate_with_enough_traffic_is_promoted() -> None:
    rng = np.random.default_rng(77)
    promoted = 0
    for _ in range(5):
        v = analyze(
            simulate(Scenario(rps=200, weights=(50.0,), buckets=geometric_buckets()), rng),
            analysis_spec(RolloutPolicy()),
        )
        promoted += v.verdict == "promote"
        if v.verdict == "promote":
            assert all(m.verdict == "pass" for m in v.metrics)
            assert min(v.requests.values()) >= RolloutPolicy().min_requests
    assert promoted >= 4


def test_broken_split_is_halted() -> None:
    rng = np.random.default_rng(8)
    v = analyze(simulate(Scenario(misroute=0.05, error_ratio=3.0), rng), analysis_spec(RolloutPolicy()))
    assert v.verdict == "halt"
    assert not v.srm.ok
    assert "split" in v.reason


def _without_candidate_traffic(snap: Snapshot, weight: float) -> Snapshot:
    looks = []
    for look in snap.looks:
        variants = dict(look.variants)
        variants["v2"] = VariantStats(0, 0, None)
        looks.append(Look(look.at, {"v1": 100 - weight, "v2": weight}, variants))
    return dataclasses.replace(snap, looks=tuple(looks))


@pytest.mark.parametrize("weight", [0.0, 10.0])
@pytest.mark.parametrize("on_inconclusive", ["promote", "hold", "rollback"])
def test_no_candidate_traffic_is_never_promoted(weight: float, on_inconclusive: str) -> None:
    rng = np.random.default_rng(9)
    snap = _without_candidate_traffic(simulate(Scenario(looks=10), rng), weight)
    policy = RolloutPolicy(on_inconclusive=on_inconclusive, min_requests=0)  # type: ignore[arg-type]
    for final in (False, True):
        v = analyze(snap, analysis_spec(policy), final=final)
        assert v.verdict != "promote"
        if weight > 0:
            assert v.verdict == "halt"  # configured traffic that never arrived: a broken split
        else:
            assert all(m.verdict == "no_data" for m in v.metrics)


def test_missing_latency_is_no_data_and_blocks_promotion() -> None:
    rng = np.random.default_rng(10)
    snap = simulate(Scenario(rps=200, weights=(50.0,), latency=False), rng)
    policy = RolloutPolicy(on_inconclusive="promote")
    v = analyze(snap, analysis_spec(policy), final=True)
    assert v.verdict != "promote"
    lat = next(m for m in v.metrics if m.name == "latency_p99")
    assert lat.verdict == "no_data"
    assert "never promotes on missing data" in v.reason


def test_final_applies_on_inconclusive_at_the_last_look() -> None:
    rng = np.random.default_rng(12)
    snap = simulate(Scenario(looks=3, rps=5), rng)
    assert analyze(snap, analysis_spec(RolloutPolicy())).verdict == "continue"
    v = analyze(snap, analysis_spec(RolloutPolicy(on_inconclusive="rollback")), final=True)
    assert (v.verdict, v.decided_at_look) == ("rollback", 3)
    assert analyze(snap, analysis_spec(RolloutPolicy(on_inconclusive="hold")), final=True).verdict == "continue"


def test_first_decisive_look_wins_and_replay_is_prefix_consistent() -> None:
    """Cutting the snapshot at the decided look gives the same decision at that look."""
    rng = np.random.default_rng(13)
    snap = simulate(Scenario(error_ratio=3.0, rps=20), rng)
    v = analyze(snap, analysis_spec(RolloutPolicy()))
    assert v.verdict == "rollback" and v.decided_at_look is not None
    cut = dataclasses.replace(snap, looks=snap.looks[: v.decided_at_look])
    w = analyze(cut, analysis_spec(RolloutPolicy()))
    assert (w.verdict, w.decided_at_look) == (v.verdict, v.decided_at_look)
    if v.decided_at_look > 1:
        before = dataclasses.replace(snap, looks=snap.looks[: v.decided_at_look - 1])
        assert analyze(before, analysis_spec(RolloutPolicy())).verdict == "continue"


def test_ratio_metric_higher_is_better_detects_a_drop() -> None:
    rng = np.random.default_rng(14)
    base = simulate(Scenario(looks=20, rps=50, latency=False), rng)
    looks = []
    from mlserve.stats.snapshot import Ratio

    conv_b = conv_c = 0
    for look in base.looks:
        vb, vc = look.variants["v1"], look.variants["v2"]
        prev_b = looks[-1].variants["v1"].custom["conversions"].denominator if looks else 0
        prev_c = looks[-1].variants["v2"].custom["conversions"].denominator if looks else 0
        conv_b += rng.binomial(int(vb.requests - prev_b), 0.10)
        conv_c += rng.binomial(int(vc.requests - prev_c), 0.05)  # the candidate converts half as well
        variants = {
            "v1": dataclasses.replace(vb, custom={"conversions": Ratio(conv_b, vb.requests)}),
            "v2": dataclasses.replace(vc, custom={"conversions": Ratio(conv_c, vc.requests)}),
        }
        looks.append(Look(look.at, look.weights, variants))
    snap = dataclasses.replace(base, looks=tuple(looks))
    policy = RolloutPolicy(
        metrics=[MetricSpec(name="conversions", kind="ratio", direction="higher", margin=Margin(0.1, True))]
    )
    v = analyze(snap, analysis_spec(policy))
    assert v.verdict == "rollback"
    m = v.metrics[0]
    assert m.estimate is not None and m.estimate < -0.3
    lo, hi = m.ci
    assert lo is not None and hi is not None and lo < m.estimate < hi


def test_json_shape_of_a_verdict() -> None:
    rng = np.random.default_rng(15)
    d = analyze(simulate(Scenario(looks=5), rng), analysis_spec(RolloutPolicy())).to_dict()
    assert {"snapshot", "verdict", "decided_at_look", "reason", "srm", "metrics"} <= set(d)
    assert set(d["srm"]) >= {"p_value", "ok"}
    for m in d["metrics"]:
        assert {"name", "verdict", "estimate", "ci", "p_value"} <= set(m)
        assert m["verdict"] in ("pass", "fail", "inconclusive", "no_data")
        assert len(m["ci"]) == 2
