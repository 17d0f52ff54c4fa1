"""Fixtures shared by the render tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.render.manifests import example


@pytest.fixture(scope="session")
def example_built(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The example project's kubernetes folder built by ``kubectl kustomize`` once per
    environment and traffic mode (what ``kubectl apply -k`` would send), for every test that
    inspects the objects."""
    from tests.render.test_kubernetes import TRAFFIC_STATES, kustomize

    root = tmp_path_factory.mktemp("built")
    return {
        (env, mode): kustomize(example(), env, root / f"{env}-{mode}", TRAFFIC_STATES[mode])
        for env in ("staging", "prod")
        for mode in sorted(TRAFFIC_STATES)
    }
