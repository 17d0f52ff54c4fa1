"""Kubernetes traffic: the re-rendered objects and the exact kubectl argv (a recording
stand-in kubectl on PATH; no cluster exists here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlserve.project import load_project
from mlserve.rollout import service
from mlserve.targets import open_environment
from mlserve.targets.base import Mode, Plan
from mlserve.targets.kubernetes import KubernetesRouter
from tests.support.kubectl import recording_kubectl
from tests.support.policy import FAST, set_policy
from tests.support.sim import Clock, Sim, opener


@pytest.fixture
def kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return recording_kubectl(tmp_path, monkeypatch)


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _docs(folder: Path, name: str = "fraud") -> list[dict[str, Any]]:
    """The traffic patches of one endpoint."""
    docs = yaml.safe_load_all((folder / "traffic.yaml").read_text())
    return [d for d in docs if d and d["metadata"]["name"] == name]


def test_seldon_canary_weights_are_rendered_and_applied_server_side(project: Path, kubectl: Path) -> None:
    drv = KubernetesRouter(load_project(project), "prod")
    drv.apply("fraud", Plan.split(Mode.CANARY, "v1", "v2", 10))
    assert drv.last_applied is not None
    assert _calls(kubectl) == [
        ["--context", "acme-prod", "apply", "--server-side", "--field-manager=mlserve", "-k", str(drv.last_applied)]
    ]
    docs = {d["kind"]: d for d in _docs(drv.last_applied)}
    routes = docs["VirtualService"]["spec"]["http"][-1]["route"]
    assert {r["destination"]["subset"]: r["weight"] for r in routes} == {"v1": 90, "v2": 10}
    predictors = {p["name"]: p for p in docs["SeldonDeployment"]["spec"]["predictors"]}
    assert {n: p["traffic"] for n, p in predictors.items()} == {"v1": 90, "v2": 10}


def test_kserve_shadow_mirrors_through_istio(project: Path, kubectl: Path) -> None:
    env = open_environment(load_project(project), "staging")
    drv = env.router
    assert isinstance(drv, KubernetesRouter)
    drv.apply("fraud", Plan.shadow("v1", "v2", 20))
    call = _calls(kubectl)[0]
    assert call[:2] == ["--context", "acme-ml-staging"] and call[2:6] == [
        "apply",
        "--server-side",
        "--field-manager=mlserve",
        "-k",
    ]
    vs = next(d for d in _docs(drv.last_applied) if d["kind"] == "VirtualService")  # type: ignore[arg-type]
    http = vs["spec"]["http"][-1]
    assert http["mirror"]["subset"] == "v2" and http["mirrorPercentage"] == {"value": 20}
    assert {r["destination"]["subset"]: r["weight"] for r in http["route"]} == {"v1": 100}
    assert env.metrics.capabilities.query_set == "istio" and env.metrics.namespace == "ml-staging"  # type: ignore[attr-defined]


def test_rollout_on_kubernetes_walks_steps_with_one_apply_each(
    project: Path, kubectl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_policy(project, **FAST)
    clock = Clock()
    p = load_project(project)
    service.start(p, "fraud", "v2", env="prod", clock=clock)
    res = service.run_to_end(load_project(project), "fraud", opener=opener(Sim()), clock=clock, sleep=clock.sleep)
    assert res.to_dict()["status"] == "promoted"
    calls = _calls(kubectl)
    assert len(calls) == 3  # 75/25, 50/50, promotion
    assert all(c[:5] == ["--context", "acme-prod", "apply", "--server-side", "--field-manager=mlserve"] for c in calls)
    folder = Path(calls[-1][-1])
    sd = next(d for d in _docs(folder) if d["kind"] == "SeldonDeployment")
    assert {p["name"]: p["traffic"] for p in sd["spec"]["predictors"]} == {"v2": 100}
    assert 'baseline = "v2"' in (project / "mlserve.toml").read_text()


def test_the_control_on_kserve_is_rendered_three_ways_and_deleted_at_the_end(project: Path, kubectl: Path) -> None:
    set_policy(project, **{**FAST, "steps": [10, 100]})
    clock = Clock()
    service.start(load_project(project), "fraud", "v2", env="staging", clock=clock)
    res = service.run_to_end(load_project(project), "fraud", opener=opener(Sim()), clock=clock, sleep=clock.sleep)
    assert res.to_dict()["status"] == "promoted"
    calls = _calls(kubectl)
    applies = [c for c in calls if c[2] == "apply"]
    assert len(applies) == 2  # the 10% step (with the control), the promotion
    # the end: traffic without the control first, then its InferenceService deleted by name
    assert calls[-1][2:] == ["delete", "-n", "ml-staging", "--ignore-not-found=true", "--wait=false",
                             "inferenceservices.serving.kserve.io", "fraud-control"]  # fmt: skip
    assert calls.index(calls[-1]) > calls.index(applies[-1])


def test_a_controlled_plan_renders_the_control_subset(project: Path, kubectl: Path) -> None:
    drv = KubernetesRouter(load_project(project), "staging")
    drv.apply("fraud", Plan.controlled(Mode.CANARY, "v1", "v2", "control", 10))
    assert drv.last_applied is not None
    vs = next(d for d in _docs(drv.last_applied) if d["kind"] == "VirtualService")
    routes = {r["destination"]["subset"]: r["weight"] for r in vs["spec"]["http"][-1]["route"]}
    assert routes == {"v1": 80, "control": 10, "v2": 10}
    assert drv.arms("fraud") == ("control",)
    drv.stop_arm("fraud", "control")
    assert drv.arms("fraud") == ()
    assert _calls(kubectl)[-1][-2:] == ["inferenceservices.serving.kserve.io", "fraud-control"]
