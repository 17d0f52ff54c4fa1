"""Pieces of the local target that need no running server: GPUs, ports, paths, configs, state."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlserve.errors import TargetError, ToolError
from mlserve.fsutil import atomic_write_json
from mlserve.local import gpu
from mlserve.local.ports import check_free, free_port, port_in_use
from mlserve.local.prometheus import ScrapeTarget, duration, prometheus_binary, render_config
from mlserve.local.servers import check_runtime, model_file, resolve_model_path
from mlserve.local.state import pid_alive, process_start_time, read_json, stop_group
from mlserve.manifest.models import Endpoint, Version


def _fake_nvidia_smi(tmp_path: Path, n: int) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    lines = "\n".join(f"GPU {i}: NVIDIA A10G (UUID: GPU-{i:04d})" for i in range(n))
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{lines}\nEOF\n")
    script.chmod(0o755)
    return bin_dir


def test_nvidia_smi_stand_in_is_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{_fake_nvidia_smi(tmp_path, 3)}{os.pathsep}{os.environ['PATH']}")
    assert gpu.list_gpus() == [0, 1, 2]


def test_no_nvidia_smi_means_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu.list_gpus() == []
    plan = gpu.assign({"llm/a": 1}, [])
    assert plan.devices == {} and plan.notes == ["no GPU found: running on the CPU"]
    assert plan.env_for("llm/a") == {}


def test_round_robin_without_sharing_when_counts_allow() -> None:
    plan = gpu.assign({"llm/a": 1, "llm/b": 2, "cpu/x": 0}, [0, 1, 2, 3])
    assert plan.devices == {"llm/a": [0], "llm/b": [1, 2]}
    assert plan.env_for("llm/b") == {"CUDA_VISIBLE_DEVICES": "1,2"}
    assert plan.env_for("cpu/x") == {}
    assert plan.warnings == []


def test_oversubscription_shares_devices_and_warns() -> None:
    plan = gpu.assign({"a/v1": 1, "a/v2": 1, "b/v1": 1}, [0, 1])
    assert plan.devices == {"a/v1": [0], "a/v2": [1], "b/v1": [0]}
    assert any("shared" in w for w in plan.warnings)


def test_assignment_through_the_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{_fake_nvidia_smi(tmp_path, 2)}{os.pathsep}{os.environ['PATH']}")
    plan = gpu.assign({"summarize/llama-8b": 1, "summarize/llama-8b-q": 1}, gpu.list_gpus())
    assert plan.env_for("summarize/llama-8b") == {"CUDA_VISIBLE_DEVICES": "0"}
    assert plan.env_for("summarize/llama-8b-q") == {"CUDA_VISIBLE_DEVICES": "1"}


def test_free_port_and_port_in_use() -> None:
    port = free_port()
    assert 1024 <= port <= 65535 and not port_in_use(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        assert port_in_use(taken)
        assert free_port(avoid=[taken]) != taken
        with pytest.raises(TargetError) as err:
            check_free(taken, "environments.local.gateway_port")
    assert f"port {taken}" in err.value.message and "environments.local.gateway_port" in err.value.message


def test_prometheus_durations_and_config() -> None:
    assert duration(1.0) == "1s" and duration(1.5) == "1500ms" and duration(0.25) == "250ms"
    text = render_config(
        'acme "ml"',
        1.0,
        [
            ScrapeTarget("mlserve-gateway", "127.0.0.1:9000", "/metrics", {}),
            ScrapeTarget("mlserve-model-servers", "127.0.0.1:9001", "/metrics", {"endpoint": "fraud", "version": "v1"}),
        ],
    )
    import yaml

    doc = yaml.safe_load(text)
    assert doc["global"]["scrape_interval"] == "1s" and doc["global"]["scrape_timeout"] == "1s"
    assert doc["global"]["external_labels"] == {"mlserve_project": 'acme "ml"'}
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert jobs["mlserve-gateway"]["static_configs"][0]["targets"] == ["127.0.0.1:9000"]
    assert jobs["mlserve-model-servers"]["static_configs"][0]["labels"] == {"endpoint": "fraud", "version": "v1"}


def test_generated_config_passes_promtool_check(tmp_path: Path) -> None:
    """The real Prometheus accepts the generated file (promtool ships with Debian's package)."""
    import shutil

    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is needed"
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(render_config("p", 0.5, [ScrapeTarget("j", "127.0.0.1:9", "/metrics", {"a": "b"})]))
    out = subprocess.run([promtool, "check", "config", str(cfg)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_missing_prometheus_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSERVE_PROMETHEUS_BIN", str(tmp_path / "nope"))
    with pytest.raises(ToolError) as err:
        prometheus_binary()
    assert "MLSERVE_PROMETHEUS_BIN" in err.value.message and "apt-get install prometheus" in str(err.value.hint)
    monkeypatch.delenv("MLSERVE_PROMETHEUS_BIN")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolError) as err:
        prometheus_binary()
    assert "prometheus not found" in err.value.message and "apt-get install prometheus" in str(err.value.hint)


def test_model_paths(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.joblib").write_bytes(b"x")
    ok = resolve_model_path(tmp_path, "fraud", "v1", Version(model_uri="m"))
    assert ok == (tmp_path / "m").resolve()
    assert model_file("sklearn", ok, "k") == ok / "model.joblib"
    with pytest.raises(TargetError, match=r"endpoints\.fraud\.versions\.v2\.model_uri: .* does not exist"):
        resolve_model_path(tmp_path, "fraud", "v2", Version(model_uri="missing/dir"))
    with pytest.raises(TargetError, match="local files only"):
        resolve_model_path(tmp_path, "fraud", "v1", Version(model_uri="s3://bucket/model"))
    with pytest.raises(TargetError, match="no model file"):
        model_file("xgboost", ok, "endpoints.fraud.versions.v1.model_uri")
    absolute = resolve_model_path(Path("/"), "fraud", "v1", Version(model_uri=str(tmp_path / "m")))
    assert absolute == (tmp_path / "m").resolve()


def test_cluster_only_runtime_is_refused() -> None:
    ep = Endpoint.model_validate(
        {
            "runtime": "vllm",
            "baseline": "a",
            "versions": {"a": {"model_uri": "hf://org/model"}},
            "rollout": {"metrics": [{"name": "errors", "kind": "error_rate"}]},
        }
    )
    with pytest.raises(TargetError) as err:
        check_runtime("summarize", ep)
    assert "'vllm'" in err.value.message and "custom" in str(err.value.hint)


def test_atomic_json_and_bad_state(tmp_path: Path) -> None:
    path = tmp_path / "s" / "state.json"
    atomic_write_json(path, {"a": 1})
    assert read_json(path) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp file left
    assert read_json(tmp_path / "absent.json") is None
    path.write_text("{not json")
    from mlserve.errors import StateError

    with pytest.raises(StateError, match="not valid JSON"):
        read_json(path)


def test_pid_reuse_is_detected_and_groups_stopped() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)",
        ],
        start_new_session=True,
    )
    try:
        start = process_start_time(proc.pid)
        assert start is not None and pid_alive(proc.pid, start)
        assert not pid_alive(proc.pid, start + 1)  # same pid, other start time: not ours
        assert not stop_group(proc.pid, start + 1)  # a stranger's pid is never signalled
        assert pid_alive(proc.pid, start)
        assert stop_group(proc.pid, start, timeout=5)
        proc.wait(timeout=5)
        assert not pid_alive(proc.pid, start)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_admin_token_file_is_private(tmp_path: Path) -> None:
    from mlserve.local.lifecycle import ensure_token
    from mlserve.local.state import LocalPaths

    paths = LocalPaths(tmp_path / ".mlserve")
    ensure_token(paths)
    mode = stat.S_IMODE(paths.admin_token.stat().st_mode)
    token = paths.admin_token.read_text().strip()
    assert mode == 0o600 and len(token) >= 32
    ensure_token(paths)
    assert paths.admin_token.read_text().strip() == token  # kept, not regenerated


