"""Bad inputs to `mlserve deploy --env local`: clear messages, exit 1, nothing left running."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]


def _nothing_started(project: Path) -> None:
    assert not (project / ".mlserve/local/state.json").exists()
    assert not (project / ".mlserve/local/desired.json").exists()


def _set_env_key(project: Path, line: str) -> None:
    manifest = project / "mlserve.toml"
    text = manifest.read_text()
    anchor = 'scrape_interval = "1s"\n'
    assert anchor in text
    manifest.write_text(text.replace(anchor, anchor + line + "\n", 1))


def test_fixed_port_in_use(project: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        _set_env_key(project, f"gateway_port = {port}")
        res = run_cli("deploy", "--env", "local", cwd=project)
    assert res.exit_code == 1, res.output
    assert f"port {port} on 127.0.0.1 is already in use" in res.stderr
    assert f"environments.local.gateway_port = {port}" in res.stderr
    assert "Traceback" not in res.output
    _nothing_started(project)


def test_version_port_in_use_names_the_version_key(project: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        manifest = project / "mlserve.toml"
        text = manifest.read_text()
        anchor = 'model_uri = "models/fraud/v2"\n'
        manifest.write_text(text.replace(anchor, anchor + f"port = {port}\n", 1))
        res = run_cli("--json", "deploy", cwd=project)
    assert res.exit_code == 1
    assert f"endpoints.fraud.versions.v2.port = {port}" in res.json["error"]["message"]
    _nothing_started(project)


def test_missing_model_file(project: Path) -> None:
    (project / "models/fraud/v2/model.joblib").unlink()
    res = run_cli("deploy", "--env", "local", cwd=project)
    assert res.exit_code == 1, res.output
    assert "endpoints.fraud.versions.v2.model_uri" in res.stderr and "no model file" in res.stderr
    _nothing_started(project)
    (project / "models/fraud/v2").rmdir()
    res = run_cli("deploy", cwd=project)
    assert res.exit_code == 1 and "endpoints.fraud.versions.v2.model_uri" in res.stderr
    assert "does not exist" in res.stderr


def test_remote_model_uri_is_refused_locally(project: Path) -> None:
    manifest = project / "mlserve.toml"
    manifest.write_text(manifest.read_text().replace('"models/fraud/v2"', '"s3://acme-ml-models/fraud/v2"', 1))
    res = run_cli("deploy", cwd=project)
    assert res.exit_code == 1 and "local files only" in res.stderr
    assert "endpoints.fraud.versions.v2.model_uri" in res.stderr


def test_missing_prometheus_binary_via_override(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSERVE_PROMETHEUS_BIN", str(project / "no-such-prometheus"))
    res = run_cli("deploy", "--env", "local", cwd=project)
    assert res.exit_code == 1, res.output
    assert "MLSERVE_PROMETHEUS_BIN" in res.stderr and "apt-get install prometheus" in res.stderr
    _nothing_started(project)


def test_missing_prometheus_binary_on_path(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLSERVE_PROMETHEUS_BIN", raising=False)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    res = run_cli("--json", "deploy", cwd=project)
    assert res.exit_code == 1
    err = res.json["error"]
    assert "prometheus not found on PATH" in err["message"] and "apt-get install prometheus" in err["hint"]
    _nothing_started(project)


def test_cluster_only_runtime_in_a_local_env(project: Path) -> None:
    manifest = project / "mlserve.toml"
    manifest.write_text(manifest.read_text().replace('endpoints = ["fraud"]', 'endpoints = ["fraud", "summarize"]', 1))
    res = run_cli("deploy", cwd=project)
    assert res.exit_code == 1
    assert "endpoints.summarize.runtime" in res.stderr and "'vllm'" in res.stderr and "custom" in res.stderr


TINY = Path(__file__).with_name("tiny_v2.py")

CUSTOM_MANIFEST = f"""
[project]
name = "echo-proj"

[environments.dev]
target = "local"
scrape_interval = "1s"

[endpoints.echo]
runtime = "custom"
baseline = "a"

