from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli

# The SLO the e2e tests give the example endpoint: loose enough that a healthy run passes on a
# busy 2-core machine, tight enough that a version slowed by SLOW_MS breaks it.
P99_SLO = "2s"
SLOW_MS = 2500


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, scaffolded: Path) -> Iterator[Path]:
    """The example project, deployed once per module with `mlserve deploy --env local`."""
    root = tmp_path_factory.mktemp("loadtest") / "acme-ml"
    shutil.copytree(scaffolded, root)
    manifest = root / "mlserve.toml"
    text = manifest.read_text(encoding="utf-8")
    assert 'p99_latency = "250ms"' in text
    manifest.write_text(text.replace('p99_latency = "250ms"', f'p99_latency = "{P99_SLO}"', 1), encoding="utf-8")
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
