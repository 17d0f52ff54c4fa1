from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, scaffolded: Path) -> Iterator[Path]:
    """The example project deployed once per module (MLServer start-up costs seconds of CPU)."""
    from tests.local.nodrop import deployed_copy

    with deployed_copy(scaffolded, tmp_path_factory.mktemp("local") / "acme-ml") as root:
        yield root
