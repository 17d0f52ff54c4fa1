"""Rollouts in progress handed to the targets: the rollout service reads them from the run
records (no target reads a run directory), and the kubernetes target renders their plans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlserve.project import load_project
from mlserve.render import EndpointTraffic
from mlserve.rollout import service
from mlserve.targets.base import DeployRequest, LiveRollout, Mode, Options, Plan
from mlserve.targets.live import live_traffic, render_state
from mlserve.targets.local import LocalTarget
from tests.support.kubectl import recording_kubectl
from tests.support.policy import FAST, set_policy
from tests.support.sim import Clock, FakeRouter, Sim, opener


def _live(plan: Plan, env: str = "prod", candidate: str = "v2") -> LiveRollout:
    return LiveRollout("fraud", "r1", env, "running", "v1", candidate, 1, 2, plan)


def test_live_rollouts_follow_the_run_record_from_start_to_end(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recording_kubectl(project.parent, monkeypatch)  # the abort puts the baseline back through kubectl
    set_policy(project, **FAST)
    clock = Clock()
    p = load_project(project)
    assert service.live_rollouts(p, "prod") == {}
    started = service.start(p, "fraud", "v2", env="prod", clock=clock)
    assert started.record is not None
    (live,) = service.live_rollouts(load_project(project), "prod").values()
    assert (live.run_id, live.env, live.status, live.step, live.steps) == (
        started.record.run_id,
        "prod",
        "running",
        0,
        2,
    )
    assert live.plan == Plan.stable("v1")
    assert service.live_rollouts(load_project(project), "staging") == {}  # another environment's endpoints
    service.step(load_project(project), "fraud", opener=opener(Sim(), FakeRouter()), clock=clock)
    (live,) = service.live_rollouts(load_project(project), "prod").values()
    assert live.step == 1 and live.plan.weights == {"v1": 50, "control": 25, "v2": 25} and live.plan.mode is Mode.CANARY
    service.abort(load_project(project), "fraud")
    assert service.live_rollouts(load_project(project), "prod") == {}


def test_a_rollout_that_moved_no_traffic_renders_its_candidate_at_weight_0() -> None:
    assert render_state(_live(Plan.stable("v1"))) == EndpointTraffic("v1", "v2", "canary", {"v1": 100, "v2": 0})
    canary = render_state(_live(Plan.split(Mode.AB, "v1", "v2", 30)))
    assert canary == EndpointTraffic("v1", "v2", "ab", {"v1": 70, "v2": 30})
    shadow = render_state(_live(Plan.shadow("v1", "v2", 20)))
    assert shadow == EndpointTraffic("v1", "v2", "shadow", {"v1": 100, "v2": 0}, 20)
    # a step with its control renders the control's workload and its share
    controlled = render_state(_live(Plan.controlled(Mode.CANARY, "v1", "v2", "control", 10)))
    assert controlled == EndpointTraffic("v1", "v2", "canary", {"v1": 80, "control": 10, "v2": 10}, control="control")


def test_live_traffic_keeps_only_rollouts_the_manifest_can_still_render(project: Path) -> None:
    p = load_project(project)
    plan = Plan.split(Mode.CANARY, "v1", "v2", 25)
    assert set(live_traffic(p, "prod", {"fraud": _live(plan)})) == {"fraud"}
    assert live_traffic(p, "prod", {"fraud": _live(plan, env="staging")}) == {}
    assert live_traffic(p, "prod", {"fraud": _live(plan, candidate="v9")}) == {}  # gone from the manifest
    (item,) = live_traffic(p, "prod", {"fraud": _live(plan)}).values()
    assert "kept its live traffic (canary: v1 75%, v2 25%)" in item.describe()


def test_the_local_target_hands_deploy_the_rollouts_weights(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlserve.local.lifecycle as lifecycle

    seen: dict[str, Any] = {}
    monkeypatch.setattr(lifecycle, "deploy", lambda *a, **kw: seen.update(kw))
    live = LiveRollout("fraud", "r1", "local", "paused", "v1", "v2", 1, 2, Plan.split(Mode.CANARY, "v1", "v2", 10))
    LocalTarget(load_project(project), "local", Options(rollouts={"fraud": live})).deploy(DeployRequest())
    (kept,) = seen["rollouts"]
    assert (kept.endpoint, kept.run_id, kept.status, kept.step, kept.steps) == ("fraud", "r1", "paused", 1, 2)
    assert kept.weights == {"v1": 90, "v2": 10}