def test_local_environment_dispatches_to_the_local_target(project: Path) -> None:
    from mlserve.project import load_project
    from mlserve.targets import open_target
    from mlserve.targets.local import LocalTarget

    target = open_target(load_project(project), None)
    assert isinstance(target, LocalTarget) and target.env_name == "local"


def test_status_when_nothing_is_deployed(project: Path) -> None:
    from tests.conftest import run_cli

    res = run_cli("status", cwd=project)
    assert res.exit_code == 0 and "not deployed" in res.stdout
    res = run_cli("--json", "status", cwd=project)
    assert res.exit_code == 0 and res.json["result"]["deployed"] is False
    res = run_cli("down", cwd=project)
    assert res.exit_code == 0 and "nothing was running" in res.stdout


def test_logs_before_deploy_and_unknown_names(project: Path) -> None:
    from tests.conftest import run_cli

    res = run_cli("logs", "fraud", cwd=project)
    assert res.exit_code == 2 and "not been deployed" in res.stderr
    res = run_cli("logs", "nope", cwd=project)
    assert res.exit_code == 2 and "unknown endpoint 'nope'" in res.stderr
    res = run_cli("logs", "fraud", "v9", cwd=project)
    assert res.exit_code == 2 and "no version 'v9'" in res.stderr
    logs = project / ".mlserve" / "logs"
    logs.mkdir(parents=True)
    (logs / "fraud.v1.log").write_text("".join(f"line {i}\n" for i in range(100)))
    res = run_cli("logs", "fraud", "v1", "--lines", "3", cwd=project)
    assert res.exit_code == 0 and res.stdout.split() == ["line", "97", "line", "98", "line", "99"]
    # a rollout's control arm (fraud/control) is listed beside the versions, and by name
    (logs / "fraud.control.log").write_text("control started\n")
    res = run_cli("--json", "logs", "fraud", "--lines", "1", cwd=project)
    assert res.exit_code == 0 and [x["name"] for x in res.json["result"]["logs"]] == ["fraud/v1", "fraud/control"]
    res = run_cli("logs", "fraud", "control", cwd=project)
    assert res.exit_code == 0 and res.stdout.strip() == "control started"
    res = run_cli("logs", "fraud", "v9", cwd=project)
    assert res.exit_code == 2 and "rollout arms with a log: control" in res.stderr


