"""The prediction gate (metric kind "prediction"): simulated Bernoulli prediction streams with a
known truth, the engine on snapshots built from them, and the manifest's checks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mlserve.errors import ManifestError
from mlserve.manifest.analysis import analysis_spec
from mlserve.manifest.models import MetricSpec, RolloutPolicy
from mlserve.manifest.units import Margin
from mlserve.project import load_project
from mlserve.rollout import service
from mlserve.rollout.service import RolloutResult
from mlserve.stats.engine import analyze
from mlserve.stats.evidence import Counts, PerInterval, PerRequest
from mlserve.stats.prediction import PredictionEvidence, prediction_evidence
from mlserve.stats.snapshot import Look, Ratio, Snapshot, VariantStats
from mlserve.stats.spec import AnalysisSpec
from mlserve.stats.spec import MetricSpec as GateSpec
from tests.support.policy import FAST, set_policy
from tests.support.sim import Clock, FakeRouter, Sim, opener

ALPHA = 0.05
MARGIN = 0.25


def stream(
    rng: np.random.Generator, p_b: float, p_c: float, looks: int = 50, per_look: int = 200
) -> tuple[np.ndarray, ...]:
    """Cumulative positives and predictions per look for both arms, as Bernoulli draws."""
    n = np.full(looks, per_look)
    return (
        rng.binomial(n, p_b).cumsum(),
        n.cumsum().astype(float),
        rng.binomial(n, p_c).cumsum(),
        n.cumsum().astype(float),
    )


def evidence(b: np.ndarray, nb: np.ndarray, c: np.ndarray, nc: np.ndarray, margin: float) -> PredictionEvidence:
    """The gate's evidence per request (the default test unit) on cumulative counts per look."""
    spec = GateSpec("positives", "prediction", Margin(margin, True), critical=True)
    counts = Counts(b, nb, c, nc, "positives/prediction")
    return prediction_evidence(spec, np.ones(len(b), dtype=bool), counts, np.full(len(b), 0.5), PerRequest(ALPHA))


def interval_evidence(b: np.ndarray, nb: np.ndarray, c: np.ndarray, nc: np.ndarray) -> PredictionEvidence:
    """The same gate with intervals as the test unit (one bet per look, stakes for 50 looks)."""
    spec = GateSpec("positives", "prediction", Margin(MARGIN, True), critical=True)
    unit = PerInterval.for_spec(AnalysisSpec(metrics=(spec,), test_unit="interval", horizon=50.0))
    counts = Counts(b, nb, c, nc, "positives/prediction")
    return prediction_evidence(spec, np.ones(len(b), dtype=bool), counts, np.full(len(b), 0.5), unit)


def _bound(reps: int, alpha: float) -> int:
    return int(stats.binom.ppf(0.999, reps, alpha))


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_false_rollbacks_stay_below_alpha_on_the_margin_over_50_looks(share: float) -> None:
    """The hardest null for "fail": the candidate flags exactly (1 + margin) times as often."""
    rng = np.random.default_rng(17)
    reps = 400
    fails = 0
    for _ in range(reps):
        b, nb, c, nc = stream(rng, share / (1 + MARGIN) ** 0.5, share * (1 + MARGIN) ** 0.5)
        fails += bool((evidence(b, nb, c, nc, MARGIN).p_fail <= ALPHA).any())
    assert fails <= _bound(reps, ALPHA), fails


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_per_interval_false_rollbacks_stay_below_alpha_on_the_margin(share: float) -> None:
    """test_unit = "interval": the gate is built on the unit's count evidence, so it keeps alpha there too."""
    rng = np.random.default_rng(17)
    reps = 200
    fails = 0
    for _ in range(reps):
        b, nb, c, nc = stream(rng, share / (1 + MARGIN) ** 0.5, share * (1 + MARGIN) ** 0.5)
        fails += bool((interval_evidence(b, nb, c, nc).p_fail <= ALPHA).any())
    assert fails <= _bound(reps, ALPHA), fails


def test_identical_models_are_shown_equivalent_and_never_failed() -> None:
    rng = np.random.default_rng(3)
    reps, passed, failed = 300, 0, 0
    for _ in range(reps):
        ev = evidence(*stream(rng, 0.1, 0.1), MARGIN)
        failed += bool((ev.p_fail <= ALPHA).any())
        passed += bool(ev.p_pass[-1] <= ALPHA)
    assert failed <= _bound(reps, ALPHA / 10)
    # "within 25%" of a 10% share takes about 10,000 predictions per arm (1,000 positives):
    # 269 of these 300 streams (90%) showed it by then
    assert passed / reps > 0.85


