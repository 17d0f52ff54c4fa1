"""The state machine on a simulated target: verdicts, exit codes, crash safety, the lock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlserve.errors import StateError, UsageError
from mlserve.project import load_project
from mlserve.rollout import service
from mlserve.rollout.service import RolloutResult
from mlserve.rollout.store import RunDir
from mlserve.status import Status
from tests.support.policy import FAST, set_policy
from tests.support.sim import Clock, FakeRouter, Sim, opener


@pytest.fixture
def sim() -> Sim:
    return Sim()


def _start(root: Path, clock: Clock, **kw: Any) -> RolloutResult:
    return service.start(load_project(root), "fraud", "v2", clock=clock, **kw)


def _run(root: Path, clock: Clock, sim: Sim, router: FakeRouter, **kw: Any) -> RolloutResult:
    return service.run_to_end(
        load_project(root), "fraud", opener=opener(sim, router), clock=clock, sleep=clock.sleep, **kw
    )


def _events(res: RolloutResult) -> list[dict[str, Any]]:
    return RunDir(Path(res.run_dir)).read_events()


def test_good_candidate_walks_every_step_and_is_promoted(project: Path, sim: Sim) -> None:
    set_policy(project, **FAST)
    clock, drv = Clock(), FakeRouter()
    _start(project, clock)
    res = _run(project, clock, sim, drv)
    assert res.to_dict()["status"] == "promoted", res.to_dict()["decision"]
    assert res.exit_code == 0
    weights = [p["weights"] for _, p in drv.applied]
    # the default control: a fresh v1 with the candidate's share; at 50% the primary has none
    assert weights == [{"v1": 50, "control": 25, "v2": 25}, {"v1": 0, "control": 50, "v2": 50}, {"v2": 100}]
    assert drv.arm_calls == [("start", "fraud", "control", "v1"), ("stop", "fraud", "control")]
    assert 'baseline = "v2"' in (project / "mlserve.toml").read_text()
    steps = [e["step"] for e in _events(res) if e["event"] == "transition" and e["action"] == "enter_step"]
    assert steps == [0, 1]
    run = Path(res.run_dir)
    for name in ("report.md", "report.html", "report.json", "junit.xml", "snapshot.json", "snapshots/step-01.json"):
        assert (run / name).is_file(), name


def test_error_regression_is_rolled_back(project: Path, sim: Sim) -> None:
    set_policy(project, **FAST)
    sim.errors["v2"] = 0.05
    clock, drv = Clock(), FakeRouter()
    _start(project, clock)
    res = _run(project, clock, sim, drv)
    assert res.to_dict()["status"] == "rolled_back"
    assert res.exit_code == 3
    assert drv.applied[-1][1]["weights"] == {"v1": 100}
    assert 'baseline = "v1"' in (project / "mlserve.toml").read_text()
    failed = [m["name"] for m in res.to_dict()["decision"]["metrics"] if m["verdict"] == "fail"]
    assert "error_rate" in failed


def test_latency_regression_is_rolled_back(project: Path, sim: Sim) -> None:
    set_policy(project, **FAST)
    sim.latency["v2"] = 0.06
    clock, drv = Clock(), FakeRouter()
    _start(project, clock)
    res = _run(project, clock, sim, drv)
    assert res.to_dict()["status"] == "rolled_back"


def test_misrouted_split_halts(project: Path, sim: Sim) -> None:
    set_policy(project, **FAST)
    sim.misroute = 0.15
    clock, drv = Clock(), FakeRouter()
    _start(project, clock)
    res = _run(project, clock, sim, drv)
    assert res.to_dict()["status"] == "halted"
    assert res.exit_code == 4
    assert drv.applied[-1][1]["weights"] == {"v1": 100}
    assert "sample-ratio" in res.to_dict()["outcome"]["reason"]


def test_prometheus_down_holds_then_deadline_never_promotes(project: Path, sim: Sim) -> None:
    set_policy(project, **{**FAST, "on_inconclusive": "promote", "max_duration": "20s"})
    sim.down = True
    clock, drv = Clock(), FakeRouter()
    _start(project, clock)
    res = _run(project, clock, sim, drv)
    assert res.to_dict()["status"] == "inconclusive"
    assert res.exit_code == 4
    assert "connection refused" in res.to_dict()["outcome"]["reason"]
    held = [e for e in _events(res) if e["event"] == "held"]
    assert held and all("did not answer" in e["reason"] or "just started" in e["reason"] for e in held)
    assert 'baseline = "v1"' in (project / "mlserve.toml").read_text()


def test_shadow_disagreement_fails_the_gate(project: Path, sim: Sim) -> None:
    set_policy(project, **{**FAST, "strategy": "shadow", "shadow_agreement": 0.99})
    sim.agree = 0.9
    clock, drv = Clock(), FakeRouter()
    _start(project, clock)
    res = _run(project, clock, sim, drv)
    assert res.to_dict()["status"] == "rolled_back"
    agreement = res.to_dict()["decision"]["agreement"]
    assert agreement["verdict"] == "fail" and 0.85 < agreement["estimate"] < 0.95
    assert drv.applied[0][1]["mode"] == "shadow"


def test_shadow_then_canary_chains_on_pass(project: Path, sim: Sim) -> None:
    set_policy(project, **{**FAST, "strategy": "shadow+canary", "shadow_agreement": 0.95})
    clock, drv = Clock(), FakeRouter()
    _start(project, clock)
    res = _run(project, clock, sim, drv)
    assert res.to_dict()["status"] == "promoted", res.to_dict()["decision"]
    assert [p["mode"] for _, p in drv.applied] == ["shadow", "canary", "canary", "stable"]
    whole = json.loads((Path(res.run_dir) / "snapshot.json").read_text())
    assert whole["strategy"] == "canary" and all(look["weights"]["v2"] > 0 for look in whole["looks"])
    shadow = json.loads((Path(res.run_dir) / "snapshots/step-01.json").read_text())
    assert shadow["strategy"] == "shadow"


def test_crash_between_intent_and_apply_resumes_without_repeating(project: Path, sim: Sim) -> None:
    set_policy(project, **FAST)
    clock = Clock()
    _start(project, clock)
    # crash while applying the second step's traffic (intent persisted, target not changed)
    drv_crash = FakeRouter()
    p = load_project(project)
    res = service.step(p, "fraud", opener=opener(sim, drv_crash), clock=clock)  # enters step 1
    for _ in range(200):
        clock.sleep(2.0)
        state = RunDir(Path(res.run_dir)).read_state()
        if state.step == 0 and state.decision and state.decision.verdict == "promote":
            break
        drv_crash.fail_next = 1 if state.decision and state.decision.verdict == "continue" else 0
        try:
            service.step(p, "fraud", opener=opener(sim, drv_crash), clock=clock)
        except RuntimeError:
            break
    state = RunDir(Path(res.run_dir)).read_state()
    assert state.pending is not None and state.pending.action == "enter_step"
    assert state.status is Status.RUNNING
    final = _run(project, clock, sim, drv_crash)
    assert final.to_dict()["status"] == "promoted"
    entered = [e["step"] for e in _events(final) if e["event"] == "transition" and e["action"] == "enter_step"]
    assert entered == sorted(set(entered)) == [0, 1]
    assert [p["weights"] for _, p in drv_crash.applied] == [
        {"v1": 50, "control": 25, "v2": 25}, {"v1": 0, "control": 50, "v2": 50}, {"v2": 100},
    ]  # fmt: skip
    # the control was started once (step 1) and stopped once (the promotion)
    assert drv_crash.arm_calls == [("start", "fraud", "control", "v1"), ("stop", "fraud", "control")]


def test_second_driver_is_refused_by_the_lock(project: Path, sim: Sim) -> None:
    set_policy(project, **FAST)
    clock, drv = Clock(), FakeRouter()
    res = _start(project, clock)
    run = RunDir(Path(res.run_dir))
    with run.locked(), pytest.raises(StateError, match=r"locked by pid \d+ since 20"):
        service.step(load_project(project), "fraud", opener=opener(sim, drv), clock=clock)


def test_stale_lock_of_a_dead_pid_is_taken_over(project: Path, sim: Sim) -> None:
    set_policy(project, **FAST)
    clock, drv = Clock(), FakeRouter()
    res = _start(project, clock)
    run = RunDir(Path(res.run_dir))
    run.lock.write_text(
        json.dumps({"pid": 999999, "start_time": 1, "hostname": "h", "since": "2026-01-01T00:00:00.00Z"})
    )
    service.step(load_project(project), "fraud", opener=opener(sim, drv), clock=clock)
    taken = [e for e in run.read_events() if e["event"] == "lock_taken_over"]
    assert taken and taken[0]["previous_pid"] == 999999 and taken[0]["previous_alive"] is False


def test_promote_needs_a_promote_verdict_unless_forced(project: Path, sim: Sim) -> None:
    set_policy(project, **FAST)
    clock, drv = Clock(), FakeRouter()
    _start(project, clock)
    p = load_project(project)
    service.step(p, "fraud", opener=opener(sim, drv), clock=clock)
    with pytest.raises(UsageError, match="has not said promote"):
        service.promote(p, "fraud", opener=opener(sim, drv))
    res = service.promote(p, "fraud", force=True, opener=opener(sim, drv))
    assert res.to_dict()["status"] == "promoted" and res.to_dict()["forced"] is True
    assert any(e["event"] == "forced_promote" for e in _events(res))
    assert "forced" in (Path(res.run_dir) / "report.md").read_text()


def test_start_refuses_a_second_active_rollout(project: Path, sim: Sim) -> None:
    clock = Clock()
    _start(project, clock)
    with pytest.raises(StateError, match="still running"):
        _start(project, clock)
