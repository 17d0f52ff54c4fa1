"""Small pieces of the rollout: manifest edit, plans, agreement test, snapshots, store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlserve.errors import StateError
from mlserve.manifest.models import RolloutPolicy
from mlserve.project import load_project
from mlserve.rollout import service
from mlserve.rollout.manifest_edit import set_baseline
from mlserve.rollout.plans import step_plans
from mlserve.rollout.record import Run
from mlserve.rollout.store import RunDir, lock_holder
from mlserve.stats.agreement import agreement_test
from mlserve.stats.snapshot import parse_snapshot
from tests.support.policy import FAST, set_policy
from tests.support.sim import Clock, FakeRouter, Sim, opener


def test_promotion_edits_only_the_baseline_and_keeps_every_comment(project: Path) -> None:
    path = project / "mlserve.toml"
    text = path.read_text().replace('baseline = "v1"', 'baseline = "v1"   # what production runs', 1)
    path.write_text(text)
    assert set_baseline(path, "fraud", "v2") is True
    new = path.read_text()
    assert new == text.replace('baseline = "v1"   #', 'baseline = "v2"   #', 1)
    assert load_project(project).manifest.endpoints["fraud"].baseline == "v2"
    assert set_baseline(path, "fraud", "v2") is False  # idempotent


def test_promotion_to_an_unknown_endpoint_is_refused(project: Path) -> None:
    with pytest.raises(StateError, match=r"no \[endpoints.nope\] table"):
        set_baseline(project / "mlserve.toml", "nope", "v2")


def test_step_plans_per_strategy() -> None:
    pol = RolloutPolicy(steps=[10, 50, 100], shadow_percent=20)
    canary = step_plans("canary", pol, "v1", "v2")
    # the default control: a fresh v1 with the candidate's share, the primary the rest
    assert [p.traffic.weights for p in canary] == [
        {"v1": 80, "control": 10, "v2": 10},
        {"v1": 0, "control": 50, "v2": 50},
    ]
    assert [p.traffic.control for p in canary] == ["control", "control"]
    assert canary[0].traffic.arms["control"].version == "v1"
    primary = step_plans("canary", pol.model_copy(update={"control": "primary"}), "v1", "v2")
    assert [p.traffic.weights for p in primary] == [{"v1": 90, "v2": 10}, {"v1": 50, "v2": 50}]
    assert primary[0].traffic.control is None
    both = step_plans("shadow+canary", pol, "v1", "v2")
    assert [p.phase for p in both] == ["shadow", "canary", "canary"]
    assert both[0].traffic.mirror_percent == 20
    ab = step_plans("ab", pol, "v1", "v2")
    assert ab[0].traffic.mode == "ab" and ab[0].traffic.weights == {"v1": 50, "v2": 50}
    assert both[0].traffic.control is None and ab[0].traffic.control is None  # no control on shadow and A/B


def test_a_step_above_50_with_a_replica_control_is_refused_naming_the_key() -> None:
    from mlserve.manifest.models import KeyProblem

    with pytest.raises((KeyProblem, ValueError), match="55% step leaves no room"):
        RolloutPolicy(steps=[10, 55, 100])
    assert RolloutPolicy(steps=[10, 55, 100], control="primary").steps == [10, 55, 100]


@pytest.mark.parametrize(
    ("agree", "total", "verdict"),
    [(9000, 10000, "fail"), (10000, 10000, "pass"), (99, 100, "inconclusive"), (0, 0, "no_data")],
)
def test_agreement_gate(agree: int, total: int, verdict: str) -> None:
    assert agreement_test(agree, total, 0.99, 0.05).verdict == verdict


def test_agreement_gate_can_be_switched_off() -> None:
    assert agreement_test(0, 100, 0.0, 0.05).verdict == "pass"


def _finished(project: Path, **policy: Any) -> Run:
    set_policy(project, **{**FAST, **policy})
    clock, drv = Clock(), FakeRouter()
    service.start(load_project(project), "fraud", "v2", clock=clock)
    res = service.run_to_end(
        load_project(project), "fraud", opener=opener(Sim(rate=1000.0), drv), clock=clock, sleep=clock.sleep
    )
    assert res.record is not None
    return res.record


def test_saved_snapshots_are_valid_and_replay_to_the_live_decision(project: Path) -> None:
    from mlserve.manifest.analysis import analysis_spec
    from mlserve.stats.engine import analyze

    state = _finished(project)
    run = RunDir(project / "experiments/fraud" / state.run_id)
    whole = parse_snapshot(json.loads(run.snapshot.read_text()))
    assert sum(len(s.looks) for s in state.steps) == len(whole.looks)
    assert [look.weights["v2"] for look in whole.looks][-1] == 50
    for i, st in enumerate(state.steps):
        snap = parse_snapshot(json.loads(run.step_snapshot(i).read_text()))
        verdict = analyze(snap, analysis_spec(state.policy))
        assert st.decision is not None
        assert verdict.verdict == st.decision.verdict == "promote"


def test_ab_waits_for_its_horizon_before_promoting(project: Path) -> None:
    state = _finished(project, strategy="ab", ab_duration="30s")
    assert state.status == "promoted"
    st = state.steps[0]
    assert st.traffic.mode == "ab"
    assert st.last_look_at is not None and st.last_look_at - st.started_at >= 30.0
    assert [h.verdict for h in st.looks][:-1] == ["continue"] * (len(st.looks) - 1)


def test_ab_rolls_back_early_on_harm(project: Path) -> None:
    set_policy(project, **{**FAST, "strategy": "ab", "ab_duration": "60s"})
    sim = Sim(rate=1000.0)
    sim.errors["v2"] = 0.05
    clock, drv = Clock(), FakeRouter()
    start = clock()
    service.start(load_project(project), "fraud", "v2", clock=clock)
    res = service.run_to_end(load_project(project), "fraud", opener=opener(sim, drv), clock=clock, sleep=clock.sleep)
    assert res.to_dict()["status"] == "rolled_back"
    assert clock() - start < 30


def test_events_file_tolerates_a_line_cut_by_a_crash(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    run.root.mkdir()
    run.event("start")
    with open(run.events, "a") as fh:
        fh.write('{"at": "2026-01-01T00:00:00Z", "event": "lo')
    assert [e["event"] for e in run.read_events()] == ["start"]


def test_lock_holder_is_reported_and_released(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    with run.locked():
        holder = lock_holder(run.lock)
        assert holder is not None and holder.pid > 0
    assert lock_holder(run.lock) is None
