from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np

from mlserve.scaffold import N_FEATURES
from tests.conftest import REPO, run_cli


def test_init_then_validate(tmp_path: Path) -> None:
    target = tmp_path / "my-team"
    res = run_cli("init", str(target))
    assert res.exit_code == 0, res.output
    for rel in (
        "mlserve.toml",
        ".gitignore",
        ".github/workflows/mlserve.yml",
        ".gitlab-ci.yml",
        "experiments/policies/cautious.toml",
        "templates/README.md",
        "payloads/fraud.jsonl",
        "models/fraud/v1/model.joblib",
        "models/fraud/v2/model.joblib",
    ):
        assert (target / rel).is_file(), rel
    assert 'name = "my-team"' in (target / "mlserve.toml").read_text()
    val = run_cli("--project-dir", str(target), "--json", "validate")
    assert val.exit_code == 0, val.output
    doc = val.json
    assert doc["ok"] is True and doc["result"]["project"] == "my-team"
    # the one thing validate warns about in the example: prod serves with Seldon, whose
    # executor's latency buckets (2-2.5x apart) cannot resolve a 10% (15%) margin at p99 (p95)
    warned = [w.split(":")[0] for w in doc["result"]["warnings"]]
    assert warned == ["endpoints.fraud.rollout.metrics[1].margin", "endpoints.summarize.rollout.metrics[1].margin"]
    assert all("environment 'prod'" in w and "Seldon's executor" in w for w in doc["result"]["warnings"])
    assert {e["name"] for e in doc["result"]["endpoints"]} == {"fraud", "summarize", "chat"}


def test_init_models_differ_and_are_deterministic(tmp_path: Path, scaffolded: Path) -> None:
    run_cli("init", str(tmp_path / "again"))
    x = np.random.default_rng(0).normal(size=(500, N_FEATURES))
    v1 = joblib.load(scaffolded / "models/fraud/v1/model.joblib")
    v2 = joblib.load(scaffolded / "models/fraud/v2/model.joblib")
    again = joblib.load(tmp_path / "again/models/fraud/v1/model.joblib")
    assert np.array_equal(v1.predict_proba(x), again.predict_proba(x))
    disagree = float(np.mean(v1.predict(x) != v2.predict(x)))
    assert 0.0 < disagree < 0.2  # v2 is a slightly different model, not a different task


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "mlserve.toml").write_text("# mine\n")
    res = run_cli("init", str(tmp_path))
    assert res.exit_code == 2
    assert "would overwrite mlserve.toml" in res.stderr
    assert "--force" in res.stderr
    assert (tmp_path / "mlserve.toml").read_text() == "# mine\n"
    assert not (tmp_path / "models").exists()


def test_init_force_overwrites(tmp_path: Path) -> None:
    (tmp_path / "mlserve.toml").write_text("# mine\n")
    res = run_cli("--json", "init", str(tmp_path), "--force")
    assert res.exit_code == 0, res.output
    assert res.json["result"]["overwritten"] == ["mlserve.toml"]
    assert run_cli("--project-dir", str(tmp_path), "validate").exit_code == 0


def test_example_policy_is_valid(scaffolded: Path) -> None:
    from mlserve.manifest import load_policy

    policy = load_policy(scaffolded / "experiments/policies/cautious.toml")
    assert policy.alpha == 0.01 and [m.name for m in policy.metrics] == ["error_rate", "latency_p99", "latency_p50"]


def test_repository_example_validates() -> None:
    res = run_cli("--project-dir", str(REPO), "--json", "validate")
    assert res.exit_code == 0, res.output
    gpu = [e for e in res.json["result"]["endpoints"] if e["gpu"]]
    assert gpu and gpu[0]["gpu_type"] == "a10g"


def test_version_and_help() -> None:
    res = run_cli("--version")
    assert res.exit_code == 0 and res.stdout.startswith("mlserve ")
    res = run_cli("--help")
    assert res.exit_code == 0 and "validate" in res.stdout


def test_unknown_command_is_usage_error() -> None:
    res = run_cli("frobnicate")
    assert res.exit_code == 2
    res = run_cli("--json", "frobnicate")
    assert res.exit_code == 2 and res.json["ok"] is False and res.json["error"]["type"] == "usage"


def test_json_flag_after_command(tmp_path: Path, scaffolded: Path) -> None:
    res = run_cli("--project-dir", str(scaffolded), "validate", "--json")
    assert res.exit_code == 0 and res.json["command"] == "validate"


def test_no_color_respected(scaffolded: Path) -> None:
    res = run_cli("--project-dir", str(scaffolded), "validate")
    assert "\x1b[" not in res.stdout


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from mlserve.cli.main import main; "
        "rc = main(['--help']); "
        "heavy = [m for m in ('scipy', 'pandas', 'locust', 'matplotlib', 'numpy', 'sklearn', 'mlserver', 'httpx') "
        "if m in sys.modules]; print(json.dumps(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_validate_does_not_import_heavy_modules() -> None:
    code = (
        "import json, sys; from mlserve.cli.main import main; "
        f"rc = main(['--project-dir', {str(REPO)!r}, '--json', 'validate']); "
        "heavy = [m for m in ('scipy', 'pandas', 'locust', 'matplotlib', 'sklearn', 'mlserver') if m in sys.modules]; "
        "print(json.dumps(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_repository_experiments_match_what_init_writes() -> None:
    from mlserve.scaffold import static_files

    files = static_files()
    for rel in ("experiments/README.md", "experiments/policies/cautious.toml"):
        assert (REPO / rel).read_text() == files[rel], rel
