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
