"""`mlserve render` and `mlserve deploy` of a kubernetes environment while a rollout runs: the
rendered traffic objects carry the rollout's live weights and its candidate's workload, not
the manifest's stable split (a recording kubectl stand-in; no cluster exists here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlserve.project import load_project
from mlserve.rollout import service
from mlserve.status import Status
from tests.conftest import run_cli
from tests.deploy.conftest import FakeKubectl
from tests.support.policy import FAST, set_policy
from tests.support.sim import Clock, Sim, opener


def _objects(folder: Path, name: str = "fraud") -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for rel in ("traffic.yaml", f"endpoints/{name}.yaml"):
        for doc in yaml.safe_load_all((folder / rel).read_text()):
            if doc:
                out.setdefault(f"{rel}:{doc['kind']}", []).append(doc)
    return out


def _weights(folder: Path) -> dict[str, int]:
    (vs,) = [d for d in _objects(folder)["traffic.yaml:VirtualService"] if d["metadata"]["name"] == "fraud"]
    return {r["destination"]["subset"]: r["weight"] for r in vs["spec"]["http"][-1]["route"]}


def _seldon_weights(folder: Path) -> dict[str, int]:
    (sd,) = [d for d in _objects(folder)["traffic.yaml:SeldonDeployment"] if d["metadata"]["name"] == "fraud"]
    return {p["name"]: p["traffic"] for p in sd["spec"]["predictors"]}


@pytest.fixture
def canary_at_25(project: Path, fake_kubectl: FakeKubectl) -> Path:
    """A real rollout of fraud v1 -> v2 on prod (Seldon), driven to its first step (v2 25%)
    through the kubernetes router (looks simulated). Compared with the primary: the control's
    own rendering during a rollout is checked in tests/targets/test_live.py."""
    set_policy(project, **{**FAST, "control": "primary"})
    clock = Clock()
    service.start(load_project(project), "fraud", "v2", env="prod", clock=clock)
    res = service.step(load_project(project), "fraud", opener=opener(Sim()), clock=clock)
    assert res.record is not None
    assert res.record.status is Status.RUNNING and res.record.traffic.weights == {"v1": 75, "v2": 25}
    return project


def test_render_during_a_rollout_keeps_its_weights_and_candidate(canary_at_25: Path) -> None:
    project = canary_at_25
    res = run_cli("render", "--env", "prod", cwd=project)
    assert res.exit_code == 0, res.output
    assert "in progress (v1 -> v2, running, step 1/2): kept its live traffic (canary: v1 75%, v2 25%)" in res.stdout
    folder = project / "stacks/prod/kubernetes"
    assert _weights(folder) == {"v1": 75, "v2": 25}
    assert _seldon_weights(folder) == {"v1": 75, "v2": 25}
    objects = _objects(folder)
    # the candidate's workload, subset and disruption budget are all there
    (sd,) = objects["endpoints/fraud.yaml:SeldonDeployment"]
    assert {p["name"] for p in sd["spec"]["predictors"]} == {"v1", "v2"}
    (dr,) = objects["endpoints/fraud.yaml:DestinationRule"]
    assert {s["name"] for s in dr["spec"]["subsets"]} == {"v1", "v2"}
    assert {p["metadata"]["name"] for p in objects["endpoints/fraud.yaml:PodDisruptionBudget"]} == {
        "fraud-v1",
        "fraud-v2",
    }
    # render --check compares with the same live traffic: up to date
    check = run_cli("render", "--env", "prod", "--check", "--json", cwd=project)
    assert check.exit_code == 0 and check.json["result"]["up_to_date"] is True
    assert check.json["result"]["rollouts"] and "v1 75%" in check.json["result"]["rollouts"][0]


def test_deploy_during_a_rollout_applies_its_live_traffic_and_says_so(
    canary_at_25: Path, fake_kubectl: FakeKubectl
) -> None:
    project = canary_at_25
    fake_kubectl.exit_with("diff", 1)
    res = run_cli("deploy", "--env", "prod", "--layer", "kubernetes", "--yes", cwd=project)
    assert res.exit_code == 0, res.output
    assert "in progress (v1 -> v2, running, step 1/2)" in res.output and "v1 75%, v2 25%" in res.output
    folder = project / ".mlserve/deploy/prod/kubernetes"
    assert _weights(folder) == {"v1": 75, "v2": 25} and _seldon_weights(folder) == {"v1": 75, "v2": 25}
    applies = [c for c in fake_kubectl.calls() if "apply" in c]
    assert len(applies) == 2  # the rollout's first step, then the deploy
    assert applies[-1][-1] == str(folder.resolve())


def test_after_the_rollout_ends_render_is_the_stable_split_again(canary_at_25: Path) -> None:
    project = canary_at_25
    assert run_cli("rollout", "abort", "fraud", cwd=project).exit_code in (0, 3)
    res = run_cli("render", "--env", "prod", cwd=project)
    assert res.exit_code == 0 and "in progress" not in res.stdout
    folder = project / "stacks/prod/kubernetes"
    assert _weights(folder) == {"v1": 100} and _seldon_weights(folder) == {"v1": 100}


def test_a_started_rollout_renders_its_candidate_at_weight_0(project: Path, fake_kubectl: FakeKubectl) -> None:
    """Deploying right after `rollout start` creates the candidate's workload (and waits until
    it is Ready) before the first step gives it any traffic."""
    service.start(load_project(project), "fraud", "v2", env="staging", clock=Clock())
    res = run_cli("render", "--env", "staging", cwd=project)
    assert res.exit_code == 0, res.output
    folder = project / "stacks/staging/kubernetes"
    assert _weights(folder) == {"v1": 100}  # a route of weight 0 is left out of the VirtualService
    names = {d["metadata"]["name"] for d in _objects(folder)["endpoints/fraud.yaml:InferenceService"]}
    assert names == {"fraud-v1", "fraud-v2"}
    assert "before its first step" in res.stdout
