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


# GPUs per step of summarize (1 GPU per replica, 4 replicas; canary_size = "weight",
# scale_primary = true): shadow (20% mirrored), then 5, 20 and 50%
EXPECTED_GPUS = {
    # a control of the candidate's share and size: candidate and control 1, 1, 2 replicas each,
    # the primary 4 (95% -> 90% of the traffic), 3 (60%), 1 (0%: its floor)
    "replica": ([5, 6, 5, 5], [["primary", "candidate"], ["primary", "control", "candidate"]]),
    # two arms: the candidate 1, 1, 2 replicas, the primary 4 (95%), 4 (80%), 2 (50%)
    "primary": ([5, 5, 5, 4], [["primary", "candidate"], ["primary", "candidate"]]),
}


def _step_lines(output: str) -> list[str]:
    """The GPU lines of a command's output."""
    return [
        " ".join(line.split()) for line in output.splitlines() if line.strip().startswith("step ") and "GPUs (" in line
    ]


@pytest.mark.parametrize("control", ["replica", "primary"])
def test_rollout_start_and_analyze_plan_print_the_same_gpus_per_step(
    control: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both come from one core function (mlserve.rollout.plans.gpus_per_step): the same numbers
    in --json and the same lines on the terminal, the control counted where there is one."""
    recording_kubectl(tmp_path, monkeypatch)  # abort sets the baseline's traffic back
    set_policy(project, "summarize", canary_size="weight", scale_primary=True, max_extra_gpus=2, control=control)
    start = ("--project-dir", str(project), "rollout", "start", "summarize", "-c", "llama-8b-q", "--env", "staging")
    abort = ("--project-dir", str(project), "rollout", "abort", "summarize")
    analyze = ("--project-dir", str(project), "analyze", "--plan", "--endpoint", "summarize", "--rps", "20")
    res = run_cli(*start, "--json")
    assert res.exit_code == 0, res.output
    started = json.loads(res.stdout)["result"]["gpus"]
    assert run_cli(*abort).exit_code in (0, 4)
    text = run_cli(*start)
    assert text.exit_code == 0, text.output
    assert run_cli(*abort).exit_code in (0, 4)
    plan = run_cli(*analyze, "--json")
    assert plan.exit_code == 0, plan.output
    planned = json.loads(plan.stdout)["result"]["gpus"]
    gpus, roles = EXPECTED_GPUS[control]
    assert [s["gpus"] for s in started["steps"]] == gpus and started["peak"] == max(gpus) and started["cap"] == 2
    assert [[a["role"] for a in s["arms"]] for s in started["steps"]][:2] == roles
    assert planned == started  # every step, arm, replica count and GPU
    planned_text = run_cli(*analyze)
    assert planned_text.exit_code == 0, planned_text.output
    assert "GPUs per step (1 per replica, stable 4, cap +2, node group gpu-a10g holds 8):" in planned_text.output
    lines = _step_lines(text.output)
    assert len(lines) == 4 and lines == _step_lines(planned_text.output)
    assert lines[0] == "step 1 (shadow): 5 GPUs (llama-8b 4 (4x1), llama-8b-q 1 (1x1); +1 over the stable 4)"
    if control == "replica":
        assert (
            lines[1]
            == "step 2 (canary): 6 GPUs (llama-8b 4 (4x1), control 1 (1x1), llama-8b-q 1 (1x1); +2 over the stable 4)"
        )


def test_analyze_plan_with_steps_counts_the_gpus_of_those_steps(project: Path) -> None:
    """--steps replaces the policy's steps in the GPU lines too; a step above 50% (which a
    rollout with control = "replica" refuses) is planned without a control, as in the power plan."""
    set_policy(project, "summarize", canary_size="weight", scale_primary=True)
    res = run_cli(
        "--project-dir", str(project), "analyze", "--plan", "--endpoint", "summarize", "--rps", "20",
        "--steps", "10,75", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    steps = json.loads(res.stdout)["result"]["gpus"]["steps"]
    assert [s["phase"] for s in steps] == ["shadow", "canary", "canary"]
    assert [[a["arm"] for a in s["arms"]] for s in steps][1:] == [
        ["llama-8b", "control", "llama-8b-q"],
        ["llama-8b", "llama-8b-q"],
    ]