@pytest.mark.parametrize(("p_c", "side"), [(0.2, "up"), (0.05, "down")])
def test_twice_or_half_as_many_positives_are_caught_within_a_few_looks(p_c: float, side: str) -> None:
    rng = np.random.default_rng(5)
    looks_needed = []
    for _ in range(200):
        ev = evidence(*stream(rng, 0.1, p_c), MARGIN)
        hits = np.flatnonzero(ev.p_fail <= ALPHA)
        looks_needed.append(hits[0] + 1 if hits.size else 99)
        assert (ev.up if side == "up" else ev.down).p_fail[-1] <= ALPHA
    assert np.median(looks_needed) <= 8 and max(looks_needed) <= 50  # 200 predictions per look


def _snapshot(p_b: float, p_c: float, seed: int = 1, looks: int = 12) -> Snapshot:
    rng = np.random.default_rng(seed)
    b, nb, c, nc = stream(rng, p_b, p_c, looks=looks, per_look=400)
    out = []
    for k in range(looks):
        req = int(nb[k])
        out.append(
            Look(
                at=f"2026-01-01T00:{k:02d}:00Z",
                weights={"v1": 50, "v2": 50},
                variants={
                    "v1": VariantStats(req, 0, None, {"positives": Ratio(float(b[k]), float(nb[k]))}),
                    "v2": VariantStats(req, 0, None, {"positives": Ratio(float(c[k]), float(nc[k]))}),
                },
            )
        )
    return Snapshot("fraud", "v1", "v2", "canary", tuple(out))


POLICY = analysis_spec(
    RolloutPolicy(
        min_requests=1000,
        metrics=[
            MetricSpec(name="error_rate", kind="error_rate", margin=Margin(0.01, False), critical=True),
            MetricSpec(name="positives", kind="prediction", margin=Margin(MARGIN, True), critical=True),
        ],
    )
)


def test_engine_rolls_back_a_candidate_flagging_twice_as_often() -> None:
    v = analyze(_snapshot(0.1, 0.2), POLICY)
    assert v.verdict == "rollback" and v.exit_code == 3
    m = next(m for m in v.metrics if m.name == "positives")
    assert m.verdict == "fail" and m.better == "equal"
    assert m.baseline == pytest.approx(0.1, abs=0.03) and m.candidate == pytest.approx(0.2, abs=0.04)
    assert "positives (critical): 2" in v.reason and "worse by more than the 25% margin" in v.reason


def test_engine_promotes_an_identical_candidate() -> None:
    v = analyze(_snapshot(0.1, 0.1, seed=2, looks=40), POLICY)
    assert v.verdict == "promote", v.reason
    assert next(m for m in v.metrics if m.name == "positives").verdict == "pass"


def test_per_interval_the_engine_rolls_back_twice_as_many_positives_and_promotes_identical() -> None:
    spec = replace(POLICY, test_unit="interval", horizon=40.0)
    v = analyze(_snapshot(0.1, 0.2, looks=40), spec)
    assert v.verdict == "rollback" and v.decided_at_look is not None and v.decided_at_look <= 20, v.reason
    m = next(m for m in v.metrics if m.name == "positives")
    assert m.verdict == "fail" and "interval test" in m.note
    same = analyze(_snapshot(0.1, 0.1, seed=2, looks=40), spec)
    assert same.verdict == "promote", same.reason


def test_no_predictions_is_never_a_pass() -> None:
    snap = _snapshot(0.1, 0.1)
    looks = tuple(
        Look(lk.at, lk.weights, {k: VariantStats(s.requests, 0) for k, s in lk.variants.items()}) for lk in snap.looks
    )
    v = analyze(Snapshot("fraud", "v1", "v2", "canary", looks), POLICY)
    assert v.verdict == "continue" and next(m for m in v.metrics if m.name == "positives").verdict == "no_data"


