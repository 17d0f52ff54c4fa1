"""Faults on the local target with real processes: MLServer per version, the gateway, a real
Prometheus, ``mlserve rollout run`` as a child process, and a steady background load whose
every answer is counted (what a user would have seen).

One deployment for the module. Each test writes its policy into mlserve.toml; ``clean``
puts faults, traffic, the manifest and the run records back afterwards.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from mlserve.local.gateway_config import Fault
from mlserve.project import load_project
from mlserve.rollout.store import RunDir
from mlserve.targets.local import LocalTarget
from tests.conftest import run_cli
from tests.reliability.conftest import Recorder
from tests.support.deploy import deployed_project
from tests.support.load import Load
from tests.support.nodrop import outage
from tests.support.policy import set_policy

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

LOAD_CAP_SECONDS = 400.0
METRICS = [
    {"name": "error_rate", "kind": "error_rate", "margin": 0.01, "critical": True},
    {"name": "latency_p95", "kind": "latency", "quantile": 0.95, "margin": "50%"},
]


def tally(before: Counter[str], after: Counter[str]) -> tuple[int, int, int, dict[str, int]]:
    """sent, failed (answered but not 200), lost (no answer), by code."""
    diff = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}
    sent = sum(diff.values())
    lost = sum(v for k, v in diff.items() if k.startswith("no answer"))
    failed = sum(v for k, v in diff.items() if k != "200" and not k.startswith("no answer"))
    return sent, failed, lost, diff


class Deployment:
    def __init__(self, root: Path, load: Load) -> None:
        self.root = root
        self.load = load

    def target(self) -> LocalTarget:
        return LocalTarget(load_project(self.root), "local")

    def pid(self, name: str) -> int:
        state = json.loads((self.root / ".mlserve/local/state.json").read_text())
        return int(state["processes"][name]["pid"])

    def token(self) -> str:
        return (self.root / ".mlserve/admin-token").read_text().strip()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, scaffolded: Path) -> Iterator[Deployment]:
    with deployed_project(tmp_path_factory, scaffolded, "faults") as root:
        url = LocalTarget(load_project(root), "local").gateway_url()
        load = Load(url, (root / "payloads/fraud.jsonl").read_text().splitlines(), cap_seconds=LOAD_CAP_SECONDS)
        try:
            yield Deployment(root, load)
        finally:
            load.stop()


def _healthy(d: Deployment, timeout: float = 60.0) -> None:
    """Every version answers through its pinned route (after a kill, the supervisor or a
    reconciling deploy brings it back)."""
    url = d.target().gateway_url()
    body = (d.root / "payloads/fraud.jsonl").read_text().splitlines()[0]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            codes = {
                v: httpx.post(f"{url}/v2/models/fraud/versions/{v}/infer", content=body, timeout=5).status_code
                for v in ("v1", "v2")
            }
            if set(codes.values()) == {200}:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("the deployment did not become healthy again")


@pytest.fixture
def clean(deployed: Deployment) -> Iterator[Deployment]:
    original = (deployed.root / "mlserve.toml").read_text()
    yield deployed
    res = run_cli("deploy", "--env", "local", cwd=deployed.root)
    assert res.exit_code == 0, res.output
    target = deployed.target()
    for v in ("v1", "v2"):
        target.set_fault("fraud", v, Fault())
    (deployed.root / "mlserve.toml").write_text(original)
    if run_cli("rollback", "fraud", cwd=deployed.root).exit_code not in (0, 4):
        run_cli("rollout", "abort", "fraud", cwd=deployed.root)
        run_cli("rollback", "fraud", cwd=deployed.root)
    target.set_traffic("fraud", {"v1": 100})
    _healthy(deployed)


def _policy(root: Path, **keys: Any) -> None:
    base: dict[str, Any] = {
        "strategy": "canary",
        "interval": "2s",
        "max_duration": "90s",
        "min_requests": 200,
        "steps": [50, 100],
        "on_inconclusive": "rollback",
        "metrics": METRICS,
        # These faults are measured on the two-arm split (candidate against the primary,
        # per-request test); the killed candidate is measured with the replica control too.
        "control": "primary",
    }
    set_policy(root, **{**base, **keys})


def _current(root: Path) -> RunDir:
    return RunDir(root / "experiments/fraud" / (root / "experiments/fraud/current").read_text().strip())


def _spawn(root: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mlserve", *args],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )


def _wait_for(run: RunDir, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for e in run.read_events():
            if pred(e):
                return e
        time.sleep(0.2)
    raise AssertionError(f"timed out; events: {[e.get('event') for e in run.read_events()]}")


def _looks(run: RunDir) -> list[dict[str, Any]]:
    return [e for e in run.read_events() if e.get("event") == "look"]


def _decisions(run: RunDir) -> str:
    out = []
    for e in run.read_events():
        kind = e.get("event")
        if kind == "transition":
            out.append(f"{e.get('action')}{'@' + str(e.get('weights')) if e.get('weights') else ''}")
        elif kind == "held":
            out.append("held")
    collapsed: list[str] = []
    for x in out:
        if not collapsed or collapsed[-1].split(" x")[0] != x:
            collapsed.append(x)
        else:
            n = int(collapsed[-1].split(" x")[1]) if " x" in collapsed[-1] else 1
            collapsed[-1] = f"{x} x{n + 1}"
    return ", ".join(collapsed)


# ---------------------------------------------------------------------------
# Traffic moved under load
# ---------------------------------------------------------------------------


def test_weights_from_0_to_100_under_load_lose_nothing(clean: Deployment, reliability: Recorder) -> None:
    target = clean.target()
    before = clean.load.snapshot()
    for w in [0, 5, 10, 25, 50, 75, 90, 100, 50, 0]:
        target.set_traffic("fraud", {"v1": 100 - w, "v2": w})
        time.sleep(0.4)
    sent, failed, lost, codes = tally(before, clean.load.snapshot())
    reliability.case(
        "faults",
        "candidate weight moved 0-5-10-25-50-75-90-100-50-0 every 0.4 s under 4 concurrent clients (real MLServer)",
        expected="zero failed or lost requests",
        measured=f"answers: {codes}",
        sent=sent,
        failed=failed,
        lost=lost,
        decisions="10 weight changes through the admin API",
    )
    assert sent > 50
    assert failed == 0 and lost == 0, codes


# ---------------------------------------------------------------------------
# The candidate's model server killed during a canary
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("control", "delay"), [("primary", 0.0), ("replica", 0.0), ("replica", 1.6)])
def test_candidate_killed_during_canary_rolls_back_and_users_see_nothing(
    clean: Deployment, tmp_path: Path, reliability: Recorder, control: str, delay: float
) -> None:
    """Against the primary the per-request error test rejects at the next look; against the
    replica control (the default, interval test: five looks at the least) the hard-failure
    guard ends the step: max_error_rate, or, when the kill fell late in an interval (under
    half of its requests failed) and the retried requests already skew the split, the
    mismatch those retries account for (never a sample-ratio halt). ``delay`` kills it that
    long after a look (the interval is 2 s): 1.6 s puts the kill late in an interval."""
    root = clean.root
    # never promotes by itself
    _policy(root, steps=[50, 100], min_requests=100_000, max_duration="60s", control=control)
    assert run_cli("rollout", "start", "fraud", "--candidate", "v2", cwd=root).exit_code == 0
    run = _current(root)
    before = clean.load.snapshot()
    proc = _spawn(root, tmp_path / "run.log", "rollout", "run", "fraud")
    try:
        _wait_for(run, lambda e: e.get("event") == "look", 40)
        looks_before = len(_looks(run))
        time.sleep(delay)
        os.kill(clean.pid("fraud/v2"), signal.SIGKILL)
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    after = clean.load.snapshot()
    state = run.read_state()
    looks_after = len(_looks(run)) - looks_before
    sent, failed, lost, codes = tally(before, after)
    failing = [m.name for m in (state.decision.metrics if state.decision else ()) if m.verdict == "fail"]
    reliability.case(
        "faults",
        f"candidate's MLServer killed with -9 during a 50% canary step (control = {control!r}"
        + (f", {delay:g} s after a look)" if delay else ")"),
        expected="gateway retries on the baseline (no user-visible failure); errors counted against the "
        "candidate; rolled back within 2 looks (exit 3)",
        measured=f"exit {code}, status {state.status}, {looks_after} look(s) after the kill, "
        f"failing metrics {failing}; user answers {codes}",
        sent=sent,
        failed=failed,
        lost=lost,
        decisions=_decisions(run),
    )
    assert code == 3, (tmp_path / "run.log").read_text()[-3000:]
    assert state.status == "rolled_back"
    assert state.decision is not None
    if control == "primary":
        assert "error_rate" in failing
    else:
        reason = state.decision.reason
        assert ("max_error_rate" in reason and "hard failure" in reason) or "retries of those requests" in reason
    assert looks_after <= 2
    assert failed == 0 and lost == 0, codes
    assert dict(clean.target().traffic().endpoints["fraud"].traffic.weights) == {"v1": 100, "v2": 0}


# ---------------------------------------------------------------------------
# The gateway restarts in the middle of a rollout
# ---------------------------------------------------------------------------


def test_gateway_killed_mid_rollout_is_restored_by_deploy_and_the_rollout_continues(
    clean: Deployment, tmp_path: Path, reliability: Recorder
) -> None:
    root = clean.root
    _policy(root, steps=[25, 50, 100], max_duration="120s")
    assert run_cli("rollout", "start", "fraud", "--candidate", "v2", cwd=root).exit_code == 0
    run = _current(root)
    proc = _spawn(root, tmp_path / "run.log", "rollout", "run", "fraud")
    before = clean.load.snapshot()
    try:
        _wait_for(run, lambda e: e.get("event") == "look", 40)
        weights_before = dict(clean.target().traffic().endpoints["fraud"].traffic.weights)
        old_pid = clean.pid("gateway")
        os.kill(old_pid, signal.SIGKILL)
        t_kill = time.monotonic()
        res = run_cli("deploy", "--env", "local", cwd=root)
        restored_after = time.monotonic() - t_kill
        weights_restored = dict(clean.target().traffic().endpoints["fraud"].traffic.weights)
        new_pid = clean.pid("gateway")
        code = proc.wait(timeout=150)
        resumed = ""
        if code not in (0, 3):  # the run stopped on the outage: resume continues it
            resumed = f" (run exited {code}; resumed)"
            r = run_cli("rollout", "resume", "fraud", "--json", cwd=root)
            code = r.exit_code
    finally:
        if proc.poll() is None:
            proc.kill()
    sent, failed, lost, codes = tally(before, clean.load.snapshot())
    state = run.read_state()
    reliability.case(
        "faults",
        "gateway killed with -9 after the first look of a canary; `mlserve deploy` run at once",
        expected="the supervisor restarts the gateway at once on the sockets it holds, with the persisted weights "
        "(deploy finds it running); the rollout continues to its end; only requests in flight at the kill get no "
        "answer, none is refused",
        measured=f"deploy exit {res.exit_code}, gateway back after {restored_after:.1f} s "
        f"(pid {old_pid} -> {new_pid}), weights {weights_before} -> {weights_restored}; "
        f"rollout exit {code}{resumed}, status {state.status}; user answers {codes}",
        sent=sent,
        failed=failed,
        lost=lost,
        decisions=_decisions(run),
    )
    assert res.exit_code == 0, res.output
    assert new_pid != old_pid
    assert weights_restored == weights_before
    assert lost <= clean.load.n_threads and not any("ConnectError" in k for k in codes), codes
    assert code == 0 and state.status == "promoted", (tmp_path / "run.log").read_text()[-3000:]


# ---------------------------------------------------------------------------
# The gateway or the supervisor killed under load
# ---------------------------------------------------------------------------


def _state(root: Path) -> dict[str, Any]:
    return json.loads((root / ".mlserve/local/state.json").read_text())


def _restarted(d: Deployment, old: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rec = _state(d.root)["processes"]["gateway"]
        if rec.get("pid") not in (None, old) and rec.get("status") == "healthy":
            return
        time.sleep(0.05)
    raise AssertionError("the gateway was not restarted")


def test_gateway_killed_with_9_under_load_answers_again_at_once(clean: Deployment, reliability: Recorder) -> None:
    """The supervisor holds the gateway's listening sockets: while a killed gateway restarts,
    connections wait in the socket's backlog instead of being refused; what fails is what the
    killed process had in flight."""
    target = clean.target()
    target.set_traffic("fraud", {"v1": 50, "v2": 50})
    time.sleep(1.0)
    kills = []
    for _ in range(3):
        old = clean.pid("gateway")
        t_kill = time.monotonic()
        os.kill(old, signal.SIGKILL)
        _restarted(clean, old)
        time.sleep(2.0)
        kills.append((old, clean.pid("gateway"), outage(clean.load.since(t_kill - 0.001), t_kill)))
    weights = dict(target.traffic().endpoints["fraud"].traffic.weights)
    backs = [o.back for _, _, o in kills]
    refused = sum(n for _, _, o in kills for k, n in o.outcomes.items() if "ConnectError" in k)
    reliability.case(
        "faults",
        "gateway killed with -9 under load (4 keep-alive clients, v1/v2 50/50), 3 times, 3 s apart",
        expected="the supervisor restarts it at once on the listening sockets it holds: answers again within "
        "about a second, no connection refused; only requests the killed process had in flight get no answer; "
        "weights kept",
        measured=f"answered again after {', '.join(f'{b:.2f}' for b in backs)} s (median "
        f"{statistics.median(backs):.2f} s); without an answer: {', '.join(str(o.lost) for _, _, o in kills)} "
        f"({'; '.join(str(o.outcomes) for _, _, o in kills)}); longest wait of a request sent in the second after "
        f"a kill {max(o.longest_wait for _, _, o in kills):.2f} s; connections refused: {refused}; weights after: "
        f"{weights}",
        sent=sum(o.sent for _, _, o in kills),
        failed=sum(o.failed for _, _, o in kills),
        lost=sum(o.lost for _, _, o in kills),
        decisions="gateway pid " + ", ".join(f"{a} -> {b}" for a, b, _ in kills),
        recovery_seconds=[round(b, 3) for b in backs],
    )
    assert all(a != b for a, b, _ in kills) and refused == 0, kills
    assert max(backs) < 5.0, backs
    assert all(o.failed == 0 and o.lost <= clean.load.n_threads for _, _, o in kills), kills
    assert weights == {"v1": 50, "v2": 50}


def test_supervisor_killed_with_9_changes_nothing_clients_see_and_is_adopted(
    clean: Deployment, reliability: Recorder
) -> None:
    root = clean.root
    names = ("fraud/v1", "fraud/v2", "gateway", "prometheus")
    before = {n: clean.pid(n) for n in names}
    sup = _state(root)["supervisor"]
    t_kill = time.monotonic()
    os.kill(sup["pid"], signal.SIGKILL)
    time.sleep(4.0)
    without = outage(clean.load.since(t_kill), t_kill)
    status = run_cli("--json", "status", cwd=root)
    t_deploy = time.monotonic()
    res = run_cli("--json", "deploy", "--env", "local", cwd=root)
    adopt_s = time.monotonic() - t_deploy
    after = {n: clean.pid(n) for n in names}
    new_sup = _state(root)["supervisor"]["pid"]
    took_over = (root / ".mlserve/logs/supervisor.log").read_text().count("listening socket of gateway")
    # the adopting supervisor holds the adopted gateway's sockets now: a crash refuses nothing
    time.sleep(1.0)
    old = clean.pid("gateway")
    t_crash = time.monotonic()
    os.kill(old, signal.SIGKILL)
    _restarted(clean, old)
    time.sleep(2.0)
    crash = outage(clean.load.since(t_crash - 0.001), t_crash)
    reliability.case(
        "faults",
        "supervisor killed with -9 under load; 4 s later `mlserve deploy`; then the gateway killed with -9",
        expected="no failed request while no supervisor runs; deploy adopts every process (none restarted) and "
        "takes the gateway's listening sockets over, so the next gateway crash refuses no connection either",
        measured=f"without a supervisor: {without.sent} requests, outcomes other than 200: {without.outcomes or 'none'}; "
        f"status exit {status.exit_code} (supervisor_alive {status.json['result']['supervisor_alive']}); deploy exit "
        f"{res.exit_code} in {adopt_s:.1f} s, started {res.json['result']['started']}, restarted "
        f"{res.json['result']['restarted']}, pids unchanged: {after == before}, supervisor {sup['pid']} -> {new_sup}, "
        f"sockets taken over: {took_over}; the gateway crash afterwards: answered again after {crash.back:.2f} s, "
        f"{crash.lost} without an answer {crash.outcomes}",
        sent=without.sent,
        failed=without.failed,
        lost=without.lost,
        decisions="adopted " + ", ".join(f"{n} (pid {before[n]})" for n in names),
    )
    assert without.sent > 50 and without.failed == 0 and without.lost == 0, without
    assert status.exit_code == 0 and status.json["result"]["supervisor_alive"] is False
    assert res.exit_code == 0 and res.json["result"]["started"] == [] and res.json["result"]["restarted"] == []
    assert after == before and new_sup != sup["pid"]
    assert took_over >= 2, "both listeners of the adopted gateway"
    assert not any("ConnectError" in k for k in crash.outcomes) and crash.lost <= clean.load.n_threads, crash


# ---------------------------------------------------------------------------
# Prometheus stops, then comes back
# ---------------------------------------------------------------------------


def test_prometheus_paused_holds_the_rollout_and_it_continues_when_back(
    clean: Deployment, tmp_path: Path, reliability: Recorder
) -> None:
    root = clean.root
    # min_requests well above what one 2 s look collects: on a quiet machine the first look
    # otherwise already promotes (CI, 2026-12-02: 1,008 / 990 requests at look 1 against a
    # minimum of 800), and a finished run has nothing left to hold; on_inconclusive = promote
    # ends it at the deadline where a slow machine never reaches the minimum.
    _policy(root, steps=[50, 100], max_duration="120s", on_inconclusive="promote", min_requests=5000)
    assert run_cli("rollout", "start", "fraud", "--candidate", "v2", cwd=root).exit_code == 0
    run = _current(root)
    log = tmp_path / "run.log"
    proc = _spawn(root, log, "rollout", "run", "fraud")
    prom = clean.pid("prometheus")
    try:
        _wait_for(run, lambda e: e.get("event") == "look", 40)
        os.kill(prom, signal.SIGSTOP)
        _wait_for(run, lambda e: e.get("event") == "held", 30)
        time.sleep(4)
        status_during = run.read_state().status
        weights_during = dict(clean.target().traffic().endpoints["fraud"].traffic.weights)
        events_at_resume = len(run.read_events())
        os.kill(prom, signal.SIGCONT)
        code = proc.wait(timeout=120)
    finally:
        os.kill(prom, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    state = run.read_state()
    events = run.read_events()
    held = [e for e in events if e.get("event") == "held"]
    first_held = next(i for i, e in enumerate(events) if e.get("event") == "held")
    moved_while_held = [e for e in events[first_held:events_at_resume] if e.get("event") == "transition"]
    reason = str(held[0].get("reason", "")) if held else ""
    reliability.case(
        "faults",
        "Prometheus stopped (SIGSTOP) after the first look, resumed (SIGCONT) after the run held",
        expected="looks held with the reason shown, no promotion while held; rollout continues when it returns",
        measured=f"{len(held)} held look(s), reason {reason[:80]!r}, status while held {status_during}, "
        f"weights while held {weights_during}; then exit {code}, status {state.status}",
        decisions=_decisions(run),
    )
    assert held and "Prometheus" in reason and "Prometheus" in log.read_text()
    assert weights_during == {"v1": 50, "v2": 50}
    assert not moved_while_held
    assert code == 0 and state.status == "promoted", log.read_text()[-3000:]


# ---------------------------------------------------------------------------
# Two rollout commands at once, and a stale lock
# ---------------------------------------------------------------------------


def test_second_rollout_command_gets_a_lock_error_and_a_dead_holder_is_taken_over(
    clean: Deployment, tmp_path: Path, reliability: Recorder
) -> None:
    root = clean.root
    _policy(root, steps=[50, 100], max_duration="120s", min_requests=100_000, on_inconclusive="rollback")
    assert run_cli("rollout", "start", "fraud", "--candidate", "v2", cwd=root).exit_code == 0
    run = _current(root)
    proc = _spawn(root, tmp_path / "run.log", "rollout", "run", "fraud")
    try:
        _wait_for(run, lambda e: e.get("event") == "look", 40)
        second = run_cli("rollout", "step", "fraud", cwd=root)
        third = run_cli("rollout", "run", "fraud", cwd=root)
        start_again = run_cli("rollout", "start", "fraud", "--candidate", "v2", cwd=root)
        holder_pid = proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    lock_text = run.lock.read_text() if run.lock.exists() else ""
    step = run_cli("rollout", "step", "fraud", "--json", cwd=root)
    events = [e.get("event") for e in run.read_events()]
    reliability.case(
        "locks",
        "`rollout step`, `rollout run` and `rollout start` while `rollout run` holds the endpoint",
        expected="each refused with a clear lock error naming the holder; the running one proceeds",
        measured=f"exits {second.exit_code}/{third.exit_code}/{start_again.exit_code}: "
        f"{second.stderr.strip().splitlines()[0][:140] if second.stderr.strip() else ''}",
        decisions=_decisions(run),
    )
    reliability.case(
        "locks",
        "holder killed with -9, lock file left behind, then `rollout step`",
        expected="the stale lock is detected (the dead pid no longer holds it) and taken over; the step runs",
        measured=f"lock file names pid {holder_pid}: {str(holder_pid) in lock_text}; step exit {step.exit_code}; "
        f"events after: {[e for e in events if e in ('resumed_after_crash', 'lock_taken_over', 'look')][-3:]}",
    )
    for r in (second, third):
        assert r.exit_code != 0 and "Traceback" not in r.output
        assert f"locked by pid {holder_pid}" in r.stderr, r.output
    assert start_again.exit_code != 0 and "Traceback" not in start_again.output
    assert step.exit_code in (0, 3, 4), step.output
    assert "locked" not in step.output


# ---------------------------------------------------------------------------
# Read-only disk
# ---------------------------------------------------------------------------


def _read_only(paths: list[Path], args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mlserve ARGS`` with ``paths`` mounted read-only in a private mount namespace: as
    root, chmod does not stop writes, a read-only bind mount does (and nothing outside this
    one process sees it)."""
    mounts = " && ".join(f'mount --bind "{p}" "{p}" && mount -o remount,ro,bind "{p}"' for p in paths)
    argv = ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$0" -m mlserve "$@"', sys.executable, *args]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1"})  # fmt: skip


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_read_only_experiments_and_state_dirs(clean: Deployment, reliability: Recorder) -> None:
    root = clean.root
    _policy(root, steps=[50, 100], max_duration="120s")
    experiments = root / "experiments"
    experiments.mkdir(exist_ok=True)
    (experiments / "fraud").mkdir(exist_ok=True)

    # 1. experiments/ read-only: starting a rollout fails cleanly and changes nothing
    before = _tree(experiments)
    weights = dict(clean.target().traffic().endpoints["fraud"].traffic.weights)
    res = _read_only([experiments], ["rollout", "start", "fraud", "--candidate", "v2"], root)
    after = _tree(experiments)
    weights_after = dict(clean.target().traffic().endpoints["fraud"].traffic.weights)
    reliability.case(
        "disk",
        "`rollout start` with experiments/ on a read-only mount",
        expected="exit 1 with a clear message naming the path; no run directory; traffic unchanged",
        measured=f"exit {res.returncode}: {res.stderr.strip().splitlines()[0][:160] if res.stderr.strip() else ''}; "
        f"files changed: {sorted(set(after) ^ set(before))}; weights {weights} -> {weights_after}",
    )
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert "Read-only file system" in res.stderr and str(experiments) in res.stderr
    assert after == before and weights_after == weights

    # 2. a run in progress whose directory turns read-only: the step fails, state.json intact
    assert run_cli("rollout", "start", "fraud", "--candidate", "v2", cwd=root).exit_code == 0
    run = _current(root)
    time.sleep(2.5)
    state_before = run.state.read_bytes()
    res = _read_only([run.root], ["rollout", "step", "fraud"], root)
    state_after = run.state.read_bytes()
    json.loads(state_after)
    leftovers = [p.name for p in run.root.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    reliability.case(
        "disk",
        "`rollout step` with the run directory on a read-only mount",
        expected="exit 1, clear message; state.json byte-identical and valid; no temp files left",
        measured=f"exit {res.returncode}: {res.stderr.strip().splitlines()[0][:160] if res.stderr.strip() else ''}; "
        f"state.json unchanged: {state_after == state_before}; temp files: {leftovers}",
    )
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert "Read-only file system" in res.stderr
    assert state_after == state_before and not leftovers

    # 3. writable again: the next step continues from the saved state, nothing lost
    events_before = len(run.read_events())
    step = run_cli("rollout", "step", "fraud", "--json", cwd=root)
    state = run.read_state()
    reliability.case(
        "disk",
        "the same `rollout step` once the mount is writable again",
        expected="continues from the saved state: look recorded, no step skipped or repeated",
        measured=f"exit {step.exit_code}; status {state.status}; steps entered {len(state.steps)}; "
        f"events {events_before} -> {len(run.read_events())}",
        decisions=_decisions(run),
    )
    assert step.exit_code in (0, 3, 4), step.output
    assert state.steps and len(run.read_events()) > events_before

    # 4. .mlserve/ read-only: deploy (reconcile) fails cleanly, the local state stays whole
    state_dir = root / ".mlserve"
    local_before = (state_dir / "local/state.json").read_bytes()
    res = _read_only([state_dir], ["deploy", "--env", "local"], root)
    local_after = (state_dir / "local/state.json").read_bytes()
    json.loads(local_after)
    again = run_cli("deploy", "--env", "local", cwd=root)
    reliability.case(
        "disk",
        "`mlserve deploy --env local` with .mlserve/ on a read-only mount, then writable",
        expected="clear error (or a no-op that writes nothing); state.json intact; the next deploy succeeds",
        measured=f"exit {res.returncode}: {res.stderr.strip().splitlines()[0][:160] if res.stderr.strip() else ''}; "
        f"state.json unchanged: {local_after == local_before}; next deploy exit {again.exit_code}",
    )
    assert res.returncode in (0, 1) and "Traceback" not in res.stderr, res.stderr
    assert "internal error" not in res.stderr
    assert local_after == local_before
    assert again.exit_code == 0, again.output


# ---------------------------------------------------------------------------
# The admin token stays secret
# ---------------------------------------------------------------------------


def test_admin_token_is_never_printed_or_logged(clean: Deployment, reliability: Recorder) -> None:
    root = clean.root
    token = clean.token()
    outputs = {
        "status": run_cli("status", cwd=root),
        "status --json": run_cli("status", "--json", cwd=root),
        "logs gateway": run_cli("logs", "fraud", cwd=root),
        "rollout status": run_cli("rollout", "status", "fraud", cwd=root),
    }
    shown = [name for name, r in outputs.items() if token in r.output]
    files = [p for d in ("logs", "local") for p in (root / ".mlserve" / d).rglob("*") if p.is_file()] + [
        p for p in (root / "experiments").rglob("*") if p.is_file()
    ]
    in_files = [str(p.relative_to(root)) for p in files if token in p.read_text(errors="replace")]
    mode = oct((root / ".mlserve/admin-token").stat().st_mode & 0o777)
    reliability.case(
        "secrets",
        "local gateway admin token vs `mlserve status`, `status --json`, `logs`, `rollout status`, "
        ".mlserve/logs, .mlserve/local, experiments/",
        expected="the token appears nowhere but its own 0600 file",
        measured=f"commands showing it: {shown or 'none'}; files holding it: {in_files or 'none'} "
        f"(of {len(files)}); token file mode {mode}",
    )
    assert all(r.exit_code in (0, 4) for r in outputs.values()), {k: r.output[-500:] for k, r in outputs.items()}
    assert not shown and not in_files
    assert mode == "0o600"


# ---------------------------------------------------------------------------
# Prometheus answers errors, then comes back
# ---------------------------------------------------------------------------


class _Failing(http.server.BaseHTTPRequestHandler):
    """What a broken Prometheus answers: 503 with its JSON error body, to every query."""

    def do_GET(self) -> None:
        body = json.dumps({"status": "error", "errorType": "unavailable", "error": "injected: TSDB unavailable"})
        self.send_response(503)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


def _supervisor_pid(root: Path) -> int:
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "mlserve.local.supervisor" in cmd and str(root) in " ".join(cmd):
            return int(p.pid)
    raise AssertionError("no supervisor process for this project")


@pytest.mark.slow  # about two minutes: the run needs a minute of fresh looks after Prometheus returns
def test_prometheus_answering_errors_holds_and_the_rollout_continues_after(
    clean: Deployment, tmp_path: Path, reliability: Recorder
) -> None:
    root = clean.root
    _policy(root, steps=[50, 100], max_duration="120s", on_inconclusive="promote")
    assert run_cli("rollout", "start", "fraud", "--candidate", "v2", cwd=root).exit_code == 0
    run = _current(root)
    log = tmp_path / "run.log"
    proc = _spawn(root, log, "rollout", "run", "fraud")
    supervisor = _supervisor_pid(root)
    fake: http.server.HTTPServer | None = None
    try:
        _wait_for(run, lambda e: e.get("event") == "look", 40)
        prom = clean.pid("prometheus")
        port = next(c.laddr.port for c in psutil.Process(prom).net_connections("inet") if c.status == "LISTEN")
        os.kill(supervisor, signal.SIGSTOP)  # or it would restart Prometheus before the fake binds
        os.kill(prom, signal.SIGKILL)
        end = time.monotonic() + 10  # a zombie until the paused supervisor reaps it, but its port is free
        while fake is None:
            try:
                fake = http.server.HTTPServer(("127.0.0.1", port), _Failing)
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        n_events = len(run.read_events())
        held = _wait_for(run, lambda e: e.get("event") == "held", 30)
        time.sleep(3)
        during = run.read_events()[n_events:]
        weights_during = dict(clean.target().traffic().endpoints["fraud"].traffic.weights)
        fake.shutdown()
        fake.server_close()
        fake = None
        os.kill(supervisor, signal.SIGCONT)
        t_back = time.monotonic()
        res = run_cli("deploy", "--env", "local", cwd=root)
        deploy_s = time.monotonic() - t_back
        code = proc.wait(timeout=150)
        finish_s = time.monotonic() - t_back
    finally:
        if fake is not None:
            fake.shutdown()
            fake.server_close()
        os.kill(supervisor, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    state = run.read_state()
    moved = [e for e in during if e.get("event") == "transition"]
    n_held = sum(1 for e in during if e.get("event") == "held")
    reliability.case(
        "faults",
        "Prometheus replaced by a server answering 503 to every query, then restored by `mlserve deploy`",
        expected="looks held with the reason shown, weights kept, no promotion; the rollout continues when it returns",
        measured=f"{n_held} held look(s) in 3 s, reason {str(held.get('reason', ''))[:90]!r}, weights {weights_during}, "
        f"{len(moved)} transitions while failing; deploy exit {res.exit_code} in {deploy_s:.1f} s; then exit {code}, "
        f"status {state.status} {finish_s:.0f} s after Prometheus was back",
        decisions=_decisions(run),
    )
    assert "Prometheus" in str(held.get("reason", "")) or "503" in str(held.get("reason", ""))
    assert weights_during == {"v1": 50, "v2": 50} and not moved
    assert res.exit_code == 0, res.output
    assert code == 0 and state.status == "promoted", log.read_text()[-3000:]
