"""Changes to a running local deployment without a dropped request (real processes: small V2
servers of the ``custom`` runtime, the gateway, a real Prometheus, locust).

One deployment for the module; tests run in file order and build on each other. The slow
variant with MLServer and ten deploys is tests/reliability/test_no_drop.py.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlserve.errors import UsageError
from mlserve.local.state import pid_alive
from mlserve.project import load_project
from mlserve.targets.local import LocalTarget
from tests.conftest import run_cli
from tests.support.load import Load
from tests.support.nodrop import desired, locust, pid, scrape_gaps, scraped, state

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

TINY = Path(__file__).with_name("tiny_v2.py")
SCRAPE = 1.0
BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1]}]})


def manifest(
    versions: dict[str, str], *, faults: str = "", limits: str = "", port_of: dict[str, int] | None = None
) -> str:
    """The project: endpoint ``echo`` whose versions answer ``value`` (or run ``crash``)."""
    out = [
        '[project]\nname = "nodrop"\n',
        f'[environments.dev]\ntarget = "local"\nscrape_interval = "{SCRAPE:g}s"\n',
        '[endpoints.echo]\nruntime = "custom"\nbaseline = "a"\n',
        "[endpoints.echo.rollout]\nsteps = [10, 50, 100]\n",
    ]
    for name, value in versions.items():
        if value == "crash":
            cmd = [sys.executable, "-c", "raise SystemExit('boom: cannot load the model on {port}')"]
        else:
            cmd = [sys.executable, str(TINY), "--port", "{port}", "--model", "echo", "--value", value]
        port = f"port = {port_of[name]}\n" if port_of and name in port_of else ""
        out.append(f'[endpoints.echo.versions.{name}]\nmodel_uri = "models/echo"\ncommand = {json.dumps(cmd)}\n{port}')
    if faults:
        out.append(faults)
    if limits:
        out.append(limits)
    return "\n".join(out)


BASE = {"a": "1", "b": "2"}


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("nodrop") / "echo"
    (root / "models/echo").mkdir(parents=True)
    (root / "mlserve.toml").write_text(manifest(BASE))
    mp = pytest.MonkeyPatch()
    mp.setenv("NO_COLOR", "1")
    mp.setenv("COLUMNS", "200")
    try:
        res = run_cli("deploy", cwd=root)
        assert res.exit_code == 0, res.output
        yield root
    finally:
        run_cli("down", cwd=root)
        mp.undo()


def _deploy(root: Path, text: str, *extra: str) -> Any:
    (root / "mlserve.toml").write_text(text)
    return run_cli("--json", "deploy", *extra, cwd=root)


def _target(root: Path) -> LocalTarget:
    return LocalTarget(load_project(root), "dev")


def _load(root: Path) -> Load:
    return Load(desired(root)["gateway_url"], [BODY], endpoint="echo", cap_seconds=300.0, backoff=0.01)


def _pinned(root: Path, version: str) -> float:
    url = desired(root)["gateway_url"]
    r = httpx.post(f"{url}/v2/models/echo/versions/{version}/infer", content=BODY, timeout=10, trust_env=False)
    assert r.status_code == 200, r.text
    return float(r.json()["outputs"][0]["data"][0])


def test_deploys_under_locust_load_drop_nothing_and_restart_nothing(echo: Path) -> None:
    """The short, default-run variant of the ten-deploy test: add a version, inject a fault,
    change the gateway's limits, remove the version, under a steady locust load."""
    root = echo
    keep = {n: pid(root, n) for n in ("gateway", "prometheus", "echo/a", "echo/b")}
    load = locust(root, "echo", users=4)
    since = scraped(desired(root)["prometheus_url"], "mlserve-gateway")
    changes = [
        ("add version c", manifest({**BASE, "c": "3"})),
        ("latency fault on b", manifest({**BASE, "c": "3"}, faults="[environments.dev.faults.echo.b]\nlatency_ms = 5\n")),
        ("gateway limits", manifest({**BASE, "c": "3"}, limits="[environments.dev.limits]\nmax_body_bytes = 2097152\nupstream_timeout = \"20s\"\n")),
        ("remove version c", manifest(BASE, limits="[environments.dev.limits]\nmax_body_bytes = 2097152\n")),
    ]  # fmt: skip
    try:
        for what, text in changes:
            res = _deploy(root, text)
            assert res.exit_code == 0, (what, res.output)
            assert {n: pid(root, n) for n in keep} == keep, what  # nothing restarted
        # two more scrapes after the last change, and a window of at least six scrapes in all
        # (on a quiet machine the four deploys take under three seconds)
        time.sleep(max(2 * SCRAPE, since + 6 * SCRAPE - time.time()) + 0.5)
    finally:
        result = load.stop()
    summary = result.summary
    assert summary["requests"] > 100 and summary["failures"] == 0, (summary["failures"], summary["errors"])
    samples, gap, values = scrape_gaps(desired(root)["prometheus_url"], "mlserve-gateway", since)
    assert samples >= 5 and values == ["1"]
    assert gap <= 2 * SCRAPE, gap
    routed = _target(root).traffic().endpoints["echo"]
    assert set(routed.versions) == {"a", "b"} and routed.versions["b"].fault.latency_ms == 0