def test_manifest_checks_of_the_prediction_kind(project: Path) -> None:
    import tomlkit

    from mlserve.manifest import load_manifest

    path = project / "mlserve.toml"
    original = path.read_text()

    def write(margin: str, monitoring: bool) -> None:
        doc = tomlkit.parse(original)
        fraud = doc["endpoints"]["fraud"]  # type: ignore[index]
        if not monitoring:
            del fraud["monitoring"]  # type: ignore[union-attr]
        gate = tomlkit.table()
        gate.update({"name": "positives", "kind": "prediction", "margin": margin})
        fraud["rollout"]["metrics"].append(gate)  # type: ignore[index,union-attr]
        path.write_text(tomlkit.dumps(doc))

    write("25%", monitoring=False)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert "endpoints.fraud.rollout.metrics[2].kind: kind = 'prediction' counts the predictions" in str(err.value)
    write("0%", monitoring=True)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert "endpoints.fraud.rollout.metrics[2].margin: kind = 'prediction' needs a relative margin" in str(err.value)
    write("25%", monitoring=True)
    assert load_manifest(path).endpoints["fraud"].rollout.metrics[2].kind == "prediction"


def test_a_look_reads_prediction_counts_into_the_snapshot() -> None:
    from mlserve.metrics import MetricsUnavailable, collect_look
    from mlserve.metrics.predictions import prediction_selector
    from tests.metrics.test_queries import FakeProm, R, _req

    P = "mlserve_predictions_total|"
    start = {R + "variant=v1,code=200": 0.0, R + "variant=v2,code=200": 0.0, P + "variant=v1,class=positive": 7.0}
    later = {
        R + "variant=v1,code=200": 900.0,
        R + "variant=v2,code=200": 100.0,
        P + "variant=v1,class=positive": 97.0,
        P + "variant=v1,class=negative": 810.0,
        P + "variant=v2,class=positive": 20.0,
        P + "variant=v2,class=negative": 80.0,
    }
    look = collect_look(FakeProm(start, later), _req(predictions=("positives",))).look
    assert look["variants"]["v1"]["custom"] == {"positives": {"numerator": 90, "denominator": 900}}
    assert look["variants"]["v2"]["custom"] == {"positives": {"numerator": 20, "denominator": 100}}
    assert prediction_selector("istio", "fraud", "v2", "ml") == (
        'mlserve_predictions_total{namespace="ml",endpoint="fraud",variant="v2"}'
    )
    no_preds = {k: v for k, v in later.items() if not k.startswith(P)}
    with pytest.raises(MetricsUnavailable, match="no data for the predictions of fraud/v1"):
        collect_look(FakeProm(start, no_preds), _req(predictions=("positives",)))


def _canary(project: Path, positives: dict[str, float], strategy: str = "canary") -> tuple[RolloutResult, Sim]:
    """A rollout on the simulated target through the real state machine and rollout service,
    with the prediction gate in the policy."""
    gate = {"name": "positives", "kind": "prediction", "margin": "25%", "critical": True}
    set_policy(project, **{**FAST, "strategy": strategy, "metrics": [*FAST["metrics"], gate]})
    clock, sim = Clock(), Sim(rate=1000.0, positives=positives)
    service.start(load_project(project), "fraud", "v2", clock=clock)
    res = service.run_to_end(
        load_project(project), "fraud", opener=opener(sim, FakeRouter()), clock=clock, sleep=clock.sleep
    )
    return res, sim


def test_the_state_machine_rolls_back_a_canary_flagging_twice_as_often(project: Path) -> None:
    res, sim = _canary(project, {"v1": 0.1, "v2": 0.2})
    rec = res.record
    assert rec is not None and rec.status == "rolled_back" and res.exit_code == 3
    assert rec.decision is not None and "positives (critical)" in rec.decision.reason
    # the look requests named the gate, so the metrics source collected its counts
    assert {r.predictions for r in sim.requests} == {("positives",)}
    last = rec.steps[-1].looks[-1].look.variants
    assert last["v2"].custom["positives"].denominator > 0


def test_the_state_machine_promotes_an_identical_canary(project: Path) -> None:
    res, _ = _canary(project, {"v1": 0.1, "v2": 0.1})
    assert res.record is not None and res.record.status == "promoted", res.record


def test_shadow_steps_collect_no_prediction_counts(project: Path) -> None:
    _, sim = _canary(project, {"v1": 0.1, "v2": 0.1}, strategy="shadow+canary")
    shadow = [r for r in sim.requests if r.shadow]
    assert shadow and {r.predictions for r in shadow} == {()}
    assert {r.predictions for r in sim.requests if not r.shadow} == {("positives",)}
