"""The example project's stacks match the golden copies, and the committed stacks/ is
up to date. Regenerate on purpose with MLSERVE_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlserve.render import render_files
from tests.conftest import run_cli
from tests.render.manifests import REPO, example

GOLDEN = REPO / "tests" / "golden" / "stacks"


def _flatten(env: str) -> dict[str, str]:
    return {f"{env}/{p}": t for files in render_files(example(), env).values() for p, t in files.items()}


@pytest.mark.parametrize("env", ["staging", "prod", "edge"])
def test_example_stacks_match_golden_files(env: str) -> None:
    rendered = _flatten(env)
    if os.environ.get("MLSERVE_UPDATE_GOLDEN") == "1":
        for rel, text in rendered.items():
            path = GOLDEN / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        for stale in (GOLDEN / env).rglob("*"):
            if stale.is_file() and stale.relative_to(GOLDEN).as_posix() not in rendered:
                stale.unlink()
    golden = {p.relative_to(GOLDEN).as_posix(): p for p in (GOLDEN / env).rglob("*") if p.is_file()}
    assert sorted(golden) == sorted(rendered), "file set differs from tests/golden (MLSERVE_UPDATE_GOLDEN=1 to accept)"
    for rel, text in rendered.items():
        assert golden[rel].read_text(encoding="utf-8") == text, f"{rel} differs from its golden copy"


def test_rendering_is_deterministic() -> None:
    assert _flatten("staging") == _flatten("staging")
    assert _flatten("prod") == _flatten("prod")


def test_committed_stacks_are_up_to_date() -> None:
    result = run_cli("render", "--all", "--check", "--json", cwd=REPO)
    assert result.exit_code == 0, result.output
    assert result.json["result"]["up_to_date"] is True
    assert result.json["result"]["files"] > 30


def test_example_manifest_matches_the_scaffold() -> None:
    assert (REPO / "mlserve.toml").read_text() == (REPO / "mlserve" / "scaffold" / "mlserve.toml").read_text()


def test_golden_dir_is_the_rendered_example_not_an_empty_folder() -> None:
    assert (GOLDEN / "staging" / "terraform" / "cluster" / "node_groups.tf").is_file()
    assert Path(GOLDEN / "prod" / "kubernetes" / "traffic.yaml").is_file()


def test_same_bytes_across_processes_with_different_hash_seeds() -> None:
    import hashlib
    import sys

    from mlserve.tools import run

    script = (
        "import hashlib, sys; from pathlib import Path\n"
        "from mlserve.project import load_project; from mlserve.render import render_files\n"
        "p = load_project(Path(sys.argv[1])); h = hashlib.sha256()\n"
        "for env in ('staging', 'prod'):\n"
        "    for layer, files in sorted(render_files(p, env).items()):\n"
        "        for path, text in sorted(files.items()): h.update(path.encode()); h.update(text.encode())\n"
        "print(h.hexdigest())\n"
    )
    digests = {
        run([sys.executable, "-c", script, str(REPO)], env={"PYTHONHASHSEED": seed}, timeout=120).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1
    local = hashlib.sha256()
    for env in ("staging", "prod"):
        for _layer, files in sorted(render_files(example(), env).items()):
            for path, text in sorted(files.items()):
                local.update(path.encode())
                local.update(text.encode())
    assert digests == {local.hexdigest()}
