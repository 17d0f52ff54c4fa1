"""Bad inputs exit 2 (or 1 when nothing is deployed) with a message naming what is wrong;
the pure parts (payload checks, synthesis, SLO gate, locustfile rendering) on their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

GOOD = {"inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP32", "data": [0.5] * 8}]}


def _loadtest(project: Path, *args: str):  # type: ignore[no-untyped-def]
    return run_cli("loadtest", *args, cwd=project)


def test_unknown_endpoint_exits_2(project: Path) -> None:
    res = _loadtest(project, "nope", "-t", "2s")
    assert res.exit_code == 2
    assert "unknown endpoint 'nope'" in res.stderr and "fraud" in res.stderr
    # an endpoint that exists but is not in the environment
    res = _loadtest(project, "summarize", "-t", "2s", "--env", "local")
    assert res.exit_code == 2
    assert "unknown endpoint 'summarize' in environment 'local'" in res.stderr


def test_unknown_environment_exits_2(project: Path) -> None:
    res = _loadtest(project, "fraud", "--env", "qa")
    assert res.exit_code == 2 and "unknown environment 'qa'" in res.stderr


def test_unreadable_payload_file_exits_2(project: Path) -> None:
    res = _loadtest(project, "fraud", "--payload", "missing.jsonl")
    assert res.exit_code == 2
    assert "missing.jsonl: cannot read the payload file" in res.stderr
    res = _loadtest(project, "fraud", "--payload", "payloads")
    assert res.exit_code == 2 and "it is a directory" in res.stderr
    (project / "empty.jsonl").write_text("\n\n")
    res = _loadtest(project, "fraud", "--payload", "empty.jsonl")
    assert res.exit_code == 2 and "empty.jsonl: no payloads" in res.stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"instances": [[1, 2]]}', '"inputs" must be a non-empty list'),
        ('{"inputs": [{"name": "input-0", "shape": [1, 8], "data": []}]}', "inputs[0]: missing 'datatype'"),
        (
            '{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP99", "data": [1, 2]}]}',
            "inputs[0].datatype: must be one of",
        ),
        ('{"inputs": [{"name": "x", "shape": [1, -2], "datatype": "FP32", "data": []}]}', "inputs[0].shape"),
        (
            '{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]}',
            "has 2 elements but shape [1, 3] needs 3",
        ),
    ],
)
def test_payload_line_that_is_not_a_v2_request_names_the_line(project: Path, line: str, message: str) -> None:
    bad = project / "bad.jsonl"
    bad.write_text(json.dumps(GOOD) + "\n\n" + line + "\n")
    res = _loadtest(project, "fraud", "--payload", str(bad), "--json")
    assert res.exit_code == 2
    err = res.json["error"]
    assert err["type"] == "usage"
    assert err["message"].startswith(f"{bad}:3: ")
    assert message in err["message"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-t", "0s"], "--duration must be between 1s and 3600s (got 0s)"),
        (["-t", "500ms"], "--duration must be between 1s and 3600s"),
        (["-t", "2h"], "--duration must be between 1s and 3600s (got 7200s)"),
        (["-t", "soon"], "--duration: expected a duration like '30s'"),
        (["-u", "0"], "--users must be between 1 and 1000 (got 0)"),
        (["-u", "1001"], "--users must be between 1 and 1000 (got 1001)"),
        (["-r", "0"], "--spawn-rate must be above 0"),
        (["--rps", "-5"], "--rps must be above 0"),
    ],
)
def test_bounds_exit_2(project: Path, args: list[str], message: str) -> None:
    res = _loadtest(project, "fraud", *args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr


def test_non_loopback_url_is_refused_for_the_local_target(project: Path) -> None:
    res = _loadtest(project, "fraud", "-t", "2s", "--url", "http://10.1.2.3:8080")
    assert res.exit_code == 2 and "not a loopback address" in res.stderr
    res = _loadtest(project, "fraud", "-t", "2s", "--url", "http://127.0.0.1:8080/v2/models")
    assert res.exit_code == 2 and "without a path" in res.stderr


def test_not_deployed_is_an_error_not_a_minute_of_failures(project: Path) -> None:
    res = _loadtest(project, "fraud", "-t", "2s")
    assert res.exit_code == 1
    assert "not deployed locally" in res.stderr and "mlserve deploy --env local" in res.stderr
    # nothing answers at an explicit URL: one probe, then a clear error
    res = _loadtest(project, "fraud", "-t", "2s", "--url", "http://127.0.0.1:9")
    assert res.exit_code == 1 and "nothing answers at http://127.0.0.1:9" in res.stderr


def test_kubernetes_environment_needs_an_url(project: Path) -> None:
    res = _loadtest(project, "fraud", "--env", "staging", "-t", "2s")
    assert res.exit_code == 2 and "pass --url" in res.output


def test_synthesised_payloads_follow_the_declared_input() -> None:
    from mlserve.loadtest.payloads import check_request, synthesize

    reqs = synthesize("text", "BYTES", [2, 3], count=5)
    assert len(reqs) == 5
    for req in reqs:
        check_request(req)
        t = req["inputs"][0]
        assert (t["name"], t["datatype"], t["shape"], len(t["data"])) == ("text", "BYTES", [2, 3], 6)
    assert synthesize("x", "FP32", [1, 8]) == synthesize("x", "FP32", [1, 8])  # deterministic
    ints = synthesize("x", "INT64", [4])[0]["inputs"][0]["data"]
    assert all(isinstance(v, int) for v in ints)


def test_slo_gate() -> None:
    from mlserve.loadtest.summary import check_slo

    ok = check_slo(1000, 5, 240.0, p99_latency=0.25, error_rate=0.01)
    assert ok.passed is True and ok.exit_code == 0
    slow = check_slo(1000, 5, 260.0, p99_latency=0.25, error_rate=0.01)
    assert slow.exit_code == 3 and [b.slo for b in slow.breaches] == ["p99_latency"]
    both = check_slo(100, 2, 260.0, p99_latency=0.25, error_rate=0.01)
    assert [b.slo for b in both.breaches] == ["error_rate", "p99_latency"]
    assert "2.00% of 100 requests failed" in both.breaches[0].message
    assert check_slo(100, 100, None, p99_latency=None, error_rate=None).passed is True  # nothing declared
    nodata = check_slo(0, 0, None, p99_latency=0.25, error_rate=0.01)
    assert nodata.passed is None and nodata.exit_code == 4


def test_rendered_locustfile_is_valid_python_with_quoted_values(tmp_path: Path) -> None:
    from mlserve.loadtest.core import LoadOptions, write_plan

    plan = write_plan(
        out_dir=tmp_path / "run",
        url="http://127.0.0.1:8080",
        endpoint="fraud",
        options=LoadOptions(users=3, spawn_rate=3, duration=5, rps_cap=12.5),
        payloads=[GOOD],
        payload_source="test",
    )
    source = plan.locustfile.read_text()
    compile(source, "locustfile.py", "exec")
    assert "ENDPOINT = 'fraud'" in source and "RPS_CAP = 12.5" in source
    assert "HOST = 'http://127.0.0.1:8080'" in source
    run = json.loads(plan.run_file.read_text())
    assert run["users"] == 3 and run["duration"] == 5 and run["host"] == "http://127.0.0.1:8080"
    assert json.loads((plan.out_dir / "payloads.jsonl").read_text()) == GOOD


def test_help_does_not_import_locust() -> None:
    import subprocess
    import sys

    code = "import sys; from mlserve.cli.main import app; print('locust' in sys.modules, 'gevent' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
