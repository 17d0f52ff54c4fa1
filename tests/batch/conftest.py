from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, scaffolded: Path) -> Iterator[Path]:
    """A fresh `mlserve init` project deployed once per module: real MLServer per version."""
    root = tmp_path_factory.mktemp("batch") / "acme-ml"
    shutil.copytree(scaffolded, root)
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


def write_rows(path: Path, n: int, seed: int = 5) -> Path:
    """``n`` fraud-shaped rows as JSONL: an id, the 8 features and a label."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(n, 8)), 5)
    y = rng.integers(0, 2, n)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            row = {"id": f"tx-{i:07d}", **{f"f{j}": float(x[i, j]) for j in range(8)}, "label": int(y[i])}
            fh.write(json.dumps(row) + "\n")
    return path
