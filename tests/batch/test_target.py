"""The batch seam: where a job's rows go comes from the environment's Target, opened by the
factory (its entry point and its ``access``), never from which target the manifest names."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlserve import targets
from mlserve.batch.target import endpoint_base
from mlserve.errors import TargetError, UsageError
from mlserve.project import Project, load_project
from mlserve.targets.base import ClientAccess, Environment, Options, Pin
from mlserve.targets.kubernetes import KubernetesTarget, open_kubernetes
from mlserve.targets.local import LocalTarget


def test_the_local_gateway_pins_by_path_and_stays_on_loopback(project: Path) -> None:
    p = load_project(project)
    assert endpoint_base(p, "local", "http://127.0.0.1:8123/") == ("http://127.0.0.1:8123", Pin.PATH)
    with pytest.raises(UsageError, match="reached on loopback only"):
        endpoint_base(p, "local", "http://10.1.2.3:8080")
    with pytest.raises(TargetError, match="not deployed locally"):
        endpoint_base(p, "local", None)  # the entry point comes from the running deployment


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_a_cluster_pins_by_header_and_needs_its_ingress(project: Path, env: str) -> None:
    p = load_project(project)
    assert endpoint_base(p, env, "https://ingress.example.com") == ("https://ingress.example.com", Pin.HEADER)
    with pytest.raises(UsageError, match="does not know its ingress URL") as err:
        endpoint_base(p, env, None)
    assert err.value.hint is not None and "--url" in err.value.hint


class _Elsewhere(KubernetesTarget):
    """A target whose entry point and pinning differ from its kind's usual ones."""

    access = ClientAccess(Pin.PATH, loopback_only=True)

    def entry_url(self) -> str:
        return "http://127.0.0.1:9555"


OPENED: list[str | None] = []


def open_elsewhere(project: Project, env_name: str | None, options: Options) -> Environment:
    """A factory for FACTORIES: the real environment with its target swapped."""
    OPENED.append(env_name)
    real = open_kubernetes(project, env_name, options)
    return Environment(real.name, _Elsewhere(project, real.name, options=options), real.router, real.metrics)


def test_the_answer_comes_from_the_factory_s_target(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Swap the kubernetes factory for one whose target says something else: the seam follows
    the target's entry point and access, so it never looked at ``target = "kubernetes"``."""
    p = load_project(project)
    OPENED.clear()
    monkeypatch.setitem(targets.FACTORIES, "kubernetes", "tests.batch.test_target:open_elsewhere")
    assert endpoint_base(p, "staging", None) == ("http://127.0.0.1:9555", Pin.PATH)
    with pytest.raises(UsageError, match="loopback only"):
        endpoint_base(p, "staging", "https://ingress.example.com")
    assert OPENED == ["staging", "staging"]
    assert isinstance(targets.open_target(p, "local"), LocalTarget)  # the other factory untouched
