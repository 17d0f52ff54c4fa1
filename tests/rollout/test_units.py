"""Small pieces of the rollout: manifest edit, plans, agreement test, snapshots, store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlserve.errors import StateError
from mlserve.manifest.models import RolloutPolicy
from mlserve.project import load_project
from mlserve.rollout import machine
from mlserve.rollout.decide import agreement_test
from mlserve.rollout.manifest_edit import set_baseline
from mlserve.rollout.store import RunDir, lock_holder
from mlserve.stats.snapshot import parse_snapshot
from tests.rollout.helpers import FAST, set_policy
from tests.rollout.sim import Clock, FakeDriver, Sim


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
    canary = machine.step_plans("canary", pol, "v1", "v2")
    assert [p["traffic"]["weights"] for p in canary] == [{"v1": 90, "v2": 10}, {"v1": 50, "v2": 50}]
    both = machine.step_plans("shadow+canary", pol, "v1", "v2")
    assert [p["phase"] for p in both] == ["shadow", "canary", "canary"]
    assert both[0]["traffic"]["shadow_percent"] == 20
    ab = machine.step_plans("ab", pol, "v1", "v2")
    assert ab[0]["traffic"]["mode"] == "ab" and ab[0]["traffic"]["weights"] == {"v1": 50, "v2": 50}


@pytest.mark.parametrize(
    ("agree", "total", "verdict"),
    [(9000, 10000, "fail"), (10000, 10000, "pass"), (99, 100, "inconclusive"), (0, 0, "no_data")],
)
def test_agreement_gate(agree: int, total: int, verdict: str) -> None:
    assert agreement_test(agree, total, 0.99, 0.05)["verdict"] == verdict


def test_agreement_gate_can_be_switched_off() -> None:
    assert agreement_test(0, 100, 0.0, 0.05)["verdict"] == "pass"


def _finished(project: Path, monkeypatch: pytest.MonkeyPatch, **policy: Any) -> dict[str, Any]:
    set_policy(project, **{**FAST, **policy})
    monkeypatch.setattr(machine, "take_look", Sim(rate=1000.0))
    clock, drv = Clock(), FakeDriver()
    machine.start(load_project(project), "fraud", "v2", clock=clock, driver=drv)
    res = machine.run_to_end(load_project(project), "fraud", driver=drv, clock=clock, sleep=clock.sleep)
    return res.state


def test_saved_snapshots_are_valid_and_replay_to_the_live_decision(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlserve.stats.engine import analyze

    state = _finished(project, monkeypatch)
    run = RunDir(project / "experiments/fraud" / state["run_id"])
    whole = parse_snapshot(json.loads(run.snapshot.read_text()))
    assert sum(len(s["looks"]) for s in state["steps"]) == len(whole.looks)
    assert [look.weights["v2"] for look in whole.looks][-1] == 50
    for i, st in enumerate(state["steps"]):
        snap = parse_snapshot(json.loads(run.step_snapshot(i).read_text()))
        verdict = analyze(snap, RolloutPolicy.model_validate(state["policy"]))
        assert verdict.verdict == st["decision"]["verdict"] == "promote"


def test_ab_waits_for_its_horizon_before_promoting(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = _finished(project, monkeypatch, strategy="ab", ab_duration="30s")
    assert state["status"] == "promoted"
    st = state["steps"][0]
    assert st["traffic"]["mode"] == "ab"
    assert st["last_look_at"] - st["started_at"] >= 30.0
    assert [h["verdict"] for h in st["history"]][:-1] == ["continue"] * (len(st["history"]) - 1)


def test_ab_rolls_back_early_on_harm(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_policy(project, **{**FAST, "strategy": "ab", "ab_duration": "60s"})
    sim = Sim(rate=1000.0)
    sim.errors["v2"] = 0.05
    monkeypatch.setattr(machine, "take_look", sim)
    clock, drv = Clock(), FakeDriver()
    start = clock()
    machine.start(load_project(project), "fraud", "v2", clock=clock, driver=drv)
    res = machine.run_to_end(load_project(project), "fraud", driver=drv, clock=clock, sleep=clock.sleep)
    assert res.state["status"] == "rolled_back"
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