def test_failure_excerpt_prefers_the_last_traceback(tmp_path: Path) -> None:
    from mlserve.local.lifecycle import failure_excerpt

    log = tmp_path / "x.log"
    frames = "".join(f'  File "m{i}.py", line {i}, in f\n    call()\n' for i in range(30))
    log.write_text(
        "starting\nTraceback (most recent call last):\n"
        + frames
        + "ValueError: the real cause\n"
        + "".join(f"shutdown chatter {i}\n" for i in range(40))
    )
    text = failure_excerpt(log)
    assert text.startswith("Traceback") and "ValueError: the real cause" in text and "chatter" not in text
    assert len(text.splitlines()) <= 22
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    assert failure_excerpt(log, 3) == "line 47\nline 48\nline 49"


def test_follow_yields_new_lines(tmp_path: Path) -> None:
    import threading
    import time

    from mlserve.targets.base import LogFile, follow

    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("old\n")
    b.write_text("")

    def write() -> None:
        time.sleep(0.3)
        with open(a, "a") as fh:
            fh.write("new a\n")
        with open(b, "a") as fh:
            fh.write("new b\n")

    threading.Thread(target=write).start()
    gen = follow([LogFile("a", a), LogFile("b", b)], poll=0.05)
    got = [next(gen), next(gen)]
    gen.close()
    assert sorted(got) == [("a", "new a"), ("b", "new b")]


def test_a_second_deploy_or_down_at_the_same_time_is_refused(project: Path) -> None:
    import fcntl

    from tests.conftest import run_cli

    lock = project / ".mlserve/local/lifecycle.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        for args in (("deploy",), ("down",)):
            res = run_cli(*args, cwd=project)
            assert res.exit_code == 1 and "another mlserve deploy or down is running" in res.stderr
    assert not (project / ".mlserve/local/state.json").exists()


def test_xgboost_without_its_mlserver_runtime_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from mlserve.local import servers

    real = importlib.util.find_spec
    monkeypatch.setattr(
        servers.importlib.util, "find_spec", lambda name: None if name == "mlserver_xgboost" else real(name)
    )
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text("{}")
    ep = Endpoint.model_validate(
        {
            "runtime": "xgboost",
            "baseline": "a",
            "versions": {"a": {"model_uri": "m"}},
            "rollout": {"metrics": [{"name": "errors", "kind": "error_rate"}]},
        }
    )
    with pytest.raises(TargetError) as err:
        servers.launch_for(
            root=tmp_path,
            server_dir=tmp_path / "s",
            endpoint_name="churn",
            endpoint=ep,
            version_name="a",
            version=ep.versions["a"],
            ports={"http": 1, "grpc": 2, "metrics": 3},
        )
    assert "mlserver-xgboost" in str(err.value.hint) and "endpoints.churn.runtime" in err.value.message


def test_mlserver_settings_are_what_mlserver_reads(tmp_path: Path) -> None:
    """The generated files load with MLServer's own settings classes (names checked, not guessed)."""
    from mlserver.settings import ModelSettings, Settings

    from mlserve.local import servers

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.joblib").write_bytes(b"x")
    ep = Endpoint.model_validate(
        {
            "runtime": "sklearn",
            "baseline": "v1",
            "versions": {"v1": {"model_uri": "m"}},
            "rollout": {"metrics": [{"name": "errors", "kind": "error_rate"}]},
        }
    )
    launch = servers.launch_for(
        root=tmp_path,
        server_dir=tmp_path / "s",
        endpoint_name="fraud",
        endpoint=ep,
        version_name="v1",
        version=ep.versions["v1"],
        ports={"http": 9001, "grpc": 9002, "metrics": 9003},
    )
    files = {Path(p).name: json.loads(t) for p, t in launch.files.items()}
    settings = Settings(**files["settings.json"])
    assert (settings.host, settings.http_port, settings.grpc_port, settings.metrics_port) == (
        "127.0.0.1",
        9001,
        9002,
        9003,
    )
    assert settings.parallel_workers == 0
    model = ModelSettings(**files["model-settings.json"])
    assert model.name == "fraud" and model.parameters is not None
    assert model.parameters.uri == str((tmp_path / "m" / "model.joblib").resolve())
    assert model.parameters.version == "v1"
    assert model.implementation.__name__ == "SKLearnModel"
    assert launch.health_url == "http://127.0.0.1:9001/v2/models/fraud/ready"