def test_a_changed_version_starts_beside_the_old_one_and_takes_over(echo: Path) -> None:
    root = echo
    _target(root).set_traffic("echo", {"a": 50, "b": 50})
    old_b, gateway = pid(root, "echo/b"), pid(root, "gateway")
    load = _load(root)
    t0 = time.monotonic()
    try:
        res = _deploy(root, manifest({"a": "1", "b": "5"}))
        time.sleep(0.5)
    finally:
        load.stop()
    assert res.exit_code == 0, res.output
    assert res.json["result"]["restarted"] == ["echo/b"]
    assert pid(root, "gateway") == gateway and pid(root, "echo/b") != old_b and not pid_alive(old_b)
    events = load.since(t0)
    assert len(events) > 50 and set(load.outcomes(events)) == {"200"}, load.outcomes(events)
    assert _pinned(root, "b") == 5.0
    # the new server was healthy before the old one was told to stop
    log = (root / ".mlserve/logs/supervisor.log").read_text().splitlines()
    healthy = max(i for i, line in enumerate(log) if line.endswith("echo/b healthy"))
    stopping = next(i for i, line in enumerate(log) if f"echo/b (pid {old_b}): changed, stopping" in line)
    assert healthy < stopping


def test_a_version_that_fails_to_start_leaves_the_running_ones_untouched(echo: Path) -> None:
    root = echo
    before = {n: pid(root, n) for n in ("gateway", "prometheus", "echo/a", "echo/b")}
    doc_before = desired(root)["processes"]
    load = _load(root)
    t0 = time.monotonic()
    try:
        res = _deploy(root, manifest({"a": "1", "b": "crash"}), "--timeout", "60")
        new_version = _deploy(root, manifest({"a": "1", "b": "5", "d": "crash"}), "--timeout", "60")
    finally:
        load.stop()
    for r, name in ((res, "echo/b"), (new_version, "echo/d")):
        assert r.exit_code == 1, r.output
        message = r.json["error"]["message"]
        assert f"{name} exited (code 1) before it was healthy" in message and "boom: cannot load the model" in message
        assert "the deployment is as it was before this deploy" in message and "kept running, unchanged" in message
    assert {n: pid(root, n) for n in before} == before
    assert [p["fingerprint"] for p in desired(root)["processes"]] == [p["fingerprint"] for p in doc_before]
    assert "d" not in _target(root).traffic().endpoints["echo"].versions
    assert _pinned(root, "b") == 5.0
    events = load.since(t0)
    assert len(events) > 50 and set(load.outcomes(events)) == {"200"}, load.outcomes(events)
    again = _deploy(root, manifest({"a": "1", "b": "5"}))
    assert again.exit_code == 0 and again.json["result"]["changed"] is False, again.output


