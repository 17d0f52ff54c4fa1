"""Text that comes from files or messages is printed literally, never read as rich markup."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlserve.scaffold import ScaffoldResult
from tests.conftest import run_cli


def test_init_notes_keep_their_brackets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    note = "models/chat was not created: pip install 'mlserve[llm]'; then run `mlserve init --force`"

    def fake_scaffold(directory: Path, *, force: bool = False, train: bool = True) -> ScaffoldResult:
        return ScaffoldResult(
            project_name="p", root=directory, written=["models/[x]/model.joblib"], overwritten=[], notes=[note]
        )

    monkeypatch.setattr("mlserve.scaffold.scaffold", fake_scaffold)
    res = run_cli("init", str(tmp_path / "p"))
    assert res.exit_code == 0, res.output
    assert "mlserve[llm]" in res.output
    assert "models/[x]/model.joblib" in res.output


# ---------------------------------------------------------------------------
# Every command that shows a path, a name or a message from a file: a stray ``[/]`` would
# raise rich's MarkupError (an "internal error", exit 1) and ``[bold]`` would vanish.
# ---------------------------------------------------------------------------

HOSTILE = "[bold]b[/][/][link=http://e.vil]l"
HOSTILE_DIR = "p[bold]b[/]x[/]y[link=e.vil]z"  # a path: each "/" starts a folder


def _bracket_project(tmp_path: Path, scaffolded: Path) -> Path:
    import shutil

    dest = tmp_path / HOSTILE_DIR
    shutil.copytree(scaffolded, dest)
    return dest


def test_init_into_a_directory_named_with_markup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_scaffold(directory: Path, *, force: bool = False, train: bool = True) -> ScaffoldResult:
        return ScaffoldResult(project_name="p-b-l", root=directory.resolve(), written=[], overwritten=[], notes=[])

    monkeypatch.setattr("mlserve.scaffold.scaffold", fake_scaffold)
    target = tmp_path / HOSTILE_DIR
    res = run_cli("init", str(target))
    assert res.exit_code == 0, res.output
    assert f"in {target.resolve()}" in res.stdout
    # the next command is one a shell runs as printed
    assert f"mlserve --project-dir '{target}' validate" in res.stdout


def test_validate_shows_the_manifest_path_and_the_critical_marker(tmp_path: Path, scaffolded: Path) -> None:
    root = _bracket_project(tmp_path, scaffolded)
    res = run_cli("-C", str(root), "validate")
    assert res.exit_code == 0, res.output
    assert f"valid {root / 'mlserve.toml'}: project" in res.stdout
    assert "[critical]" in res.stdout  # a literal marker of the policy table, not a style tag
    assert res.stdout.count("[critical]") == run_cli("-C", str(root), "validate", "--json").stdout.count(
        '"critical": true'
    )


def test_render_and_check_show_an_out_folder_with_brackets(tmp_path: Path, scaffolded: Path) -> None:
    root = _bracket_project(tmp_path, scaffolded)
    out = tmp_path / "out" / HOSTILE_DIR
    res = run_cli("-C", str(root), "render", "--env", "staging", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert f"rendered staging -> {out / 'staging'}:" in res.stdout
    (out / "staging" / "kubernetes" / "namespace.yaml").write_text("# changed\n")
    res = run_cli("-C", str(root), "render", "--env", "staging", "--out", str(out), "--check")
    assert res.exit_code == 1, res.output
    assert "stale" in res.stdout and "staging/kubernetes/namespace.yaml" in res.stdout


def _hostile_snapshot() -> dict[str, object]:
    from tests.stats.test_cli import example

    data = example()
    names = {"v1": "[/]v1", "v2": "[bold]v2[/]"}
    data["endpoint"] = HOSTILE
    data["baseline"], data["candidate"] = names["v1"], names["v2"]
    for look in data["looks"]:  # type: ignore[attr-defined]
        look["weights"] = {names[k]: w for k, w in look["weights"].items()}
        look["variants"] = {names[k]: v for k, v in look["variants"].items()}
    return data


def test_replay_of_a_snapshot_whose_names_hold_markup(tmp_path: Path) -> None:
    import json

    folder = tmp_path / HOSTILE_DIR
    folder.mkdir(parents=True)
    snap = folder / "[bold]s.json"
    snap.write_text(json.dumps(_hostile_snapshot()))
    res = run_cli("analyze", "--replay", str(snap), cwd=tmp_path)
    assert res.exit_code == 4, res.output
    assert res.stdout.startswith(f"{HOSTILE}: [/]v1 (baseline) vs [bold]v2[/] (candidate), look 2 of 2")
    assert f"snapshot {snap}; policy: built-in defaults" in res.stdout
    assert "CONTINUE" in res.stdout
    assert "internal error" not in res.output


def test_replay_of_a_folder_shows_each_reason_verbatim(tmp_path: Path) -> None:
    import json

    folder = tmp_path / "snaps"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(_hostile_snapshot()))
    bad = _hostile_snapshot()
    bad["looks"][0]["variants"]["[/]v1"]["requests"] = "[/]many"  # type: ignore[index]
    (folder / "b.json").write_text(json.dumps(bad))
    res = run_cli("analyze", "--replay", str(folder), cwd=tmp_path)
    assert res.exit_code == 2, res.output
    reason = run_cli("analyze", "--replay", str(folder), "--json", cwd=tmp_path).json["result"][1]["reason"]
    assert '"[/]many"' in reason
    assert '"[/]many"' in res.stdout and "error: 1" in res.stdout and "continue: 1" in res.stdout


def test_plan_names_a_snapshot_path_with_brackets(tmp_path: Path) -> None:
    import json

    snap = tmp_path / f"{HOSTILE_DIR}.json"
    snap.parent.mkdir(parents=True)
    snap.write_text(json.dumps(_hostile_snapshot()))
    res = run_cli("analyze", "--plan", "--snapshot", str(snap), "--rps", "20", cwd=tmp_path)
    assert res.exit_code == 0, res.output
    assert f"from {snap}" in res.stdout


def test_rollout_status_shows_a_run_directory_with_brackets(
    tmp_path: Path, scaffolded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.policy import FAST, set_policy
    from tests.support.sim import FakeRouter, Sim, opener

    root = _bracket_project(tmp_path, scaffolded)
    monkeypatch.setattr("mlserve.targets.open_environment", opener(Sim(rate=3000.0), FakeRouter()))
    set_policy(root, **FAST)
    res = run_cli("-C", str(root), "rollout", "start", "fraud", "--candidate", "v2")
    assert res.exit_code == 0, res.output
    res = run_cli("-C", str(root), "rollout", "status", "fraud")
    assert res.exit_code == 0, res.output
    assert f"run directory: {root / 'experiments' / 'fraud'}" in res.stdout
    res = run_cli("-C", str(root), "rollout", "abort", "fraud")
    assert res.exit_code == 0, res.output
    assert "status: aborted" in res.stdout
