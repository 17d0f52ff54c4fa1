"""The display functions of commands that need servers to run end to end (loadtest, batch,
compare, monitor, status, deploy, plan): fed results whose names, paths, URLs and messages
hold rich markup, each must print them as written and never raise rich's MarkupError."""

from __future__ import annotations

import io
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

H = "[bold]b[/][/][link=http://e.vil]l"  # no spaces: a table cell keeps it on one line
P = "[bold]b[/]x[/]y[link=e.vil]z"  # a path (Path() would fold the "//" of H)


def shown(show: Callable[[Console, Any], None], data: Any) -> str:
    buf = io.StringIO()
    show(Console(file=buf, width=400, no_color=True, highlight=False, soft_wrap=True), data)
    return buf.getvalue()


def _latency(p50: float | None = 1.0) -> dict[str, Any]:
    return {"p50": p50, "p95": 2.0, "p99": 3.0}


def test_loadtest_summary() -> None:
    from mlserve.cli.commands.loadtest import _show

    variant = {"requests": 10, "failures": 1, "failure_ratio": 0.1, "requests_per_second": 5.0}
    data = {
        "endpoint": f"e{H}",
        "target_url": f"http://127.0.0.1:1/{H}",
        "variants": {f"v{H}": {**variant, "latency_ms": _latency()}},
        **variant,
        "latency_ms": _latency(),
        "duration_seconds": 2.0,
        "started_at": "t0",
        "ended_at": "t1",
        "stop_reason": f"stopped{H}",
        "errors": [{"variant": f"v{H}", "error": f"HTTP 500: {H}", "occurrences": 1}],
        "slo": {"p99_latency_seconds": None, "error_rate": None, "passed": None, "breaches": []},
        "out_dir": f"/tmp/{P}",
        "files": {"html": "report.html"},
    }
    out = shown(_show, data)
    assert f"Load test: e{H} at http://127.0.0.1:1/{H}" in out
    assert f"v{H}" in out and f"(stopped{H})" in out and f"HTTP 500: {H} x1" in out
    assert "SLO: none declared in [slo]; nothing to check" in out  # was "declared in ; nothing"
    assert f"report  /tmp/{P}/report.html" in out and f"files   /tmp/{P}/ (summary.json" in out
    data["slo"] = {
        "p99_latency_seconds": 0.25,
        "error_rate": 0.01,
        "passed": False,
        "breaches": [{"message": f"error_rate: {H}"}],
    }
    assert f"SLO broken error_rate: {H}" in shown(_show, data)


def test_batch_summary_and_progress_label() -> None:
    from mlserve.cli.commands.batch import ProgressView, show_summary

    data = {
        "endpoint": "fraud",
        "version": f"v{H}",
        "engine": "local",
        "rows": 3,
        "scored": 2,
        "failed": 1,
        "rows_per_second": 10.0,
        "seconds": 0.3,
        "requests": 1,
        "latency_ms": _latency(),
        "chunks_resumed": 0,
        "chunks": 1,
        "output": f"/tmp/{H}.jsonl",
        "errors_file": f"/tmp/{H}.errors.jsonl",
        "failures_sample": [{"line": 2, "reason": f"column {H}: not a number"}],
    }
    out = shown(show_summary, data)
    assert f"Batch: fraud/v{H} (local)" in out
    assert f"output  /tmp/{H}.jsonl" in out and f"listed in /tmp/{H}.errors.jsonl" in out
    assert f"line 2: column {H}: not a number" in out
    buf = io.StringIO()
    con = Console(file=buf, width=200, force_terminal=True, no_color=True, highlight=False)
    with ProgressView(con, f"fraud/{H}") as view:  # the bar's description is a markup template
        view.update(SimpleNamespace(rows_total=2, rows_done=1, rows_per_second=1.0, failed=0))
        view._progress.refresh()
    assert f"fraud/{H}" in buf.getvalue()


def test_compare_report() -> None:
    from mlserve.cli.commands.compare import show

    data = {
        "endpoint": "fraud",
        "baseline": f"v1{H}",
        "candidate": "v2",
        "compared": 3,
        "task": "classification",
        "prediction": f"out{H}",
        "agreement": {"agreement": 0.5, "interval": {"low": 0.1, "high": 0.9}, "disagree": 1, "rule": f"equal {H}"},
        "confidence": 0.95,
        "metrics": [],
        "latency": {f"v1{H}": {"latency_ms": _latency(), "rows_per_second": 1.0, "requests": 1, "failed_rows": 0}},
        "disagreements": [{"row": 1, "id": f"id{H}", f"col{H}": 1}],
        "notes": [f"note {H}"],
        "gate": [{"passed": False, "name": f"g{H}", "detail": f"d{H}"}],
        "passed": False,
        "exit_code": 3,
        "files": {"html": f"/tmp/{H}.html"},
    }
    out = shown(show, data)
    assert f"fraud v1{H} vs v2" in out and f"output out{H})" in out and f"(equal {H})" in out
    assert f"id id{H}: col{H} 1" in out and f"note note {H}" in out and f"FAIL g{H}: d{H}" in out
    assert f"report  /tmp/{H}.html" in out