def test_an_extra_arm_is_routed_once_ready_kept_by_deploy_and_drained_before_it_stops(echo: Path) -> None:
    from mlserve.local.arms import list_arms, start_arm, stop_arm

    root = echo
    project = load_project(root)
    with pytest.raises(UsageError, match="is a version of endpoint"):
        start_arm(project, "dev", "echo", "a", "a")
    with pytest.raises(UsageError, match="has no version"):
        start_arm(project, "dev", "echo", "control", "zz")
    gateway = pid(root, "gateway")
    load = _load(root)
    t0 = time.monotonic()
    try:
        arm = start_arm(project, "dev", "echo", "control", "a")
        assert arm.pid is not None and pid_alive(arm.pid) and arm.version == "a"
        routed = _target(root).traffic().endpoints["echo"]
        assert routed.versions["control"].url == arm.url and routed.versions["control"].weight == 0
        _target(root).set_traffic("echo", {"a": 50, "b": 0, "control": 50})
        time.sleep(0.5)
        res = _deploy(
            root, manifest({"a": "1", "b": "5"}, faults="[environments.dev.faults.echo.b]\nerror_rate = 0.5\n")
        )
        assert res.exit_code == 0, res.output
        assert [a.pid for a in list_arms(load_project(root))] == [arm.pid]  # the deploy kept it
        assert _target(root).traffic().endpoints["echo"].versions["control"].weight == 50
        _target(root).set_traffic("echo", {"a": 100})
        stop_arm(load_project(root), "dev", "echo", "control")
        time.sleep(0.3)
    finally:
        load.stop()
    assert not pid_alive(arm.pid) and list_arms(load_project(root)) == []
    assert "control" not in _target(root).traffic().endpoints["echo"].versions
    assert pid(root, "gateway") == gateway
    events = load.since(t0)
    served = {e.outcome for e in events}
    assert len(events) > 50 and served == {"200"}, load.outcomes(events)
    metrics = httpx.get(f"{desired(root)['gateway_url']}/metrics", trust_env=False).text
    assert 'variant="control"' in metrics  # the arm's requests are counted under its name


def test_deploy_during_a_local_rollout_keeps_its_weights_and_arms(echo: Path) -> None:
    root = echo
    assert run_cli("rollout", "start", "echo", "--candidate", "b", cwd=root).exit_code == 0
    step = run_cli("--json", "rollout", "step", "echo", cwd=root)
    assert step.exit_code == 4, step.output
    live = dict(_target(root).traffic().endpoints["echo"].traffic.weights)
    # the default control: a fresh server of a with the candidate's share (an extra arm)
    assert live == {"a": 80, "control": 10, "b": 10}
    try:
        res = _deploy(root, manifest({"a": "1", "b": "5"}, faults="[environments.dev.faults.echo.a]\nlatency_ms = 1\n"))
        assert res.exit_code == 0, res.output
        assert dict(_target(root).traffic().endpoints["echo"].traffic.weights) == live
        (kept,) = res.json["result"]["rollouts"]
        assert kept["gateway_weights"] == live and kept["arms"] == ["a", "b", "control"]
        human = run_cli("deploy", cwd=root)
        assert "of echo is in progress (a -> b, running, step 1/2): kept its traffic (" in human.stdout
        # a deploy that would remove the rollout's candidate is refused, and changes nothing
        refused = _deploy(root, manifest({"a": "1"}))
        assert refused.exit_code == 1 and "is in progress with b as its candidate" in refused.json["error"]["message"]
        assert dict(_target(root).traffic().endpoints["echo"].traffic.weights) == live
    finally:
        (root / "mlserve.toml").write_text(manifest({"a": "1", "b": "5"}))
        run_cli("rollout", "abort", "echo", cwd=root)
    # the abort stopped the control: its arm left the gateway's routes
    assert dict(_target(root).traffic().endpoints["echo"].traffic.weights) == {"a": 100, "b": 0}


def test_new_gateway_code_hands_the_sockets_over_without_a_failure(echo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlserve.local import plan

    root = echo
    old, prom = pid(root, "gateway"), pid(root, "prometheus")
    url = desired(root)["gateway_url"]
    monkeypatch.setattr(plan, "_gateway_code_stamp", lambda: "a new gateway")
    load = _load(root)
    t0 = time.monotonic()
    try:
        res = _deploy(root, manifest({"a": "1", "b": "5"}, faults="[environments.dev.faults.echo.a]\nlatency_ms = 1\n"))
        time.sleep(0.5)
    finally:
        load.stop()
    assert res.exit_code == 0, res.output
    assert res.json["result"]["restarted"] == ["gateway"]
    assert pid(root, "gateway") != old and not pid_alive(old) and pid(root, "prometheus") == prom
    assert desired(root)["gateway_url"] == url
    events = load.since(t0)
    assert len(events) > 50 and set(load.outcomes(events)) == {"200"}, load.outcomes(events)
    assert state(root)["retiring"] == []
