from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deploy import deployed_project

# The SLO the e2e tests give the example endpoint: loose enough that a healthy run passes on a
# busy 2-core machine, tight enough that a version slowed by SLOW_MS breaks it.
P99_SLO = "2s"
SLOW_MS = 2500


def _slo(root: Path) -> None:
    manifest = root / "mlserve.toml"
    text = manifest.read_text(encoding="utf-8")
    assert 'p99_latency = "250ms"' in text
    manifest.write_text(text.replace('p99_latency = "250ms"', f'p99_latency = "{P99_SLO}"', 1), encoding="utf-8")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, scaffolded: Path) -> Iterator[Path]:
    """The example project, deployed once per module with `mlserve deploy --env local`."""
    with deployed_project(tmp_path_factory, scaffolded, "loadtest", edit=_slo) as root:
        yield root
