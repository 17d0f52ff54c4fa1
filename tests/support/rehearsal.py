"""A cluster rehearsal: the stand-in API server (real kubectl talks to it), exposition samples
that advance by its live weights, a real Prometheus scraping them, and a project whose
kubernetes environment points at all three. See :mod:`tests.support.apiserver` and
:mod:`tests.support.exposition`."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from tests.support.apiserver import FakeCluster
from tests.support.exposition import Behaviour, Exposition, prometheus


@dataclass
class Rehearsal:
    cluster: FakeCluster
    exposition: Exposition
    prometheus_url: str
    project: Path
    env: str
    namespace: str


def set_env(root: Path, env: str, **keys: Any) -> None:
    """Set keys of ``[environments.ENV]`` in the project's mlserve.toml (None removes one)."""
    path = root / "mlserve.toml"
    doc = tomlkit.parse(path.read_text())
    table = doc["environments"][env]  # type: ignore[index]
    for k, v in keys.items():
        if v is None:
            table.pop(k, None)  # type: ignore[union-attr]
        else:
            table[k] = v  # type: ignore[index]
    path.write_text(tomlkit.dumps(doc))


@contextlib.contextmanager
def rehearsal(
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    env: str,
    endpoint: str = "fraud",
    components: tuple[str, ...] = ("istio",),
    versions: dict[str, Behaviour] | None = None,
    crd_files: list[Path] | None = None,
    rate: float = 400.0,
    deploy: bool = True,
    comparator: bool = False,
    **env_keys: Any,
) -> Iterator[Rehearsal]:
    """Start everything, deploy the environment's kubernetes layer through kubectl, yield."""
    from mlserve.project import load_project
    from mlserve.targets.kubernetes import KubernetesTarget

    set_env(project, env, scrape_interval="1s", router_convergence="1s", **env_keys)
    p = load_project(project)
    e = p.manifest.environments[env]
    namespace = e.namespace or "default"
    context = KubernetesTarget(p, env).kube_context
    cluster = FakeCluster(crd_files)
    cluster.start()
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig", [context])))
    monkeypatch.setenv("KUBECACHEDIR", str(tmp_path / "kube-cache"))
    expo = Exposition(
        cluster, namespace, endpoint, e.serving or "kserve", e.router_kind, components=components,
        rate=rate, versions=versions or {},
    )  # fmt: skip
    port = expo.start()
    scrapes = [(job, f"127.0.0.1:{port}", path) for job, path in expo.targets()]
    stack = contextlib.ExitStack()
    if comparator:
        from tests.support.comparator_feed import Feed, comparator_process

        cport, proc = stack.enter_context(comparator_process(tmp_path))
        expo.on_mirrored = Feed(cport, e.serving or "kserve", endpoint, versions or {})
        expo.comparator = proc  # type: ignore[attr-defined]
        scrapes.append(("mlserve-comparator", f"127.0.0.1:{cport}", "/metrics"))
    try:
        with stack, prometheus(tmp_path / "prometheus", scrapes, interval=1.0, labels={"namespace": namespace}) as url:
            monkeypatch.setenv("MLSERVE_PROMETHEUS_URL", url)
            if deploy:
                target = KubernetesTarget(p, env, ready_timeout=30)
                target.deploy_layers("kubernetes")
            yield Rehearsal(cluster, expo, url, project, env, namespace)
    finally:
        expo.stop()
        cluster.stop()


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def env_without(name: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != name}
