"""The metric-kind registry: the engine dispatches through it, and the manifest accepts
exactly the kinds it holds."""

from __future__ import annotations

import typing
from dataclasses import replace

import numpy as np
import pytest

from mlserve.manifest.analysis import analysis_spec
from mlserve.manifest.models import MetricKind, RolloutPolicy
from mlserve.stats import kinds
from mlserve.stats.engine import analyze
from mlserve.stats.evidence import Track, no_summary
from mlserve.stats.simulate import Scenario, simulate
from mlserve.stats.spec import Margin, MetricSpec


def test_the_manifest_accepts_exactly_the_registered_kinds() -> None:
    assert set(typing.get_args(MetricKind)) == set(kinds.KINDS) == {
        "error_rate", "ratio", "latency", "prediction", "ttft", "inter_token", "tokens_per_second", "stream_errors",
    }  # fmt: skip


def test_the_manifest_s_kind_groups_agree_with_the_registry() -> None:
    """The manifest keeps its own lists (it must not import numpy at every CLI start): the
    kinds at a quantile are the ones compared on histograms, and the LLM kinds are exactly
    those read from token streams, none of which applies to mirrored traffic."""
    from mlserve.manifest.models import LLM_KINDS, QUANTILE_KINDS

    assert {n for n, k in kinds.KINDS.items() if k.planned_as == "latency"} == set(QUANTILE_KINDS)
    assert (
        set(LLM_KINDS)
        == set(kinds.token_stream_kinds())
        == {"ttft", "inter_token", "tokens_per_second", "stream_errors"}
    )
    assert not set(LLM_KINDS) & set(kinds.shadow_kinds())


def test_shadow_compares_only_kinds_that_mean_something_for_mirrored_traffic() -> None:
    assert set(kinds.shadow_kinds()) == {"error_rate", "latency"}


class _Recording:
    """A kind that always shows harm, and records what the engine gave it."""

    name = "always_worse"
    unit = "per unit"
    shadow = False

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def track(self, spec: MetricSpec, data: kinds.LookData, alpha: float) -> Track:
        self.seen.append((spec.name, data.looks))
        k = data.looks
        return Track(spec, np.ones(k, dtype=bool), np.full(k, 1e-9), np.ones(k), no_summary)

    def better(self, spec: MetricSpec) -> str:
        return "lower"


def test_the_engine_dispatches_every_metric_through_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _Recording()
    monkeypatch.setitem(kinds.KINDS, fake.name, fake)
    spec = analysis_spec(RolloutPolicy())
    spec = replace(spec, metrics=(*spec.metrics, MetricSpec("harm", "always_worse", Margin(0.1, True), critical=True)))
    snap = simulate(Scenario(looks=6), np.random.default_rng(3))
    v = analyze(snap, spec)
    assert fake.seen == [("harm", 6)]
    assert v.verdict == "rollback" and v.decided_at_look == 1
    harm = next(m for m in v.metrics if m.name == "harm")
    assert harm.verdict == "fail" and harm.kind == "always_worse"


def test_an_unknown_kind_is_a_clear_error() -> None:
    from mlserve.errors import UsageError

    spec = replace(analysis_spec(RolloutPolicy()), metrics=(MetricSpec("x", "nope"),))
    with pytest.raises(
        UsageError,
        match=r"metric 'x': unknown kind 'nope' \(known: error_rate, inter_token, latency, prediction, ratio, "
        r"stream_errors, tokens_per_second, ttft\)",
    ):
        analyze(simulate(Scenario(looks=2), np.random.default_rng(1)), spec)


def test_allow_promote_is_an_argument_and_harm_first_needs_one_pass() -> None:
    """A harmless candidate promotes at its first decisive look; with promotion not allowed
    the same snapshot continues (and names the real minimum); and when the step waited,
    harm found after an earlier promote wins, from the same single pass."""
    from mlserve.stats.snapshot import Look, VariantStats

    spec = analysis_spec(RolloutPolicy(min_requests=50))
    spec = replace(spec, metrics=spec.metrics[:1])  # error_rate only
    good = simulate(Scenario(looks=20, rps=50, weights=(50.0,), latency=False), np.random.default_rng(11))
    free = analyze(good, spec)
    assert free.verdict == "promote" and free.decided_at_look is not None and free.decided_at_look < 20
    held = analyze(good, spec, allow_promote=False)
    assert held.verdict == "continue" and held.decided_at_look is None
    assert "1,000,000,000,000,000" not in held.reason
    last = good.looks[-1]
    worse = tuple(
        Look(
            f"later-{i}",
            last.weights,
            {
                v: VariantStats(s.requests + 2000 * i, s.errors + (400 * i if v == "v2" else 0))
                for v, s in last.variants.items()
            },
        )
        for i in range(1, 6)
    )
    snap = replace(good, looks=(*good.looks, *worse))
    assert analyze(snap, spec).verdict == "promote"  # a replay: the first decisive look wins
    waited = analyze(snap, spec, harm_first=True)
    assert waited.verdict == "rollback" and waited.decided_at_look is not None and waited.decided_at_look > 20
