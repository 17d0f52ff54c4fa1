"""Rollouts end to end on the local target: real MLServer processes, the gateway, a real
Prometheus, and a bounded background load from a few httpx threads.

One deployment for the module; every test writes its own policy into mlserve.toml, and
the ``clean`` fixture puts faults, traffic and the manifest back afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlserve.local.gateway_config import Fault
from mlserve.project import load_project
from mlserve.rollout.record import Run
from mlserve.rollout.store import RunDir
from mlserve.scaffold import HOLDOUT_FILE
from mlserve.targets.local import LocalTarget
from tests.conftest import run_cli
from tests.support.deploy import deployed_project
from tests.support.load import Load
from tests.support.policy import set_policy

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

LOAD_CAP_SECONDS = 480.0
METRICS = [
    {"name": "error_rate", "kind": "error_rate", "margin": 0.01, "critical": True},
    {"name": "latency_p95", "kind": "latency", "quantile": 0.95, "margin": "50%"},
]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, scaffolded: Path) -> Iterator[Path]:
    with deployed_project(tmp_path_factory, scaffolded, "rollout-e2e") as root:
        url = LocalTarget(load_project(root), "local").gateway_url()
        load = Load(url, (root / "payloads/fraud.jsonl").read_text().splitlines(), cap_seconds=LOAD_CAP_SECONDS,
                    backoff=0.05)  # fmt: skip
        try:
            yield root
        finally:
            load.stop()


@pytest.fixture
def clean(deployed: Path) -> Iterator[Path]:
    original = (deployed / "mlserve.toml").read_text()
    yield deployed
    target = LocalTarget(load_project(deployed), "local")
    for v in ("v1", "v2"):
        target.set_fault("fraud", v, Fault())
    (deployed / "mlserve.toml").write_text(original)
    res = run_cli("rollback", "fraud", cwd=deployed)
    if res.exit_code not in (0, 4):  # a run still on record: stop it, then reset traffic
        run_cli("rollout", "abort", "fraud", cwd=deployed)
        run_cli("rollback", "fraud", cwd=deployed)
    target.set_traffic("fraud", {"v1": 100})


def _policy(root: Path, **keys: Any) -> None:
    base: dict[str, Any] = {
        "strategy": "canary",
        "interval": "2s",
        "max_duration": "90s",
        "min_requests": 200,
        "steps": [50, 100],
        "on_inconclusive": "rollback",
        "metrics": METRICS,
        # these tests judge the candidate against the primary, request by request; the
        # concurrent control's own end-to-end test is test_the_control_arm_lives_for_the_rollout
        "control": "primary",
    }
    set_policy(root, **{**base, **keys})


def _fault(root: Path, **fault: float) -> None:
    LocalTarget(load_project(root), "local").set_fault("fraud", "v2", Fault(**fault))


def _rollout(root: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    res = run_cli("rollout", "start", "fraud", "--candidate", "v2", *args, cwd=root)
    assert res.exit_code == 0, res.output
    res = run_cli("rollout", "run", "fraud", "--json", cwd=root)
    return res.exit_code, res.json["result"], res.stderr


def _state(result: dict[str, Any]) -> Run:
    return RunDir(Path(result["run_dir"])).read_state()


def _events(result: dict[str, Any]) -> list[dict[str, Any]]:
    return RunDir(Path(result["run_dir"])).read_events()


def test_good_candidate_is_promoted_and_becomes_the_baseline(clean: Path) -> None:
    _policy(clean)
    code, result, progress = _rollout(clean)
    assert code == 0, (result["decision"], progress)
    assert result["status"] == "promoted"
    text = (clean / "mlserve.toml").read_text()
    assert 'baseline = "v2"' in text.split("[endpoints.fraud]")[1].split("[endpoints.fraud.versions")[0]
    assert "# The rollout policy: how a new version earns production traffic." in text  # comments kept
    traffic = LocalTarget(load_project(clean), "local").traffic().endpoints["fraud"].traffic
    assert dict(traffic.weights) == {"v1": 0, "v2": 100}
    snap = json.loads((Path(result["run_dir"]) / "snapshot.json").read_text())
    assert snap["looks"][-1]["weights"] == {"v1": 50, "v2": 50}
    # the saved snapshot replays to the same decision
    res = run_cli("analyze", "--replay", str(Path(result["run_dir"]) / "snapshots/step-01.json"), cwd=clean)
    assert res.exit_code == 0, res.output


def test_five_percent_errors_are_rolled_back_within_three_looks(clean: Path) -> None:
    metrics = [{**METRICS[0], "margin": 0.001}, METRICS[1]]
    _policy(clean, interval="4s", metrics=metrics)
    _fault(clean, error_rate=0.05)
    code, result, _ = _rollout(clean)
    assert code == 3, result["decision"]
    state = _state(result)
    assert len(state.steps[-1].looks) <= 3
    assert state.decision is not None
    failed = {m.name for m in state.decision.metrics if m.verdict == "fail"}
    assert "error_rate" in failed
    assert 'baseline = "v1"' in (clean / "mlserve.toml").read_text()


def test_forty_ms_of_latency_is_rolled_back(clean: Path) -> None:
    _policy(clean)
    _fault(clean, latency_ms=40)
    code, result, _ = _rollout(clean)
    assert code == 3, result["decision"]
    decision = _state(result).decision
    assert decision is not None
    failed = {m.name for m in decision.metrics if m.verdict == "fail"}
    assert "latency_p95" in failed
    junit = (Path(result["run_dir"]) / "junit.xml").read_text()
    assert '<testcase classname="rollout.fraud" name="latency_p95"' in junit and "<failure" in junit


def test_misrouted_split_is_halted_for_sample_ratio_mismatch(clean: Path) -> None:
    _policy(clean)
    _fault(clean, misroute_percent=30)
    code, result, _ = _rollout(clean)
    assert code == 4, result["decision"]
    assert result["status"] == "halted"
    assert "sample-ratio mismatch" in result["outcome"]["reason"]
    traffic = LocalTarget(load_project(clean), "local").traffic().endpoints["fraud"].traffic
    assert dict(traffic.weights) == {"v1": 100, "v2": 0}


@pytest.mark.slow  # two full rollouts on real servers (~100-200 s); the default run starts and stops a
# real control in tests/local/test_nodrop.py::test_deploy_during_a_local_rollout_keeps_its_weights_and_arms
def test_the_control_arm_lives_for_the_rollout(clean: Path) -> None:
    """The default control on real model servers: a fresh v1 server is started for the step,
    the gateway splits three ways, the candidate is compared with it, and it is stopped at
    the end (a promotion here, a rollback in the second run), with no arm left behind."""
    from mlserve.local.arms import list_arms

    _policy(clean, control="replica", steps=[25, 100], max_duration="120s")
    code, result, progress = _rollout(clean)
    assert code == 0, (result["decision"], progress)
    record = _state(result)
    assert record.control is not None and record.control.state == "stopped"
    names = [e["event"] for e in _events(result)]
    assert names.count("control_started") == 1 and names.count("control_stopped") == 1
    assert list_arms(load_project(clean)) == []
    traffic = LocalTarget(load_project(clean), "local").traffic().endpoints["fraud"].traffic
    assert "control" not in {k for k, w in dict(traffic.weights).items() if w}
    step = record.steps[0]
    assert step.traffic.weights == {"v1": 50, "control": 25, "v2": 25}
    last = step.looks[-1].look
    assert all(last.variants[a].requests > 0 for a in ("v1", "control", "v2"))  # three real arms answered
    assert record.decision is not None and record.decision.compared_with == "control"
    report = (Path(result["run_dir"]) / "report.md").read_text()
    assert "compared with the control arm 'control'" in report and "| v1 | primary | v1 |" in report

    (clean / "mlserve.toml").write_text(
        (clean / "mlserve.toml").read_text().replace('baseline = "v2"', 'baseline = "v1"', 1)
    )
    run_cli("rollback", "fraud", cwd=clean)
    _policy(clean, control="replica", steps=[25, 100], max_duration="120s")
    _fault(clean, error_rate=0.2)
    code, result, progress = _rollout(clean)
    assert code == 3, (result["decision"], progress)
    assert _state(result).control.state == "stopped"  # type: ignore[union-attr]
    assert list_arms(load_project(clean)) == []


def _holdout_requests(root: Path, rows: int) -> list[str]:
    """V2 requests built from the first rows of init's labelled holdout."""
    lines = (root / HOLDOUT_FILE).read_text().splitlines()[1 : rows + 1]
    out = []
    for line in lines:
        feats = [float(v) for v in line.split(",")[1:-1]]
        inputs = [{"name": "input-0", "shape": [1, len(feats)], "datatype": "FP32", "data": feats}]
        out.append(json.dumps({"inputs": inputs}))
    return out


