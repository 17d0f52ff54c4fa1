"""The rollout commands in-process, on a simulated target (no processes, no Prometheus)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlserve.rollout import service
from mlserve.rollout.service import RolloutResult
from mlserve.rollout.store import RunDir
from tests.conftest import run_cli
from tests.support.policy import FAST, set_policy
from tests.support.sim import FakeRouter, Sim, opener


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, project: Path) -> FakeRouter:
    drv = FakeRouter()
    monkeypatch.setattr("mlserve.targets.open_environment", opener(Sim(rate=3000.0), drv))
    set_policy(project, **{**FAST, "interval": "1s", "max_duration": "30s"})
    return drv


def test_start_status_step_and_forced_promote(project: Path, fake: FakeRouter) -> None:
    res = run_cli("rollout", "start", "fraud", "--candidate", "v2", "--json", cwd=project)
    assert res.exit_code == 0, res.output
    data = res.json["result"]
    assert data["status"] == "running" and data["weights"] == {"v1": 100}
    run = RunDir(Path(data["run_dir"]))
    assert (project / "experiments/fraud/current").read_text().strip() == run.run_id

    res = run_cli("rollout", "step", "fraud", cwd=project)
    assert res.exit_code == 4, res.output  # still running
    assert "step 1/2 [control 25%, v1 50%, v2 25%] running" in res.output and "waiting" in res.output
    assert "compared with: control arm control (a fresh v1" in res.output
    assert fake.applied[0][1]["weights"] == {"v1": 50, "control": 25, "v2": 25}

    res = run_cli("rollout", "status", "fraud", "--json", cwd=project)
    assert res.json["result"]["step"] == 0 and res.json["result"]["looks"] == 0

    res = run_cli("promote", "fraud", cwd=project)
    assert res.exit_code == 2 and "has not said promote" in res.output
    res = run_cli("promote", "fraud", "--force", "--json", cwd=project)
    assert res.exit_code == 0, res.output
    assert res.json["result"]["status"] == "promoted" and res.json["result"]["forced"] is True
    assert res.json["result"]["control"]["state"] == "stopped" and fake.running == {}  # stopped at the end
    text = (project / "mlserve.toml").read_text()
    assert 'baseline = "v2"' in text and "# The rollout policy: how a new version earns production traffic." in text
    junit = (run.root / "junit.xml").read_text()
    assert '<property name="forced" value="True"' in junit


def test_run_json_exit_code_and_reports(project: Path, fake: FakeRouter) -> None:
    assert run_cli("rollout", "start", "fraud", "--candidate", "v2", cwd=project).exit_code == 0
    res = run_cli("rollout", "run", "fraud", "--interval", "0.2s", "--json", cwd=project)
    assert res.exit_code == 0, res.output
    out = res.json
    assert out["command"] == "rollout run" and out["exit_code"] == 0
    assert out["result"]["status"] == "promoted"
    reports = out["result"]["reports"]
    assert set(reports) == {"json", "markdown", "junit", "html"}
    html = Path(reports["html"]).read_text()
    assert html.count("data:image/png;base64,") >= 3
    report = json.loads(Path(reports["json"]).read_text())
    assert report["summary"]["status"] == "promoted" and report["looks"]
    assert "step 2/2" in res.stderr  # plain progress lines go to stderr under --json


def test_lock_held_by_another_process_fails_with_its_pid(project: Path, fake: FakeRouter) -> None:
    res = run_cli("rollout", "start", "fraud", "--candidate", "v2", "--json", cwd=project)
    run = RunDir(Path(res.json["result"]["run_dir"]))
    with run.locked():
        res = run_cli("rollout", "step", "fraud", cwd=project)
    assert res.exit_code == 1
    assert "locked by pid" in res.output and " since 20" in res.output


def test_abort_returns_traffic_and_rollback_without_run(project: Path, fake: FakeRouter) -> None:
    res = run_cli("rollback", "fraud", "--json", cwd=project)
    assert res.exit_code == 0 and res.json["result"]["weights"] == {"v1": 100}
    assert run_cli("rollout", "start", "fraud", "--candidate", "v2", cwd=project).exit_code == 0
    assert run_cli("rollout", "step", "fraud", cwd=project).exit_code == 4
    res = run_cli("rollout", "pause", "fraud", "--json", cwd=project)
    assert res.json["result"]["status"] == "paused"
    res = run_cli("rollout", "step", "fraud", cwd=project)
    assert res.exit_code == 1 and "paused" in res.output
    res = run_cli("rollout", "abort", "fraud", "--json", cwd=project)
    assert res.json["result"]["status"] == "aborted"
    assert fake.applied[-1][1]["weights"] == {"v1": 100}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rollout", "start", "fraud", "--candidate", "v9"), "is not a version of endpoint"),
        (("rollout", "start", "fraud", "--candidate", "v1"), "already the baseline"),
        (("rollout", "start", "nope", "--candidate", "v2"), "unknown endpoint"),
        (("rollout", "start", "fraud", "--candidate", "v2", "--strategy", "blue"), "--strategy must be one of"),
        (("rollout", "start", "fraud", "--candidate", "v2", "--interval", "soon"), "--interval"),
        (("rollout", "status", "fraud"), "no rollout of endpoint"),
    ],
)
def test_bad_input_is_a_usage_error(project: Path, fake: FakeRouter, args: tuple[str, ...], message: str) -> None:
    res = run_cli(*args, cwd=project)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


def test_pause_and_abort_reach_a_run_driven_by_another_thread(project: Path, fake: FakeRouter) -> None:
    import threading
    import time

    from mlserve.project import load_project

    assert run_cli("rollout", "start", "fraud", "--candidate", "v2", "--interval", "1s", cwd=project).exit_code == 0
    p = load_project(project)
    box: dict[str, RolloutResult] = {}
    t = threading.Thread(target=lambda: box.setdefault("r", service.run_to_end(p, "fraud")), daemon=True)
    t.start()
    run = service.load_run(p, "fraud")
    end = time.monotonic() + 20
    while run.holder() is None and time.monotonic() < end:
        time.sleep(0.05)
    assert run.holder() is not None
    res = service.pause(p, "fraud")
    assert res.to_dict()["status"] == "paused" and "pause done by pid" in res.message
    t.join(timeout=20)
    assert box["r"].exit_code == 4 and box["r"].to_dict()["status"] == "paused"
    events = [e["event"] for e in run.read_events()]
    assert "request" in events and "paused" in events
    res = service.abort(p, "fraud")  # nobody drives it now: acted on at once
    assert res.to_dict()["status"] == "aborted" and fake.applied[-1][1]["weights"] == {"v1": 100}


def test_live_progress_on_a_terminal_renders_the_table(project: Path, fake: FakeRouter) -> None:
    import io

    from rich.console import Console

    from mlserve.cli.commands.rollout import _Progress
    from mlserve.cli.output import State

    assert run_cli("rollout", "start", "fraud", "--candidate", "v2", cwd=project).exit_code == 0
    res = run_cli("rollout", "run", "fraud", "--interval", "0.2s", "--json", cwd=project)
    state = RunDir(Path(res.json["result"]["run_dir"])).read_state()
    buf = io.StringIO()
    progress = _Progress(State())
    progress.con = Console(file=buf, force_terminal=True, width=160, no_color=True)
    progress.tty = True
    progress.update(state)
    progress.update(state)
    progress.close()
    text = buf.getvalue()
    assert "latency_p95" in text and "error_rate" in text and "promoted" in text
