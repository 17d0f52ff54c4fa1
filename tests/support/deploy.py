"""The example project deployed on the local target, once per test module.

MLServer start-up costs seconds of CPU, so the end-to-end modules share one deployment
each; ``deployed_project`` is their one fixture body.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli


@contextlib.contextmanager
def deployed_project(
    tmp_path_factory: pytest.TempPathFactory,
    scaffolded: Path,
    name: str,
    edit: Callable[[Path], None] | None = None,
) -> Iterator[Path]:
    """A copy of the scaffolded project (changed by ``edit`` first), deployed with
    `mlserve deploy --env local`, and stopped with `mlserve down` afterwards."""
    root = tmp_path_factory.mktemp(name) / "acme-ml"
    shutil.copytree(scaffolded, root)
    if edit is not None:
        edit(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("NO_COLOR", "1")
    mp.setenv("COLUMNS", "200")
    try:
        res = run_cli("deploy", "--env", "local", cwd=root)
        assert res.exit_code == 0, res.output
        yield root
    finally:
        run_cli("down", cwd=root)
        mp.undo()
