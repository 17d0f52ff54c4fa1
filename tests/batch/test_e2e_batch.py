"""`mlserve batch` and `mlserve compare` end to end on a fresh project's local target
(real MLServer behind mlserve's gateway): 100,000 rows, SIGKILL at about half and resume,
bad rows, the compare gate both ways, and the Ray engine on the same job."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.batch.conftest import write_rows
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

ROWS = 100_000
CHUNK = 2_000  # 50 chunks


def _argv(root: Path, inp: Path, out: Path, state: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "mlserve", "--project-dir", str(root), "--json", "batch", "fraud",
        "--input", str(inp), "--output", str(out), "--exclude", "label", "--chunk-size", str(CHUNK),
        "--state-dir", str(state), *extra,
    ]  # fmt: skip


def _finished_chunks(state: Path) -> int:
    journals = list(state.glob("*/journal.jsonl"))
    if not journals:
        return 0
    return sum(1 for line in journals[0].read_bytes().splitlines() if line.endswith(b"}"))


def _kill_at_half(argv: list[str], state: Path) -> int:
    """Start a real `mlserve batch` process and SIGKILL it once half the chunks are journaled."""
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    total = ROWS // CHUNK
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None and _finished_chunks(state) < total // 2:
            time.sleep(0.005)
        assert proc.poll() is None, "the job ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = _finished_chunks(state)
    assert 0 < done < total, done
    return done


def _run(argv: list[str]) -> dict:  # type: ignore[type-arg]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)["result"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rows(tmp_path_factory.mktemp("rows") / "rows.jsonl", ROWS)


@pytest.fixture(scope="module")
def full_run(deployed: Path, rows: Path) -> Path:
    out = rows.parent / "full.jsonl"
    summary = _run(_argv(deployed, rows, out, rows.parent / "state-full"))
    assert summary["rows"] == summary["scored"] == ROWS and summary["failed"] == 0
    assert summary["chunks"] == ROWS // CHUNK and summary["chunks_resumed"] == 0
    return out


def test_100k_rows_killed_at_half_and_resumed_equal_an_uninterrupted_run(
    deployed: Path, rows: Path, full_run: Path
) -> None:
    full = full_run.read_bytes()
    ids = [json.loads(line)["id"] for line in full.splitlines()]
    assert len(ids) == ROWS and len(set(ids)) == ROWS and ids == sorted(ids)  # once each, in input order

    out, state = rows.parent / "killed.jsonl", rows.parent / "state-killed"
    argv = _argv(deployed, rows, out, state, "--concurrency", "1", "--batch-size", "250")
    done = _kill_at_half(argv, state)
    assert not out.exists()  # the output appears whole at the end, or not at all
    summary = _run(argv)
    assert summary["chunks_resumed"] >= done and summary["scored"] == ROWS
    assert out.read_bytes() == full  # identical by content
    assert not list(state.iterdir())  # the finished job's state is gone


def test_ray_engine_resumes_the_same_job_with_the_same_output(deployed: Path, rows: Path, full_run: Path) -> None:
    out, state = rows.parent / "ray.jsonl", rows.parent / "state-ray"
    argv = _argv(deployed, rows, out, state, "--concurrency", "1", "--batch-size", "250")
    done = _kill_at_half(argv, state)
    summary = _run([*argv, "--engine", "ray", "--ray-actors", "2"])
    assert summary["engine"] == "ray" and summary["chunks_resumed"] >= done
    assert summary["engine_start_seconds"] > 0 and summary["scored"] == ROWS
    assert out.read_bytes() == full_run.read_bytes()


def test_one_percent_bad_rows_are_listed_and_the_exit_code_says_so(deployed: Path, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    bad_lines = {}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *(f"f{j}" for j in range(8)), "label"])
        for i in range(10_000):
            values = [f"{(i * 7 + j) % 13 / 10:.2f}" for j in range(8)]
            line = i + 2
            if i % 100 == 42:
                kind = (i // 100) % 3
                if kind == 0:
                    values = values[:7]  # wrong arity
                    bad_lines[line] = "wrong arity: 9 fields, but the header has 10"
                elif kind == 1:
                    values[3] = "n/a"
                    bad_lines[line] = "field 'f3': not a number (got 'n/a')"
                else:
                    values[6] = ""
                    bad_lines[line] = "field 'f6' is empty"
            w.writerow([f"r{i}", *values, i % 2])
    out = tmp_path / "scores.csv"
    res = run_cli("--json", "batch", "fraud", "-i", str(path), "-o", str(out), "--exclude", "label", cwd=deployed)
    assert res.exit_code == 1, res.output
    doc = res.json
    assert doc["ok"] is True and doc["exit_code"] == 1
    r = doc["result"]
    assert (r["rows"], r["scored"], r["failed"]) == (10_000, 9_900, 100)
    errors = [json.loads(x) for x in (tmp_path / "scores.errors.jsonl").read_text().splitlines()]
    assert {e["line"]: e["reason"] for e in errors} == bad_lines
    with open(out, newline="") as fh:
        scored = list(csv.DictReader(fh))
    assert len(scored) == 9_900 and {s["predict"] for s in scored} <= {"0", "1"}
    assert not {f"r{(line - 2)}" for line in bad_lines} & {s["id"] for s in scored}


def test_compare_gate_passes_and_fails_with_reports(deployed: Path, tmp_path: Path) -> None:
    holdout = deployed / "data" / "fraud-holdout.csv"
    lenient = run_cli(
        "--json", "compare", "fraud", "v1", "v2", "--input", str(holdout), "--labels", "label",
        "--max-disagreement", "0.10", "--min-delta", "accuracy=-0.05", "--out", str(tmp_path / "ok"),
        cwd=deployed,
    )  # fmt: skip
    assert lenient.exit_code == 0, lenient.output
    r = lenient.json["result"]
    assert r["compared"] == 2000 and r["task"] == "classification" and r["passed"] is True
    metrics = {m["metric"]: m for m in r["metrics"] if "unavailable" not in m}
    assert set(metrics) == {"accuracy", "auc", "log_loss"}
    for m in metrics.values():
        assert m["difference"]["low"] <= m["difference"]["estimate"] <= m["difference"]["high"]
    assert 0 < r["agreement"]["disagreement"] < 0.10 and r["disagreements"]
    assert set(r["latency"]) == {"v1", "v2"} and r["latency"]["v1"]["rows_per_second"] > 0

    strict = run_cli(
        "--json", "compare", "fraud", "v1", "v2", "--input", str(holdout), "--labels", "label",
        "--max-disagreement", "0.001", "--min-delta", "auc=0.05", "--out", str(tmp_path / "bad"),
        cwd=deployed,
    )  # fmt: skip
    assert strict.exit_code == 3, strict.output
    gate = {g["name"]: g for g in strict.json["result"]["gate"]}
    assert gate["disagreement"]["passed"] is False and gate["min_delta:auc"]["passed"] is False
    junit = (tmp_path / "bad" / "junit.xml").read_text()
    assert junit.count("<failure") == 2 and 'failures="2"' in junit
    page = (tmp_path / "bad" / "report.html").read_text()
    assert "FAILED" in page and "Where they disagree" in page


def test_the_ci_templates_compare_step_runs_as_written(deployed: Path) -> None:
    import shlex

    import yaml

    workflow = yaml.safe_load((deployed / ".github/workflows/mlserve.yml").read_text())
    steps = [s.get("run", "") for s in workflow["jobs"]["check"]["steps"]]
    script = next(s for s in steps if "mlserve compare" in s)
    line = script[script.index("mlserve compare") :].replace("\\\n", " ").splitlines()[0]
    gitlab = yaml.safe_load((deployed / ".gitlab-ci.yml").read_text())
    assert any(" ".join(shlex.split(line)) == " ".join(shlex.split(c)) for c in gitlab["compare"]["script"])
    res = run_cli("--json", *shlex.split(line)[1:], cwd=deployed)
    assert res.exit_code == 0, res.output
    assert (deployed / "compare" / "junit.xml").is_file() and res.json["result"]["passed"] is True


@pytest.mark.slow
def test_killed_again_and_again_at_random_moments_it_still_ends_identical(
    deployed: Path, rows: Path, full_run: Path
) -> None:
    """SIGKILL at seeded random moments (start-up, scan, scoring, assembly), resuming each time."""
    import random

    rng = random.Random(20261123)
    out, state = rows.parent / "random.jsonl", rows.parent / "state-random"
    argv = _argv(deployed, rows, out, state, "--concurrency", "1", "--batch-size", "250")
    env = {**os.environ, "NO_COLOR": "1"}
    kills = 0
    for _ in range(10):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(0.3, 2.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        if out.exists():
            break
    assert kills >= 3, kills
    if not out.exists():
        _run(argv)
    assert out.read_bytes() == full_run.read_bytes()
    assert not list(out.parent.glob(".random.jsonl.*.tmp"))
