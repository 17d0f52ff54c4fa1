"""Bad input a user types gets a message naming what is wrong and the documented exit code
(2 for usage), checked before anything asks a deployment; never an "internal error"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


def test_a_project_dir_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    res = run_cli("-C", str(afile), "validate")
    assert res.exit_code == 2, res.output
    assert f"{afile}: is a file, not a project directory" in res.stderr
    res = run_cli("-C", str(tmp_path / "missing"), "validate")
    assert res.exit_code == 2 and "project directory does not exist" in res.stderr


def test_a_missing_policy_file_is_not_told_to_run_init(tmp_path: Path) -> None:
    res = run_cli("analyze", "--plan", "--rps", "5", "--policy", str(tmp_path / "p.toml"), cwd=tmp_path)
    assert res.exit_code == 2, res.output
    assert "p.toml: file not found" in res.stderr
    assert "--policy names a TOML file" in res.stderr and "mlserve init" not in res.stderr


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://[/]", "Invalid IPv6 URL"),  # was: internal error: ValueError, exit 1
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://127.0.0.1:abc", "Port could not be cast"),
    ],
)
@pytest.mark.parametrize("command", ["loadtest", "batch", "compare"])
def test_a_malformed_url_is_a_usage_error(project: Path, command: str, url: str, why: str) -> None:
    args = {
        "loadtest": ["loadtest", "fraud", "--duration", "1s"],
        "batch": ["batch", "fraud", "-i", "rows.jsonl", "-o", "out.jsonl"],
        "compare": ["compare", "fraud", "v1", "v2", "-i", "rows.jsonl"],
    }[command]
    (project / "rows.jsonl").write_text('{"id": 1, "x": [1.0]}\n')
    res = run_cli("-C", str(project), *args, "--url", url)
    assert res.exit_code == 2, res.output
    assert f"--url is not a valid URL: {why}" in res.stderr and repr(url) in res.stderr
    assert "internal error" not in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["monitor", "nope"], "unknown endpoint 'nope'"),
        (["monitor", "fraud", "--interval", "0s"], "--interval: must be between 1s and 3600s"),
        (["monitor", "fraud", "--window", "abc"], "--window: expected a duration"),
        (["dashboard", "--range", "1y"], "--range: expected a duration"),
        (["dashboard", "--duration", "abc"], "--duration: expected a duration"),
    ],
)
def test_monitor_and_dashboard_check_their_options_before_the_deployment(
    project: Path, args: list[str], message: str
) -> None:
    # nothing is deployed: before, each of these said "not deployed locally" (exit 1)
    res = run_cli("-C", str(project), *args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "not deployed" not in res.stderr


def test_monitor_of_a_known_endpoint_still_needs_the_deployment(project: Path) -> None:
    res = run_cli("-C", str(project), "monitor", "fraud", "--count", "1")
    assert res.exit_code == 1, res.output
    assert "not deployed locally" in res.stderr


def test_analyze_plan_names_an_unknown_environment_and_a_missing_manifest(project: Path, tmp_path: Path) -> None:
    # fraud has no GPU: the environment was never looked at, and the plan exited 0
    res = run_cli("analyze", "--plan", "--endpoint", "fraud", "--env", "nope", "--rps", "100", cwd=project)
    assert res.exit_code == 2, res.output
    assert "--env 'nope':" in res.stderr and "defines local, staging, prod, edge" in res.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_cli("-C", str(empty), "analyze", "--plan", "--endpoint", "fraud", "--rps", "100")
    assert res.exit_code == 2, res.output
    assert f"there is no {empty / 'mlserve.toml'}" in res.stderr and "no such endpoint" not in res.stderr


def test_render_out_that_is_a_file_is_a_usage_error(project: Path) -> None:
    before = (project / "mlserve.toml").read_text()
    res = run_cli("render", "--env", "staging", "--out", "mlserve.toml", cwd=project)
    assert res.exit_code == 2, res.output
    assert "--out mlserve.toml: is a file, not a folder" in res.stderr
    assert (project / "mlserve.toml").read_text() == before  # nothing written