def test_monitor_table_with_alerts_from_prometheus() -> None:
    from mlserve.cli.commands.monitor import _table

    row = SimpleNamespace(
        version=f"v{H}",
        weight=50.0,
        requests_per_second=1.0,
        p50_seconds=0.01,
        p99_seconds=0.02,
        error_ratio=0.0,
        input_drift_psi=0.5,
        input_drift_feature=f"f{H}",
        prediction_drift_psi=None,
        positive_share=None,
    )
    sample = SimpleNamespace(
        endpoint="fraud",
        at=0.0,
        window_seconds=60.0,
        source="local",
        drift_threshold=0.2,
        versions=[row],
        alerts=[{"state": "firing", "name": f"Burn{H}", "variant": f"v{H}", "severity": "page"}],
    )
    out = shown(lambda con, s: con.print(_table(s)), sample)
    assert f"v{H}" in out and f"0.500 f{H}" in out
    assert f"alerts: Burn{H} v{H} (page)" in out


def test_local_status() -> None:
    from mlserve.cli.commands.status import _show

    data = {
        "deployed": True,
        "env": "local",
        "requested_env": "local",
        "rows": [
            {
                "endpoint": "fraud",
                "name": "fraud-v1",
                "version": f"v{H}",
                "pid": 1,
                "port": 2,
                "status": f"running{H}",
                "health": f"odd{H}",
                "weight": 100,
                "prometheus_target": "up",
                "restarts": 0,
            }
        ],
        "traffic": {"fraud": {"mode": f"split{H}", "shadow": {"percent": 10, "version": f"v{H}"}}},
        "gateway_url": "http://127.0.0.1:1",
        "prometheus_url": "http://127.0.0.1:2",
        "supervisor_alive": True,
        "supervisor_pid": 3,
        "alerts": [
            {
                "state": "firing",
                "name": f"A{H}",
                "severity": "page",
                "endpoint": "fraud",
                "variant": None,
                "since": "2026-01-01T00:00:00Z",
                "summary": f"s{H}",
                "labels": {"feature": f"f{H}"},
            }
        ],
        "problems": [f"problem {H}"],
    }
    out = shown(_show, data)
    for text in (f"v{H}", f"running{H}", f"odd{H}", f"mode split{H}, shadow 10% to v{H}", f"A{H}"):
        assert text in out, text
    assert f"s{H} [feature=f{H}]" in out and f"warning: problem {H}" in out


def test_local_deploy_result() -> None:
    from mlserve.cli.commands.deploy import _show

    data = {
        "changed": True,
        "env": "local",
        "seconds": 1.0,
        "started": [f"fraud/v{H}"],
        "restarted": [],
        "stopped": [],
        "reloaded": [],
        "unchanged": [],
        "rollouts": [],
        "gateway_url": "http://127.0.0.1:1",
        "prometheus_url": "http://127.0.0.1:2",
        "openai_endpoints": [],
    }
    assert f"deployed local in 1.0s: started fraud/v{H}" in shown(_show, data)


def test_layered_status_and_plan() -> None:
    from mlserve.cli.commands.plan import LayerProgress, show_result, show_status

    status = {
        "deployed": True,
        "env": "staging",
        "layers": [
            {
                "layer": "cluster",
                "deployed": True,
                "applied_at": f"t{H}",
                "drift": [f"d{H}"],
                "outputs": {f"o{H}": f"x{H}"},
            }
        ],
        "endpoints": [{"name": "fraud", "ready": True, "weights": {f"v{H}": 100}}],
        "problems": [f"p{H}"],
    }
    out = shown(show_status, status)
    assert f"t{H}" in out and f"d{H}" in out and f"cluster.o{H} = x{H}" in out and f"v{H} 100%" in out
    changes = {
        "has_changes": True,
        "add": 1,
        "by_type": {f"aws_{H}": {"add": 1, "change": 0, "replace": 0, "destroy": 0}},
        "resources": [{"action": "create", "address": f"aws_x.{H}", "replace_paths": []}],
    }
    plan = {
        "operation": "plan",
        "env": "staging",
        "changed": True,
        "layers": [{"layer": "cluster", "action": "planned", "tool": "terraform", "changes": changes}],
    }
    out = shown(show_result, plan)
    assert f"aws_{H}" in out and f"create   aws_x.{H}" in out

    buf = io.StringIO()
    progress = LayerProgress(Console(file=buf, width=200, no_color=True, highlight=False))
    progress.say(f"cluster: terraform plan {H}")
    assert f"cluster: terraform plan {H}" in buf.getvalue()


def test_down_messages_from_the_target_are_printed_as_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, scaffolded: Any
) -> None:
    from mlserve.targets.local import LocalTarget
    from tests.conftest import run_cli

    def teardown(self: LocalTarget) -> Any:
        from mlserve.local.lifecycle import DownResult

        assert self.options.say is not None
        self.options.say(f"stopped fraud-{H} (pid 1)")
        return DownResult(was_running=True, stopped=[{"name": "fraud"}], supervisor_pid=1, leftover=[])

    monkeypatch.setattr(LocalTarget, "teardown", teardown)
    res = run_cli("-C", str(scaffolded), "down")
    assert res.exit_code == 0, res.output
    assert f"stopped fraud-{H} (pid 1)" in res.stdout