def _disagreeing(root: Path) -> list[str]:
    """Payloads on which v1 and v2 (trained on different data) answer differently.

    The two agree on about 99% of rows, so the 64 sample payloads alone may hold none;
    the holdout's first 600 rows are searched too.
    """
    url = LocalTarget(load_project(root), "local").gateway_url()
    out = []
    bodies = (root / "payloads/fraud.jsonl").read_text().splitlines() + _holdout_requests(root, 600)
    with httpx.Client(timeout=10, trust_env=False) as client:
        for body in bodies:
            answers = [
                client.post(f"{url}/v2/models/fraud/versions/{v}/infer", content=body,
                            headers={"content-type": "application/json"}).json()["outputs"]
                for v in ("v1", "v2")
            ]  # fmt: skip
            if answers[0] != answers[1]:
                out.append(body)
    return out


def test_shadow_of_a_disagreeing_candidate_fails_its_gate(clean: Path) -> None:
    _policy(clean, strategy="shadow", shadow_percent=100, shadow_agreement=0.99)
    differ = _disagreeing(clean)
    assert differ, "v1 and v2 agree on every payload: nothing to show"
    extra = Load(
        LocalTarget(load_project(clean), "local").gateway_url(), differ, threads=2, cap_seconds=LOAD_CAP_SECONDS,
        backoff=0.05,
    )  # fmt: skip
    try:
        code, result, _ = _rollout(clean)
    finally:
        extra.stop()
    assert code == 3, result["decision"]
    agreement = result["decision"]["agreement"]
    assert agreement["verdict"] == "fail"
    assert agreement["compared"] > 0 and agreement["estimate"] < 0.99
    report = (Path(result["run_dir"]) / "report.md").read_text()
    assert "agreement" in report and "ROLLED BACK" in report
    assert any(e.get("event") == "transition" and e.get("weights") == {"v1": 100} for e in _events(result))


