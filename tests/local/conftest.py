from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deploy import deployed_project


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, scaffolded: Path) -> Iterator[Path]:
    """The example project deployed once per module (MLServer start-up costs seconds of CPU)."""
    with deployed_project(tmp_path_factory, scaffolded, "local") as root:
        yield root
