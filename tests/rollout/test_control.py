"""The control arm's lifecycle on a simulated target: started when the first comparing step is
entered, routed three ways at the candidate's share, compared with the candidate, stopped
exactly once at every end, and recovered after a crash (seeded, fake clock)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlserve.project import load_project
from mlserve.rollout import service
from mlserve.rollout.service import RolloutResult
from mlserve.rollout.store import RunDir
from tests.support.policy import FAST, set_policy
from tests.support.sim import Clock, FakeRouter, Sim, opener

START = ("start", "fraud", "control", "v1")
STOP = ("stop", "fraud", "control")


def _start(root: Path, clock: Clock, **policy: Any) -> RolloutResult:
    set_policy(root, **{**FAST, "steps": [10, 100], **policy})
    return service.start(load_project(root), "fraud", "v2", clock=clock)


def _run(root: Path, clock: Clock, sim: Sim, router: FakeRouter, **kw: Any) -> RolloutResult:
    return service.run_to_end(
        load_project(root), "fraud", opener=opener(sim, router), clock=clock, sleep=clock.sleep, **kw
    )


def _events(res: RolloutResult) -> list[dict[str, Any]]:
    return RunDir(Path(res.run_dir)).read_events()


def _stopped_once(res: RolloutResult, router: FakeRouter) -> None:
    assert router.arm_calls.count(START) == 1 and router.arm_calls.count(STOP) == 1, router.arm_calls
    assert router.arm_calls.index(START) < router.arm_calls.index(STOP)
    assert router.running == {}
    record = RunDir(Path(res.run_dir)).read_state()
    assert record.control is not None and record.control.state == "stopped"
    names = [e["event"] for e in _events(res)]
    assert names.count("control_started") == 1 and names.count("control_stopped") == 1


def _three_way(router: FakeRouter) -> None:
    splits = [p["weights"] for _, p in router.applied]
    assert splits[0] == {"v1": 80, "control": 10, "v2": 10}
    # the control's share never outlives it: the plan applied before the stop has no control
    assert "control" not in splits[-1]


def test_promotion_compares_with_the_control_and_stops_it(project: Path) -> None:
    clock, router = Clock(), FakeRouter()
    _start(project, clock)
    # the primary is slower (it takes 80% of the load): compared with it the candidate would
    # look faster; compared with the control it is what it is
    res = _run(project, clock, Sim(latency={"v1": 0.02, "v2": 0.02}), router)
    assert res.record is not None and res.record.status == "promoted"
    _three_way(router)
    _stopped_once(res, router)
    decision = res.to_dict()["decision"]
    assert decision["compared_with"] == "control"
    assert decision["test_unit"] == "interval"  # the default with a concurrent control
    roles = {a["name"]: a["role"] for a in decision["arms"]}
    assert roles == {"v1": "primary", "control": "control", "v2": "candidate"}
    assert "control (a fresh v1)" in res.record.outcome.reason  # type: ignore[union-attr]
    report = (Path(res.run_dir) / "report.md").read_text()
    assert "compared with the control arm 'control' (a fresh instance of v1" in report
    assert "## Arms" in report and "| v1 | primary | v1 |" in report
    assert "- latency_p95: p" in report and " compared (" in report  # the quantile compared, stated
    assert json.loads((Path(res.run_dir) / "report.json").read_text())["summary"]["control"] == "control"
    snap = json.loads((Path(res.run_dir) / "snapshots" / "step-01.json").read_text())
    assert snap["control"] == "control" and set(snap["looks"][0]["variants"]) == {"v1", "control", "v2"}


@pytest.mark.parametrize(
    ("policy", "sim", "status"),
    [
        ({}, {"errors": {"v1": 0.0, "v2": 0.08}}, "rolled_back"),
        ({}, {"misroute": 0.1}, "halted"),
        ({"max_duration": "12s", "on_inconclusive": "hold"}, {"down": True}, "inconclusive"),
        ({"max_duration": "12s", "on_inconclusive": "rollback"}, {"down": True}, "rolled_back"),
    ],
    ids=["rollback", "halt", "deadline-hold", "deadline-rollback"],
)
def test_every_automatic_end_stops_the_control_once(
    project: Path, policy: dict[str, Any], sim: dict[str, Any], status: str
) -> None:
    clock, router = Clock(), FakeRouter()
    _start(project, clock, **policy)
    res = _run(project, clock, Sim(**sim), router)
    assert res.record is not None and res.record.status == status, res.to_dict()["outcome"]
    _three_way(router)
    _stopped_once(res, router)
    if status == "inconclusive":  # on_inconclusive = hold keeps the split, without the control
        assert router.applied[-1][1]["weights"] == {"v1": 90, "v2": 10}
    else:
        assert router.applied[-1][1]["weights"] == {"v1": 100}


@pytest.mark.parametrize("action", ["abort", "rollback"])
def test_a_manual_end_stops_the_control(project: Path, action: str) -> None:
    clock, router, sim = Clock(), FakeRouter(), Sim()
    p = load_project(project)
    res = _start(project, clock)
    service.step(p, "fraud", opener=opener(sim, router), clock=clock)  # enters step 1: the control starts
    assert router.running == {"control": "v1"}
    getattr(service, action)(p, "fraud", opener=opener(sim, router))
    _stopped_once(res, router)
    assert router.applied[-1][1]["weights"] == {"v1": 100}
    # a second end finds nothing to stop
    service.rollback(p, "fraud", opener=opener(sim, router))
    assert router.arm_calls.count(STOP) == 1


def test_a_crash_while_starting_the_control_is_resumed(project: Path) -> None:
    clock, router, sim = Clock(), FakeRouter(fail_start=1), Sim()
    p = load_project(project)
    res = _start(project, clock)
    with pytest.raises(RuntimeError, match="starting the control"):
        service.step(p, "fraud", opener=opener(sim, router), clock=clock)
    state = RunDir(Path(res.run_dir)).read_state()
    assert state.pending is not None and state.pending.action == "enter_step"
    assert state.control is not None and state.control.state == "starting"
    assert router.applied == []  # no traffic to a control that does not run
    final = _run(project, clock, sim, router, resume=True)
    assert final.record is not None and final.record.status == "promoted"
    _stopped_once(final, router)


def test_a_crash_after_the_start_adopts_the_running_control(project: Path) -> None:
    # the arm started, then applying the step's traffic crashed (nothing recorded the start)
    clock, router, sim = Clock(), FakeRouter(fail_next=1), Sim()
    p = load_project(project)
    res = _start(project, clock)
    with pytest.raises(RuntimeError, match="applying traffic"):
        service.step(p, "fraud", opener=opener(sim, router), clock=clock)
    assert router.running == {"control": "v1"}
    assert RunDir(Path(res.run_dir)).read_state().control.state == "starting"  # type: ignore[union-attr]
    final = _run(project, clock, sim, router, resume=True)
    assert final.record is not None and final.record.status == "promoted"
    assert router.arm_calls == [START, ("adopt", "fraud", "control", "v1"), STOP]


def test_a_crash_during_the_end_stops_the_control_on_resume(project: Path) -> None:
    # the end's traffic was applied, the stop never ran: the next resume finishes the end
    clock, router, sim = Clock(), FakeRouter(), Sim(errors={"v1": 0.0, "v2": 0.08})
    p = load_project(project)
    res = _start(project, clock)
    service.step(p, "fraud", opener=opener(sim, router), clock=clock)
    real_stop = router.stop_arm

    def crash(endpoint: str, name: str) -> None:
        raise RuntimeError("simulated crash while stopping the control")

    router.stop_arm = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="stopping the control"):
        _run(project, clock, sim, router)
    state = RunDir(Path(res.run_dir)).read_state()
    assert state.pending is not None and state.control is not None and state.control.state == "running"
    router.stop_arm = real_stop  # type: ignore[method-assign]
    final = _run(project, clock, sim, router, resume=True)
    assert final.record is not None and final.record.status == "rolled_back"
    _stopped_once(final, router)


def test_control_primary_runs_two_arms_and_request_evidence(project: Path) -> None:
    clock, router = Clock(), FakeRouter()
    _start(project, clock, control="primary")
    res = _run(project, clock, Sim(), router)
    assert res.record is not None and res.record.status == "promoted"
    assert router.arm_calls == [] and router.applied[0][1]["weights"] == {"v1": 90, "v2": 10}
    decision = res.to_dict()["decision"]
    assert decision.get("compared_with", "") == "" and decision["test_unit"] == "request"
