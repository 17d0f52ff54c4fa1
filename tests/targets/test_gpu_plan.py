"""GPU-aware steps: GPUs per arm and step, the cap and the node group, refused before any
traffic moves (exit 2, with the numbers), and shown by rollout start and analyze --plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlserve.capacity import ArmShare, arm_replicas, gpu_plan
from mlserve.project import load_project
from tests.conftest import run_cli
from tests.support.kubectl import recording_kubectl
from tests.support.policy import set_policy


def _canary(w: int) -> tuple[str, list[ArmShare]]:
    return (
        "canary",
        [ArmShare("llama-8b", "llama-8b", "primary", 100 - w), ArmShare("llama-8b-q", "llama-8b-q", "candidate", w)],
    )


def test_full_size_arms_double_the_gpus_and_weight_sizing_does_not(project: Path) -> None:
    m = load_project(project).manifest
    plan = gpu_plan(m, "staging", "summarize", [_canary(5), _canary(50)])
    # summarize: 1 GPU per replica, max_replicas 4: the primary and a full-size candidate hold 8
    assert plan.stable == 4 and [s.gpus for s in plan.steps] == [8, 8] and [s.extra for s in plan.steps] == [4, 4]
    assert plan.node_group == "gpu-a10g" and plan.node_capacity == 8 and not plan.problems
    set_policy(project, "summarize", canary_size="weight", scale_primary=True, max_extra_gpus=1)
    m = load_project(project).manifest
    ep = m.endpoints["summarize"]
    assert arm_replicas(ep, "candidate", 5) == (1, 1) and arm_replicas(ep, "primary", 95) == (1, 4)
    plan = gpu_plan(m, "staging", "summarize", [_canary(5), _canary(25), _canary(50)])
    assert [(s.gpus, s.extra) for s in plan.steps] == [(5, 1), (4, 0), (4, 0)]
    assert [[a.replicas for a in s.arms] for s in plan.steps] == [[4, 1], [3, 1], [2, 2]]
    assert not plan.problems


def test_cap_and_node_group_are_checked_with_the_numbers(project: Path) -> None:
    set_policy(project, "summarize", canary_size="weight", max_extra_gpus=1)
    plan = gpu_plan(load_project(project).manifest, "staging", "summarize", [_canary(5), _canary(50)])
    assert plan.problems == (
        "step 2 (canary) needs 6 GPUs, 2 above the stable 4: more than endpoints.summarize.rollout.max_extra_gpus = 1",
    )
    text = (
        (project / "mlserve.toml")
        .read_text()
        .replace("max_extra_gpus = 1\n", "")
        .replace('canary_size = "weight"\n', "")
    )
    text = text.replace("max_replicas = 4", "max_replicas = 5", 1)
    (project / "mlserve.toml").write_text(text)
    plan = gpu_plan(load_project(project).manifest, "staging", "summarize", [_canary(50)])
    # the node group is rendered for 2 x 5 GPUs: 10 fit
    assert plan.node_capacity == 10 and not plan.problems
    big = load_project(project).manifest.model_copy(deep=True)
    assert gpu_plan(big, "prod", "summarize", [_canary(50)]).node_capacity is None  # existing cluster: no group


def test_a_step_over_the_node_group_is_refused_with_the_numbers(project: Path) -> None:
    """The node group is rendered for two full-size arms per GPU endpoint; a third full-size
    arm (a concurrent control at the baseline's size) does not fit, with or without a cap."""
    from mlserve.capacity import refuse_if_over
    from mlserve.errors import UsageError

    three = (
        "canary",
        [ArmShare("llama-8b", "llama-8b", "primary", 50), ArmShare("llama-8b-q", "llama-8b-q", "candidate", 25),
         ArmShare("control", "llama-8b", "control", 25)],
    )  # fmt: skip
    plan = gpu_plan(load_project(project).manifest, "staging", "summarize", [_canary(5), three])
    assert plan.node_group == "gpu-a10g" and plan.node_capacity == 8
    assert [s.gpus for s in plan.steps] == [8, 12]
    assert plan.problems == ("step 2 (canary) needs 12 GPUs; the node group gpu-a10g holds at most 8 for summarize",)
    with pytest.raises(UsageError) as err:
        refuse_if_over(plan)
    assert (
        err.value.exit_code == 2 and "needs 12 GPUs" in err.value.message and "nothing was changed" in err.value.message
    )
    # sized by their share, the three arms fit: 4 + 1 + 1
    set_policy(project, "summarize", canary_size="weight")
    fits = gpu_plan(load_project(project).manifest, "staging", "summarize", [three])
    assert [s.gpus for s in fits.steps] == [6] and not fits.problems


def test_rollout_start_refuses_an_over_budget_plan_before_anything_moves(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = recording_kubectl(tmp_path, monkeypatch)
    set_policy(project, "summarize", canary_size="weight", max_extra_gpus=1)
    res = run_cli(
        "--project-dir", str(project), "rollout", "start", "summarize", "-c", "llama-8b-q", "--env", "staging", "--json"
    )
    assert res.exit_code == 2, res.output
    err = " ".join(res.output.split())
    assert "needs 6 GPUs, 2 above the stable 4" in err and "max_extra_gpus = 1" in err and "nothing was changed" in err
    assert not (project / "experiments" / "summarize").exists() or not any(
        (project / "experiments" / "summarize").iterdir()
    )
    assert not log.exists()  # no kubectl call: no traffic moved


def test_rollout_start_and_analyze_plan_show_gpus_per_step(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording_kubectl(tmp_path, monkeypatch)  # abort sets the baseline's traffic back
    set_policy(project, "summarize", canary_size="weight", scale_primary=True, max_extra_gpus=2)
    res = run_cli(
        "--project-dir", str(project), "rollout", "start", "summarize", "-c", "llama-8b-q", "--env", "staging"
    )
    assert res.exit_code == 0, res.output
    assert "GPUs per step (1 per replica):" in res.output
    assert "step 1 (shadow): 5 GPUs (llama-8b 4 (4x1), llama-8b-q 1 (1x1); +1 over the stable 4)" in res.output
    st = run_cli("--project-dir", str(project), "rollout", "abort", "summarize")
    assert st.exit_code in (0, 4), st.output
    res = run_cli(
        "--project-dir", str(project), "rollout", "start", "summarize", "-c", "llama-8b-q", "--env", "staging", "--json"
    )
    gpus = json.loads(res.stdout)["result"]["gpus"]
    # shadow (20% mirrored), then 5, 20, 50% with a control of the candidate's share and size
    # (control = "replica"): candidate and control 1, 1, 2 replicas each, the primary 4 (95%
    # -> 90% of the traffic), 3 (60%), 1 (0%: its floor)
    assert [s["gpus"] for s in gpus["steps"]] == [5, 6, 5, 5] and gpus["peak"] == 6 and gpus["cap"] == 2
    assert [[a["role"] for a in s["arms"]] for s in gpus["steps"]][1] == ["primary", "control", "candidate"]
    plan = run_cli(
        "--project-dir", str(project), "analyze", "--plan", "--endpoint", "summarize", "--rps", "20", "--json"
    )
    assert plan.exit_code == 0, plan.output
    g = json.loads(plan.stdout)["result"]["gpus"]
    assert [(s["phase"], s["gpus"], s["extra"]) for s in g["steps"]] == [
        ("shadow", 5, 1),
        ("canary", 5, 1),
        ("canary", 5, 1),
        ("canary", 4, 0),
    ]
    text = run_cli("--project-dir", str(project), "analyze", "--plan", "--endpoint", "summarize", "--rps", "20").output
    assert "GPUs per step (1 per replica, stable 4, cap +2, node group gpu-a10g holds 8):" in text
    assert "step 4 (canary): 4 GPUs, +0 over stable: llama-8b 2 (2 replicas), llama-8b-q 2 (2 replicas)" in text
