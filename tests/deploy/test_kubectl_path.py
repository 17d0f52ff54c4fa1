"""The kubectl path, with a recording stand-in for kubectl on PATH (no cluster exists here).

The stand-in appends each argv to a file and exits with the code a test chooses per
subcommand, so these tests pin the exact command lines, their order, and what a
non-zero exit does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlserve.errors import ToolError
from mlserve.tools.kubectl import Kubectl
from tests.conftest import run_cli
from tests.deploy.conftest import FakeKubectl

KDIR = ".mlserve/deploy/prod/kubernetes"
APPLY = ["apply", "--server-side", "--field-manager=mlserve", "-k"]
DIFF = ["diff", "--server-side", "--field-manager=mlserve", "-k"]


def _record(project: Path, env: str = "prod") -> dict:
    path = project / ".mlserve/deployments" / f"{env}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_kubectl_argv_is_exact(fake_kubectl: FakeKubectl, tmp_path: Path) -> None:
    k = Kubectl("acme-prod")
    k.apply(tmp_path)
    assert k.diff(tmp_path) is False
    fake_kubectl.exit_with("diff", 1)
    assert k.diff(tmp_path) is True
    k.wait("inferenceservices.serving.kserve.io", "condition=Ready", namespace="ml", timeout=42)
    k.delete(tmp_path)
    assert fake_kubectl.calls() == [
        ["--context", "acme-prod", *APPLY, str(tmp_path)],
        ["--context", "acme-prod", *DIFF, str(tmp_path)],
        ["--context", "acme-prod", *DIFF, str(tmp_path)],
        [
            "--context",
            "acme-prod",
            "wait",
            "-n",
            "ml",
            "--for=condition=Ready",
            "--timeout=42s",
            "inferenceservices.serving.kserve.io",
            "--all",
        ],
        ["--context", "acme-prod", "delete", "--ignore-not-found=true", "--wait=true", "-k", str(tmp_path)],
    ]


def test_kubectl_error_carries_its_stderr(fake_kubectl: FakeKubectl, tmp_path: Path) -> None:
    fake_kubectl.exit_with("diff", 2, stderr="error: unable to recognize: no matches for kind InferenceService")
    with pytest.raises(ToolError) as info:
        Kubectl("ctx").diff(tmp_path)
    assert "kubectl diff -k" in info.value.message and "(context ctx)" in info.value.message
    assert "no matches for kind InferenceService" in info.value.message
    assert info.value.returncode == 2


def test_deploy_kubernetes_layer_diff_apply_wait(project: Path, fake_kubectl: FakeKubectl) -> None:
    fake_kubectl.exit_with("diff", 1)  # the cluster differs from the rendered folder
    res = run_cli("deploy", "--env", "prod", "--layer", "kubernetes", "--yes", "--timeout", "90", "--json", cwd=project)
    assert res.exit_code == 0, res.output
    kdir = str((project / KDIR).resolve())
    assert fake_kubectl.calls() == [
        ["--context", "acme-prod", *DIFF, kdir],
        ["--context", "acme-prod", *APPLY, kdir],
        [
            "--context",
            "acme-prod",
            "wait",
            "-n",
            "ml-prod",
            "--for=jsonpath={.status.state}=Available",  # serving = "seldon"
            "--timeout=90s",
            "seldondeployments.machinelearning.seldon.io",
            "--all",
        ],
    ]
    assert (project / KDIR / "kustomization.yaml").is_file()
    (layer,) = res.json["result"]["layers"]
    assert (layer["layer"], layer["tool"], layer["action"], layer["ready"]) == (
        "kubernetes",
        "kubectl",
        "applied",
        True,
    )
    entry = _record(project)["layers"]["kubernetes"]
    assert entry["context"] == "acme-prod" and entry["stack_hash"] == layer["stack_hash"]


def test_deploy_with_no_diff_applies_nothing(project: Path, fake_kubectl: FakeKubectl) -> None:
    res = run_cli("deploy", "--env", "prod", "--layer", "kubernetes", "--yes", cwd=project)
    assert res.exit_code == 0, res.output
    assert [c[2] for c in fake_kubectl.calls()] == ["diff"]
    assert "kubernetes: no changes, nothing applied" in res.stdout
    assert "up to date prod" in res.stdout


def test_apply_failure_exits_1_without_waiting_or_recording(project: Path, fake_kubectl: FakeKubectl) -> None:
    fake_kubectl.exit_with("diff", 1)
    fake_kubectl.exit_with("apply", 1, stderr='error: Apply failed with 1 conflict: conflict with "helm"')
    res = run_cli("deploy", "--env", "prod", "--layer", "kubernetes", "--yes", cwd=project)
    assert res.exit_code == 1
    assert "kubectl apply -k" in res.stderr and "failed (context acme-prod)" in res.stderr
    assert 'conflict with "helm"' in res.stderr
    assert [c[2] for c in fake_kubectl.calls()] == ["diff", "apply"]  # no wait after a failed apply
    assert _record(project) == {}


def test_readiness_timeout_is_bounded_and_reported(project: Path, fake_kubectl: FakeKubectl) -> None:
    fake_kubectl.exit_with("diff", 1)
    fake_kubectl.exit_with("wait", 1, stderr="error: timed out waiting for the condition on seldondeployments/fraud")
    res = run_cli("deploy", "--env", "prod", "--layer", "kubernetes", "--yes", "--timeout", "5", cwd=project)
    assert res.exit_code == 1
    assert "applied, but the endpoints were not ready within 5s" in res.stderr
    assert "timed out waiting for the condition" in res.stderr
    assert fake_kubectl.calls()[-1][6] == "--timeout=5s"


def test_deploy_refuses_without_yes_and_without_a_terminal(project: Path, fake_kubectl: FakeKubectl) -> None:
    res = run_cli("deploy", "--env", "prod", "--layer", "kubernetes", cwd=project)
    assert res.exit_code == 2
    assert "deploy prod needs --yes when not run from a terminal" in res.stderr
    assert fake_kubectl.calls() == []


def test_layers_in_order_platform_failure_stops_before_kubectl(
    project: Path, fake_kubectl: FakeKubectl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.deploy.conftest import plugin_mirror

    monkeypatch.setenv("MLSERVE_TF_PLUGIN_DIR", plugin_mirror())
    res = run_cli("deploy", "--env", "prod", "--yes", cwd=project)
    assert res.exit_code == 1
    assert "platform: terraform init" in res.stdout
    assert "cannot install provider hashicorp/helm" in res.stderr
    assert fake_kubectl.calls() == []  # the kubernetes layer comes after the platform layer


def test_destroy_goes_in_reverse_order(project: Path, fake_kubectl: FakeKubectl) -> None:
    res = run_cli("destroy", "--env", "prod", "--yes", cwd=project)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert out.index("kubernetes: kubectl delete") < out.index("platform: nothing deployed")
    kdir = str((project / KDIR).resolve())
    assert fake_kubectl.calls() == [
        ["--context", "acme-prod", "delete", "--ignore-not-found=true", "--wait=true", "-k", kdir]
    ]


def test_status_shows_readiness_and_weights(project: Path, fake_kubectl: FakeKubectl) -> None:
    fake_kubectl.exit_with("diff", 1)
    assert run_cli("deploy", "--env", "prod", "--layer", "kubernetes", "--yes", cwd=project).exit_code == 0
    listing = {
        "items": [
            {
                "metadata": {"name": "fraud"},
                "spec": {
                    "predictors": [
                        {"name": "v1", "traffic": 90},
                        {"name": "v2", "traffic": 10},
                        {"name": "v3", "traffic": 0, "shadow": True},
                    ]
                },
                "status": {"state": "Available"},
            }
        ]
    }
    fake_kubectl.monkeypatch.setenv("FAKE_KUBECTL_GET", json.dumps(listing))
    res = run_cli("status", "--env", "prod", "--json", cwd=project)
    assert res.exit_code == 0, res.output
    result = res.json["result"]
    assert result["cluster_reachable"] is True
    assert result["endpoints"] == [{"name": "fraud", "ready": True, "weights": {"v1": 90, "v2": 10}}]
    layers = {x["layer"]: x for x in result["layers"]}
    assert layers["kubernetes"]["deployed"] and layers["kubernetes"]["drift"] == []
    assert not layers["platform"]["deployed"]
    get = fake_kubectl.calls()[-1]
    assert get[:7] == [
        "--context",
        "acme-prod",
        "get",
        "seldondeployments.machinelearning.seldon.io",
        "-n",
        "ml-prod",
        "-o",
    ]

    fake_kubectl.exit_with("get", 1, stderr="Unable to connect to the server: dial tcp: no such host")
    down = run_cli("status", "--env", "prod", "--json", cwd=project)
    assert down.exit_code == 0
    assert down.json["result"]["cluster_reachable"] is False
    assert "cluster not reachable" in down.json["result"]["problems"][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("deploy", "--env", "prod", "--layer", "cluster", "--yes"), "environment 'prod' has no cluster layer"),
        (("plan", "--env", "prod", "--layer", "network"), "unknown layer 'network'"),
        (("plan", "--env", "local"), "environment 'local' is local"),
        (("destroy", "--env", "nope", "--yes"), "unknown environment 'nope'"),
    ],
)
def test_bad_layer_or_environment_is_a_usage_error(
    project: Path, fake_kubectl: FakeKubectl, args: tuple[str, ...], message: str
) -> None:
    res = run_cli(*args, cwd=project)
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert fake_kubectl.calls() == []
    assert not (project / ".mlserve/deployments").exists()
