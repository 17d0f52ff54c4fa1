"""Run directories written by the code before the typed record (``mlserve.rollout/v1``, see
tests/fixtures/runs/README.md) still load, report, replay to the decisions they got, and a
run left mid-run with a pending transition resumes to the end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mlserve.manifest.analysis import analysis_spec
from mlserve.project import load_project
from mlserve.report.build import build_data
from mlserve.rollout import record as rec
from mlserve.rollout import service
from mlserve.rollout.machine import Machine, Ports
from mlserve.rollout.store import RunDir, set_current
from mlserve.stats.engine import analyze
from mlserve.stats.snapshot import read_snapshot
from mlserve.status import Status
from tests.support.sim import Clock, FakeRouter, Sim, opener

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
RUNS = sorted(p.parent for p in FIXTURES.glob("v1-*/*/state.json"))
CASES = [
    (group, case)
    for group in sorted(FIXTURES.glob("v1-*"))
    for case in json.loads((group / "expected-decisions.json").read_text())
]


def _close(new: Any, old: Any) -> None:
    """Equal, numbers to within rounding (the same arithmetic, reordered)."""
    if isinstance(old, dict):
        assert isinstance(new, dict) and new.keys() == old.keys()
        for key in old:
            _close(new[key], old[key])
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old)
        for a, b in zip(new, old, strict=True):
            _close(a, b)
    elif isinstance(old, float) and not isinstance(new, bool):
        assert new == pytest.approx(old, rel=1e-9, abs=1e-12)
    else:
        assert new == old


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_every_kind_of_run_is_in_the_fixtures() -> None:
    states = [json.loads((r / "state.json").read_text()) for r in RUNS]
    assert {s["format"] for s in states} == {rec.FORMAT_V1}
    assert {s["status"] for s in states} == {str(s) for s in Status} - {"paused"}
    assert {s["strategy"] for s in states} >= {"canary", "shadow", "ab", "shadow+canary"}
    assert any(s["pending"] for s in states) and any(s.get("load") for s in states)
    assert len(CASES) >= 25


@pytest.mark.parametrize("run", RUNS, ids=_id)
def test_v1_state_migrates_and_round_trips_as_v2(run: Path) -> None:
    raw = json.loads((run / "state.json").read_text())
    migrated = RunDir(run).read_state()
    assert migrated.status == raw["status"] and migrated.run_id == raw["run_id"]
    assert migrated.total_looks == sum(len(st["looks"]) for st in raw["steps"])
    assert [t.to_dict() for t in migrated.transitions] == raw["transitions"]
    assert (migrated.decision.to_dict()["verdict"] if migrated.decision else None) == (raw["decision"] or {}).get(
        "verdict"
    )
    assert migrated.traffic.weights == raw["traffic"]["weights"]
    for st, old in zip(migrated.steps, raw["steps"], strict=True):
        assert [sl.look.to_dict() for sl in st.looks] == old["looks"]
        assert [sl.verdict for sl in st.looks] == [h["verdict"] for h in old.get("history", [])]
    again = rec.load(json.loads(json.dumps(migrated.to_dict())))
    assert again == migrated
    assert again.to_dict()["format"] == rec.FORMAT


@pytest.mark.parametrize("run", [r for r in RUNS if (r / "report.json").exists()], ids=_id)
def test_reports_of_a_v1_run_carry_the_same_data(run: Path) -> None:
    """report.json is rebuilt from the migrated record to what the old code wrote; the
    differences are the sample-ratio entry of a shadow rollback, now in its full form, and the
    looks' PromQL (``queries``, empty: a v1 run's look events did not record it)."""
    d = RunDir(run)
    new = json.loads(json.dumps(build_data(d.read_state(), d.read_events()).to_dict()))
    old = json.loads((run / "report.json").read_text())
    assert "queries" not in old and new.pop("queries") == []
    if old["summary"]["srm"] == {"p_value": None, "ok": True}:
        old["summary"]["srm"] = {**old["summary"]["srm"], "candidate_share": None, "expected_share": None,
                                 "chi2_p_value": None}  # fmt: skip
    # events logged after the report was written (a later `mlserve rollback`) only extend it
    old_timeline, new_timeline = old.pop("timeline"), new.pop("timeline")
    assert new_timeline[: len(old_timeline)] == old_timeline
    assert new == old


@pytest.mark.parametrize(("group", "case"), CASES, ids=[c["snapshot"] for _, c in CASES])
def test_saved_snapshot_replays_to_the_same_decision(group: Path, case: dict[str, Any]) -> None:
    """The engine gives every saved step snapshot the answer the old engine gave, and the
    rollout's decision on the step's last look is the one the live run took."""
    snap_path = group / case["snapshot"]
    run_dir = RunDir(snap_path.parents[1])
    record = run_dir.read_state()
    old = case["engine"]
    new = analyze(read_snapshot(snap_path), analysis_spec(record.policy), policy_source="mlserve.toml").to_dict()
    for key in ("verdict", "decided_at_look", "reported_look", "requests", "looks", "alpha"):
        assert new[key] == old[key], key
    _close(new["srm"], old["srm"])
    _close(new["metrics"], old["metrics"])

    index = int(snap_path.stem.split("-")[1]) - 1
    step = record.steps[index]
    assert step.last_look_at is not None and step.decision is not None
    machine = Machine(run_dir, record, Ports(FakeRouter(), Sim(), lambda *_: False))
    live = machine.decide(record, step, step.last_look_at, final=False)
    assert live.verdict == case["live_verdict"] == step.decision.verdict
    assert live.decided_at_look == case["live_decided_at_look"]


def test_a_v1_run_left_mid_transition_resumes_to_the_end(project: Path) -> None:
    """The real run paused by a stopped gateway while moving 20% -> 50%: the pending intent is
    applied first, then the run goes on (on a simulated target) and is promoted."""
    src = FIXTURES / "v1-local" / "midrun-pending-enter-step"
    raw = json.loads((src / "state.json").read_text())
    assert raw["status"] == "running" and raw["pending"]["action"] == "enter_step"
    dest = project / "experiments" / "fraud" / raw["run_id"]
    shutil.copytree(src, dest)
    set_current(project.joinpath("experiments"), "fraud", RunDir(dest))
    clock, router = Clock(raw["pending"]["at"] + 1.0), FakeRouter()
    res = service.run_to_end(
        load_project(project), "fraud", opener=opener(Sim(rate=1000.0), router), clock=clock, sleep=clock.sleep
    )
    assert res.record is not None and res.record.status is Status.PROMOTED
    assert [p["weights"] for _, p in router.applied] == [{"v1": 50, "v2": 50}, {"v2": 100}]
    events = RunDir(dest).read_events()
    assert any(e["event"] == "recovering" and e["seq"] == raw["pending"]["seq"] for e in events)
    entered = [e["step"] for e in events if e.get("event") == "transition" and e.get("action") == "enter_step"]
    assert entered == [0, 1]  # step 1 entered once, by the live run; step 2 once, on resume
    on_disk = json.loads((dest / "state.json").read_text())
    assert on_disk["format"] == rec.FORMAT and on_disk["pending"] is None
    assert [t["seq"] for t in on_disk["transitions"]] == [1, 2, 3]
    assert 'baseline = "v2"' in (project / "mlserve.toml").read_text()


SCENARIOS = {
    # fixture: (policy on top of FAST, Sim arguments) of the test that wrote it with main's code
    "canary-promoted": ({}, {}),
    "errors-rolled-back": ({}, {"errors": {"v1": 0.0, "v2": 0.05}}),
    "latency-rolled-back": ({}, {"latency": {"v1": 0.02, "v2": 0.06}}),
    "halted-srm": ({}, {"misroute": 0.15}),
    "held-inconclusive": ({"on_inconclusive": "promote", "max_duration": "20s"}, {"down": True}),
    "shadow-rolled-back": ({"strategy": "shadow", "shadow_agreement": 0.99}, {"agree": 0.9}),
    "shadow-canary-promoted": ({"strategy": "shadow+canary", "shadow_agreement": 0.95}, {}),
    "ab-promoted": ({"strategy": "ab", "ab_duration": "30s"}, {"rate": 1000.0}),
    "ab-rolled-back": ({"strategy": "ab", "ab_duration": "60s"}, {"rate": 1000.0, "errors": {"v1": 0.0, "v2": 0.05}}),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_machine_takes_the_old_machine_s_path_look_for_look(project: Path, name: str) -> None:
    """The same simulated traffic on the same fake clock: every look, verdict, transition and
    the outcome are what main's machine recorded (the v1-sim fixtures)."""
    from tests.support.policy import FAST, set_policy

    policy, sim = SCENARIOS[name]
    # main's machine compared the candidate with the primary (no control arm existed)
    set_policy(project, **{**FAST, "control": "primary", **policy})
    clock, router = Clock(), FakeRouter()
    service.start(load_project(project), "fraud", "v2", clock=clock)
    res = service.run_to_end(load_project(project), "fraud", opener=opener(Sim(**sim), router), clock=clock,
                             sleep=clock.sleep)  # fmt: skip
    new = res.record
    old = json.loads((FIXTURES / "v1-sim" / name / "state.json").read_text())
    assert new is not None and new.status == old["status"]
    assert new.outcome is not None and new.outcome.reason == old["outcome"]["reason"]
    assert len(new.transitions) == len(old["transitions"])
    for t, o in zip(new.transitions, old["transitions"], strict=True):
        assert {k: v for k, v in t.to_dict().items() if k != "at"} == {k: v for k, v in o.items() if k != "at"}
    assert len(new.steps) == len(old["steps"])
    for st, o in zip(new.steps, old["steps"], strict=True):
        assert (st.started_at, st.anchor, st.last_look_at, st.held) == (
            o["started_at"], o["anchor"], o["last_look_at"], o.get("held", 0),
        )  # fmt: skip
        assert [sl.look.to_dict() for sl in st.looks] == o["looks"]
        assert [sl.verdict for sl in st.looks] == [h["verdict"] for h in o.get("history", [])]
        assert (st.decision.verdict if st.decision else None) == (o["decision"] or {}).get("verdict")
