"""LLM metric kinds: the histogram mirror, the snapshot field, and the engine's verdicts on
seeded simulated rollouts with a known truth (A/A false rollbacks at most alpha; slower first
tokens, slower generation and broken streams rolled back)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from scipy import stats

from mlserve.local.openai_proxy import RATE_BUCKETS, TIME_BUCKETS
from mlserve.manifest.analysis import analysis_spec
from mlserve.manifest.models import MetricSpec, RolloutPolicy
from mlserve.manifest.units import Margin
from mlserve.stats.engine import analyze
from mlserve.stats.llm import mirror
from mlserve.stats.snapshot import Histogram, LlmStats, VariantStats, parse_snapshot, stack
from mlserve.stats.spec import AnalysisSpec


def _cum(samples: np.ndarray, le: tuple[float, ...]) -> list[int]:
    bounds = np.asarray(le, dtype=float)
    return [int(np.sum(samples <= b)) for b in bounds] + [int(samples.size)]


def test_mirror_is_the_histogram_of_the_reciprocal_at_every_bound() -> None:
    rng = np.random.default_rng(1)
    x = rng.lognormal(np.log(80.0), 0.4, 5000)  # tokens per second
    le = (*RATE_BUCKETS, math.inf)
    y_le, y_cum = mirror(le, np.array([_cum(x, RATE_BUCKETS)], dtype=float))
    direct = [int(np.sum(1.0 / x <= b)) for b in y_le[:-1]] + [x.size]
    assert y_cum[0].tolist() == direct
    assert list(y_le[:-1]) == sorted(y_le[:-1]) and math.isinf(y_le[-1])


def _look(
    rng: np.random.Generator, n_b: int, n_c: int, shift: dict[str, float], fail: tuple[float, float], wave: float = 0.0
) -> Any:
    """One interval of traffic: per request TTFT (log-normal), tokens/s (log-normal), TPOT.
    ``wave``: the spread of a load factor shared by both variants in this interval (a busy
    machine slows every request of the interval together: dependent observations)."""
    out = {}
    load = float(np.exp(rng.normal(0.0, wave))) if wave else 1.0
    for name, n, sign in (("v1", n_b, 0.0), ("v2", n_c, 1.0)):
        ttft = rng.lognormal(np.log(0.05), 0.35, n) * (1 + sign * shift.get("ttft", 0.0)) * load
        rate = rng.lognormal(np.log(60.0), 0.3, n) * (1 - sign * shift.get("rate", 0.0)) / load
        tpot = 1.0 / rng.lognormal(np.log(70.0), 0.3, n) * (1 + sign * shift.get("tpot", 0.0))
        failed = int(rng.binomial(n, fail[int(sign)]))
        out[name] = {"ttft": ttft, "rate": rate, "tpot": tpot, "n": n, "failed": failed}
    return out


def _snapshot(
    looks: int,
    seed: int,
    shift: dict[str, float] | None = None,
    fail: tuple[float, float] = (0.0, 0.0),
    per_look: int = 60,
    wave: float = 0.0,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    acc: dict[str, dict[str, list[np.ndarray]]] = {v: {"ttft": [], "rate": [], "tpot": []} for v in ("v1", "v2")}
    counts = {v: {"n": 0, "failed": 0} for v in ("v1", "v2")}
    doc_looks = []
    for j in range(looks):
        got = _look(rng, per_look, per_look, shift or {}, fail, wave)
        variants = {}
        for v in ("v1", "v2"):
            for k in ("ttft", "rate", "tpot"):
                acc[v][k].append(got[v][k])
            counts[v]["n"] += got[v]["n"]
            counts[v]["failed"] += got[v]["failed"]
            ttft = np.concatenate(acc[v]["ttft"])
            rate = np.concatenate(acc[v]["rate"])
            tpot = np.concatenate(acc[v]["tpot"])
            n = counts[v]["n"]
            variants[v] = {
                "requests": n,
                "errors": 0,
                "llm": {
                    "ttft_seconds": {"le": [*TIME_BUCKETS, "+Inf"], "counts": _cum(ttft, TIME_BUCKETS)},
                    "time_per_output_token_seconds": {
                        "le": [*TIME_BUCKETS, "+Inf"],
                        "counts": _cum(tpot, TIME_BUCKETS),
                    },
                    "tokens_per_second": {"le": [*RATE_BUCKETS, "+Inf"], "counts": _cum(rate, RATE_BUCKETS)},
                    "streams": n,
                    "streams_failed": counts[v]["failed"],
                    "generation_tokens": 16 * n,
                },
            }
        doc_looks.append({"at": f"look-{j + 1}", "weights": {"v1": 50, "v2": 50}, "variants": variants})
    return {
        "format": "mlserve.snapshot/v1",
        "baseline": "v1",
        "candidate": "v2",
        "strategy": "canary",
        "looks": doc_looks,
    }


def _policy(kind: str, margin: Margin, quantile: float | None = None, min_requests: int = 200) -> AnalysisSpec:
    return analysis_spec(
        RolloutPolicy(
            min_requests=min_requests,
            metrics=[MetricSpec(name=kind, kind=kind, quantile=quantile, margin=margin)],  # type: ignore[arg-type]
        )
    )


TTFT = _policy("ttft", Margin(0.2, True), 0.9)
RATE = _policy("tokens_per_second", Margin(0.2, True), 0.1)
TPOT = _policy("inter_token", Margin(0.2, True), 0.9)
STREAMS = _policy("stream_errors", Margin(0.01, False))


UNITS = pytest.mark.parametrize("unit", ["request", "interval"])  # the analysis' test unit


def _unit(spec: AnalysisSpec, unit: str, looks: int) -> AnalysisSpec:
    return replace(spec, test_unit=unit, horizon=float(looks))  # type: ignore[arg-type]


@UNITS
@pytest.mark.parametrize(
    ("policy", "shift", "fail"),
    [
        (TTFT, {"ttft": 0.6}, (0.0, 0.0)),
        (RATE, {"rate": 0.45}, (0.0, 0.0)),
        (TPOT, {"tpot": 0.6}, (0.0, 0.0)),
        (STREAMS, {}, (0.0, 0.08)),
    ],
    ids=["ttft", "tokens_per_second", "inter_token", "stream_errors"],
)
def test_a_worse_candidate_is_rolled_back(
    policy: AnalysisSpec, shift: dict[str, float], fail: tuple[float, float], unit: str
) -> None:
    verdict = analyze(parse_snapshot(_snapshot(10, 7, shift, fail)), _unit(policy, unit, 10))
    assert verdict.verdict == "rollback", verdict.reason
    assert verdict.metrics[0].verdict == "fail"


@UNITS
@pytest.mark.parametrize(
    "policy", [TTFT, RATE, TPOT, STREAMS], ids=["ttft", "tokens_per_second", "inter_token", "stream_errors"]
)
def test_an_identical_candidate_is_promoted(policy: AnalysisSpec, unit: str) -> None:
    verdict = analyze(parse_snapshot(_snapshot(20, 11)), _unit(policy, unit, 20))
    assert verdict.verdict == "promote", verdict.reason


def test_tokens_per_second_is_reported_in_tokens_per_second_higher_is_better() -> None:
    verdict = analyze(parse_snapshot(_snapshot(10, 3, {"rate": 0.45})), RATE)
    m = verdict.metrics[0].to_dict()
    assert m["unit"] == "tokens/s" and m["better"] == "higher"
    # the baseline's slow tenth runs near 60 * exp(-1.2816 * 0.3) = 41 tokens/s; v2 is 45% slower
    assert 35 < m["baseline"] < 48 and m["candidate"] < m["baseline"] * 0.7
    assert m["estimate"] < -0.3


def test_no_llm_field_holds() -> None:
    doc = _snapshot(3, 1)
    for look in doc["looks"]:
        for v in look["variants"].values():
            del v["llm"]
    verdict = analyze(parse_snapshot(doc), TTFT, final=False)
    assert verdict.verdict == "continue" and verdict.metrics[0].verdict == "no_data"


@pytest.mark.slow
def test_aa_false_rollbacks_at_most_alpha_with_zero_margins() -> None:
    """The hardest null: margins of zero, 20 looks, 120 A/A rollouts per kind (about a minute),
    and for TTFT also under load waves: each interval's requests of both variants slowed by a
    shared log-normal factor (spread 0.5), the dependence of a busy shared machine."""
    reps = 120
    bound = int(stats.binom.ppf(0.999, reps, 0.05))
    for kind, q, wave in (("ttft", 0.9, 0.0), ("tokens_per_second", 0.1, 0.0), ("ttft", 0.9, 0.5)):
        policy = _policy(kind, Margin(0.0, True), q, min_requests=10**9)
        verdicts = Counter(
            analyze(parse_snapshot(_snapshot(20, 1000 + i, per_look=40, wave=wave)), policy).verdict
            for i in range(reps)
        )
        assert verdicts["rollback"] <= bound, (kind, wave, verdicts)


def test_snapshot_llm_field_is_checked() -> None:
    doc = _snapshot(2, 1)
    doc["looks"][1]["variants"]["v2"]["llm"]["streams_failed"] = 10**6
    from mlserve.errors import UsageError

    with pytest.raises(UsageError, match=r"looks\[2\]\.variants\.v2\.llm\.streams_failed"):
        parse_snapshot(doc)
    doc = _snapshot(2, 1)
    hist = doc["looks"][1]["variants"]["v1"]["llm"]["ttft_seconds"]
    hist["counts"] = [0] * len(hist["counts"])
    with pytest.raises(UsageError, match=r"looks\[2\]\.variants\.v1\.llm\.ttft_seconds\.counts\[\d+\]: decreased"):
        parse_snapshot(doc)


def test_stacking_adds_token_stream_histograms_and_counts() -> None:
    """A step's ``llm`` field on the totals of the steps before it (the run's cumulative snapshot)."""
    le = (0.1, math.inf)
    a = VariantStats(2, 0, llm=LlmStats({"ttft_seconds": Histogram(le, (1, 2), 0.1)}, {"streams": 2}))
    b = VariantStats(
        5, 0, llm=LlmStats({"ttft_seconds": Histogram(le, (3, 5), 0.4)}, {"streams": 5, "streams_failed": 1})
    )
    assert stack(a, b).to_dict()["llm"] == {
        "ttft_seconds": {"le": [0.1, "+Inf"], "counts": [4, 7], "sum": 0.5},
        "streams": 7,
        "streams_failed": 1,
    }
    # bounds that changed restart from the later step's histogram; no llm field above: none carried
    moved = VariantStats(1, 0, llm=LlmStats({"ttft_seconds": Histogram((0.2, math.inf), (1, 1), 0.2)}, {}))
    assert stack(a, moved).to_dict()["llm"]["ttft_seconds"]["counts"] == [1, 1]
    assert stack(a, VariantStats(1, 0)).llm is None


def test_power_plan_covers_the_llm_kinds() -> None:
    from mlserve.stats.power import plan

    policy = RolloutPolicy(
        steps=[50, 100],
        metrics=[
            MetricSpec(name="stream_errors", kind="stream_errors", margin=Margin(0.01, False)),
            MetricSpec(name="ttft_p90", kind="ttft", quantile=0.9, margin=Margin(0.1, True)),
            MetricSpec(name="rate_p10", kind="tokens_per_second", quantile=0.1, margin=Margin(0.1, True)),
        ],
    )
    got = plan(analysis_spec(policy), steps=policy.steps, rps=10.0, error_rate=0.01, latency_shift=0.5)
    kinds = {m.kind: m for m in got.steps[0].metrics}
    assert set(kinds) == {"stream_errors", "ttft", "tokens_per_second"}
    assert kinds["ttft"].seconds is not None and kinds["ttft"].seconds > 0
    assert kinds["tokens_per_second"].promote_seconds is not None