[endpoints.echo.versions.a]
model_uri = "models/echo"
command = [{json.dumps(sys.executable)}, {json.dumps(str(TINY))}, "--port", "{{port}}", "--model", "echo", "--value", "1"]

[endpoints.echo.versions.b]
model_uri = "models/echo"
command = [{json.dumps(sys.executable)}, {json.dumps(str(TINY))}, "--port", "{{port}}", "--model", "echo", "--value", "2"]

[endpoints.echo.resources]
gpu = 1
"""


def test_custom_runtime_restart_on_crash_and_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A custom command serves through the gateway; a crashed server comes back; down with a live supervisor."""
    import os
    import signal
    import time

    import httpx

    from mlserve.local.state import pid_alive

    root = tmp_path / "echo"
    (root / "models/echo").mkdir(parents=True)
    (root / "mlserve.toml").write_text(CUSTOM_MANIFEST)
    try:
        res = run_cli("deploy", cwd=root)
        assert res.exit_code == 0, res.output
        if not _has_gpu():
            assert "no GPU found: running on the CPU" in res.output
        assert res.output.count("no GPU found") == (0 if _has_gpu() else 1)
        desired = (root / ".mlserve/local/desired.json").read_text()
        doc = json.loads(desired)
        gw = doc["gateway_url"]
        r = httpx.post(
            f"{gw}/v2/models/echo/infer",
            json={"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [1, 2]}]},
            trust_env=False,
        )
        assert r.status_code == 200 and r.headers["x-mlserve-variant"] == "a"
        assert r.json()["outputs"][0]["data"] == [1.0, 1.0]

        state = json.loads((root / ".mlserve/local/state.json").read_text())
        victim = state["processes"]["echo/b"]
        os.killpg(victim["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 20
        rec: dict[str, object] = {}
        while time.monotonic() < deadline:
            rec = json.loads((root / ".mlserve/local/state.json").read_text())["processes"]["echo/b"]
            if rec["pid"] not in (None, victim["pid"]) and rec["status"] == "healthy":
                break
            time.sleep(0.2)
        assert rec["status"] == "healthy" and rec["pid"] != victim["pid"] and rec["restarts"] == 1, rec

        pids = [
            (r["pid"], r["start_time"])
            for r in json.loads((root / ".mlserve/local/state.json").read_text())["processes"].values()
        ]
        sup = json.loads((root / ".mlserve/local/state.json").read_text())["supervisor"]
    finally:
        res = run_cli("down", cwd=root)
    assert res.exit_code == 0 and "stopped" in res.stdout
    assert not pid_alive(sup["pid"], sup["start_time"])
    assert all(not pid_alive(p, s) for p, s in pids)


def _has_gpu() -> bool:
    from mlserve.local.gpu import list_gpus

    return bool(list_gpus())


def test_a_server_that_keeps_crashing_fails_deploy_with_its_error(tmp_path: Path) -> None:
    root = tmp_path / "crash"
    (root / "models/echo").mkdir(parents=True)
    crash = json.dumps([sys.executable, "-c", "raise SystemExit('boom: cannot load the model on {port}')"])
    good = json.dumps([sys.executable, str(TINY), "--port", "{port}", "--model", "echo"])
    (root / "mlserve.toml").write_text(
        CUSTOM_MANIFEST.replace("gpu = 1", "gpu = 0").split("[endpoints.echo.versions.a]")[0]
        + f'[endpoints.echo.versions.a]\nmodel_uri = "models/echo"\ncommand = {good}\n'
        + f'[endpoints.echo.versions.b]\nmodel_uri = "models/echo"\ncommand = {crash}\n'
    )
    try:
        res = run_cli("deploy", "--timeout", "60", cwd=root)
        assert res.exit_code == 1, res.output
        assert "echo/b exited (code 1) before it was healthy" in res.stderr
        assert "boom: cannot load the model on" in res.stderr
        assert "mlserve down" in res.stderr
    finally:
        res = run_cli("--json", "down", cwd=root)
    assert res.exit_code == 0 and res.json["result"]["leftover"] == []
