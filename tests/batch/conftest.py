from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deploy import deployed_project


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, scaffolded: Path) -> Iterator[Path]:
    """A fresh `mlserve init` project deployed once per module: real MLServer per version."""
    with deployed_project(tmp_path_factory, scaffolded, "batch") as root:
        yield root


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