def _current(root: Path) -> RunDir:
    return RunDir(root / "experiments/fraud" / (root / "experiments/fraud/current").read_text().strip())


def _prometheus_pid(root: Path) -> int:
    state = json.loads((root / ".mlserve/local/state.json").read_text())
    return int(state["processes"]["prometheus"]["pid"])


def _spawn_run(root: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NO_COLOR": "1"}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mlserve", "rollout", "run", "fraud"],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _wait_for(run: RunDir, pred: Any, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(pred(e) for e in run.read_events()):
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out; events: {[e.get('event') for e in run.read_events()]}")


def test_prometheus_stopped_mid_run_holds_and_never_promotes(clean: Path, tmp_path: Path) -> None:
    _policy(clean, max_duration="25s", on_inconclusive="promote", min_requests=100_000)
    assert run_cli("rollout", "start", "fraud", "--candidate", "v2", cwd=clean).exit_code == 0
    run = _current(clean)
    proc = _spawn_run(clean, tmp_path / "run.log")
    prom = _prometheus_pid(clean)
    try:
        _wait_for(run, lambda e: e.get("event") == "look", 40)
        os.kill(prom, signal.SIGSTOP)
        code = proc.wait(timeout=90)
    finally:
        os.kill(prom, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    state = run.read_state()
    assert code == 4, (tmp_path / "run.log").read_text()
    assert state.status == "inconclusive"
    assert state.last_hold is not None and "did not answer" in state.last_hold.reason
    assert state.outcome is not None and "never promotes without data" in state.outcome.reason
    assert any(e.get("event") == "held" for e in run.read_events())
    assert "held: Prometheus" in (tmp_path / "run.log").read_text()  # the reason is shown while it holds
    assert 'baseline = "v1"' in (clean / "mlserve.toml").read_text()


def test_run_killed_with_sigkill_resumes_without_repeating_a_step(clean: Path, tmp_path: Path) -> None:
    _policy(clean, steps=[45, 55, 100], max_duration="120s")
    assert run_cli("rollout", "start", "fraud", "--candidate", "v2", cwd=clean).exit_code == 0
    run = _current(clean)
    proc = _spawn_run(clean, tmp_path / "run.log")
    try:
        # killed right after the first step's first look: the run needs at least one more
        # interval (2 s) before it can finish, so it is still running (on a quiet machine
        # "any look >= 2" matched the promoting look of the second step: a race)
        _wait_for(run, lambda e: e.get("event") == "look" and e.get("step") == 0 and e.get("look", 0) >= 1, 60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = run.read_state()
    assert before.status == "running"
    res = run_cli("rollout", "resume", "fraud", "--json", cwd=clean)
    assert res.exit_code == 0, res.output
    state = run.read_state()
    assert state.status == "promoted" and state.pending is None
    events = run.read_events()
    assert any(e["event"] == "resumed_after_crash" for e in events)
    entered = [e["step"] for e in events if e["event"] == "transition" and e.get("action") == "enter_step"]
    assert entered == [0, 1]
    seqs = [t.seq for t in state.transitions]
    assert seqs == list(range(1, len(seqs) + 1))
    # looks continue where they were: numbering within step 1 has no gap and no repeat
    looks = [e["look"] for e in events if e["event"] == "look" and e["step"] == 0]
    assert looks == list(range(1, len(looks) + 1))
    assert [s.traffic.weights["v2"] for s in state.steps] == [45, 55]


class Shoppers:
    """Users who get a prediction (sticky by user key) and then report whether they bought;
    the candidate's users buy less often."""

    def __init__(self, url: str, body: str, buy: dict[str, float], threads: int = 2) -> None:
        import random

        self.url, self.body, self.buy = url, body, buy
        self.rng = random.Random(7)
        self.done = threading.Event()
        self.stop_at = time.monotonic() + 120
        self.threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def _work(self, i: int) -> None:
        n = 0
        with httpx.Client(timeout=10, trust_env=False) as client:
            while not self.done.is_set() and time.monotonic() < self.stop_at:
                n += 1
                user = {"x-user-id": f"shopper-{i}-{n}"}
                try:
                    r = client.post(f"{self.url}/v2/models/fraud/infer", content=self.body,
                                    headers={"content-type": "application/json", **user})  # fmt: skip
                    variant = r.headers.get("x-mlserve-variant", "")
                    outcome = "purchase" if self.rng.random() < self.buy.get(variant, 0.0) else "leave"
                    client.post(f"{self.url}/v2/models/fraud/feedback", json={"outcome": outcome}, headers=user)
                except httpx.HTTPError:
                    time.sleep(0.05)

    def stop(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(timeout=15)


def test_ab_is_judged_on_a_business_ratio_from_feedback(clean: Path) -> None:
    selector = 'endpoint="{endpoint}",variant="{variant}"'
    conversion = {
        "name": "conversion",
        "kind": "ratio",
        "direction": "higher",
        "margin": "10%",
        "numerator": f'sum(increase(mlserve_feedback_total{{{selector},outcome="purchase"}}[{{window}}])) or vector(0)',
        "denominator": f"sum(increase(mlserve_feedback_total{{{selector}}}[{{window}}]))",
    }
    _policy(clean, strategy="ab", ab_duration="60s", metrics=[METRICS[0], conversion])
    url = LocalTarget(load_project(clean), "local").gateway_url()
    body = (clean / "payloads/fraud.jsonl").read_text().splitlines()[0]
    shoppers = Shoppers(url, body, {"v1": 0.4, "v2": 0.1})
    try:
        code, result, _ = _rollout(clean)
    finally:
        shoppers.stop()
    assert code == 3, result["decision"]
    state = _state(result)
    assert state.steps[0].traffic.mode == "ab"
    assert state.decision is not None
    metric = next(m.to_dict() for m in state.decision.metrics if m.name == "conversion")
    assert metric["verdict"] == "fail" and metric["candidate"] < metric["baseline"]
    assert state.steps[0].looks[-1].look.variants["v2"].custom["conversion"].denominator > 0
