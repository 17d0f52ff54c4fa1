from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, cwd: Path | None = None) -> CliResult:
    """Run the mlserve CLI in-process and capture exit code, stdout and stderr."""
    from mlserve.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(old)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture(scope="session")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `mlserve init` project per session (training models takes a second or two)."""
    from mlserve.scaffold import scaffold

    root = tmp_path_factory.mktemp("proj") / "acme-ml"
    scaffold(root)
    # The V2 tests deploy the local environment many times: leave the chat endpoint's two
    # `transformers serve` processes out of it (tests/local/test_e2e_llm.py puts it back).
    manifest = root / "mlserve.toml"
    text = manifest.read_text()
    assert 'endpoints = ["fraud", "chat"]' in text
    manifest.write_text(text.replace('endpoints = ["fraud", "chat"]', 'endpoints = ["fraud"]', 1))
    return root


@pytest.fixture
def project(tmp_path: Path, scaffolded: Path) -> Path:
    """A fresh copy of the scaffolded project that a test may change."""
    dest = tmp_path / "acme-ml"
    shutil.copytree(scaffolded, dest)
    return dest
