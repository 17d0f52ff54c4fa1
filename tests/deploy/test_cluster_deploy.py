"""The proof: the example project's AWS cluster layer deployed, re-deployed, re-planned and
destroyed through `mlserve`, against AWS APIs served by moto on loopback, checked with boto3.

The tests of this module run in order on one project and one moto server (a Terraform
apply of 24 resources takes half a minute here; doing it once keeps the suite short).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.deploy.conftest import Moto, aws_env_for

pytestmark = [pytest.mark.terraform, pytest.mark.moto]

CLUSTER = "acme-ml-staging"
GPU_GROUP = "gpu-a10g"
VPC_CIDR = "10.40.0.0/16"


@pytest.fixture(scope="module")
def proj(scaffolded: Path, moto: Moto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    dest = tmp_path_factory.mktemp("cluster") / "acme-ml"
    shutil.copytree(scaffolded, dest)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in aws_env_for(moto.url).items():
            mp.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "TF_CLI_CONFIG_FILE", "TF_WORKSPACE"):
            mp.delenv(key, raising=False)
        yield dest


def _state(proj: Path) -> dict:
    path = proj / ".mlserve/deploy/staging/terraform/cluster/terraform.tfstate.d/staging/terraform.tfstate"
    return json.loads(path.read_text())


def _record(proj: Path) -> dict:
    return json.loads((proj / ".mlserve/deployments/staging.json").read_text())


def _our_vpcs(moto: Moto) -> list[dict]:
    vpcs = moto.client("ec2").describe_vpcs()["Vpcs"]
    return [v for v in vpcs if v["CidrBlock"] == VPC_CIDR]


def test_deploy_creates_vpc_eks_cluster_and_gpu_node_group(proj: Path, moto: Moto) -> None:
    res = run_cli("deploy", "--env", "staging", "--layer", "cluster", "--yes", "--json", cwd=proj)
    assert res.exit_code == 0, res.output
    result = res.json["result"]
    assert result["changed"] is True
    (layer,) = result["layers"]
    assert (layer["layer"], layer["tool"], layer["action"]) == ("cluster", "terraform", "applied")
    assert layer["added"] == layer["changes"]["add"] > 0 and layer["destroyed"] == 0

    eks = moto.client("eks")
    cluster = eks.describe_cluster(name=CLUSTER)["cluster"]
    assert cluster["status"] == "ACTIVE" and cluster["version"] == "1.31"
    assert set(eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"]) == {"cpu", GPU_GROUP}
    gpu = eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName=GPU_GROUP)["nodegroup"]
    assert gpu["amiType"] == "AL2023_x86_64_NVIDIA"
    assert gpu["instanceTypes"] == ["g5.xlarge"]  # a10g -> g5
    assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"} in gpu["taints"]
    assert gpu["labels"]["mlserve.io/gpu-type"] == "a10g"
    (vpc,) = _our_vpcs(moto)
    assert layer["outputs"]["vpc_id"] == vpc["VpcId"]
    assert layer["outputs"]["cluster_name"] == CLUSTER

    record = _record(proj)["layers"]["cluster"]
    assert record["stack_hash"].startswith("sha256:") and record["manifest_hash"].startswith("sha256:")
    assert record["applied_at"] and record["workspace"] == "staging"
    # Terraform worked in .mlserve/deploy, never in the committed stacks/ folder.
    assert not list((proj / "stacks").rglob("*.tfstate")) if (proj / "stacks").exists() else True


def test_second_deploy_changes_nothing_and_says_so(proj: Path, moto: Moto) -> None:
    before_state = _state(proj)
    before_record = _record(proj)
    created = moto.client("eks").describe_nodegroup(clusterName=CLUSTER, nodegroupName=GPU_GROUP)["nodegroup"]

    res = run_cli("deploy", "--env", "staging", "--layer", "cluster", "--yes", cwd=proj)
    assert res.exit_code == 0, res.output
    assert "cluster: no changes, nothing applied" in res.stdout
    assert "up to date staging: nothing changed, nothing applied" in res.stdout

    after = _state(proj)
    assert after["serial"] == before_state["serial"]  # no apply wrote the state
    assert _record(proj) == before_record
    again = moto.client("eks").describe_nodegroup(clusterName=CLUSTER, nodegroupName=GPU_GROUP)["nodegroup"]
    assert again["nodegroupArn"] == created["nodegroupArn"] and again["createdAt"] == created["createdAt"]

    status = run_cli("status", "--env", "staging", "--json", cwd=proj)
    assert status.exit_code == 0, status.output
    layers = {entry["layer"]: entry for entry in status.json["result"]["layers"]}
    assert layers["cluster"]["deployed"] and layers["cluster"]["drift"] == []
    assert layers["cluster"]["outputs"]["cluster_name"] == CLUSTER


def test_plan_after_instance_type_change_reports_exactly_that(proj: Path) -> None:
    manifest = proj / "mlserve.toml"
    original = manifest.read_text()
    anchor = '[endpoints.summarize.resources]\ncpu = "8"\n'
    assert anchor in original
    manifest.write_text(original.replace(anchor, anchor + 'instance_types = ["g5.2xlarge"]\n'))
    try:
        res = run_cli("plan", "--env", "staging", "--layer", "cluster", "--json", cwd=proj)
        assert res.exit_code == 0, res.output
        (layer,) = res.json["result"]["layers"]
        changes = layer["changes"]
        assert changes["by_type"] == {"aws_eks_node_group": {"add": 0, "change": 0, "destroy": 0, "replace": 1}}
        assert changes["resources"] == [
            {
                "address": 'aws_eks_node_group.gpu["gpu-a10g"]',
                "type": "aws_eks_node_group",
                "action": "replace",
                "replace_paths": ["instance_types"],
            }
        ]
        assert changes["output_changes"] == []

        # The human view of the same result (rendering only; one terraform plan is enough).
        from rich.console import Console

        from mlserve.cli.commands.plan import show_result

        con = Console(record=True, width=200, no_color=True)
        show_result(con, res.json["result"])
        text = con.export_text()
        assert "cluster (terraform): 1 to replace" in text
        assert 'replace  aws_eks_node_group.gpu["gpu-a10g"] (forced by instance_types)' in text

        drift = run_cli("status", "--env", "staging", "--json", cwd=proj)
        cluster = next(x for x in drift.json["result"]["layers"] if x["layer"] == "cluster")
        assert cluster["drift"] == [
            "mlserve.toml changed since the last deploy",
            "the rendered stack differs from what was applied",
        ]
    finally:
        manifest.write_text(original)


def test_destroy_refuses_without_yes_then_removes_everything(proj: Path, moto: Moto) -> None:
    refused = run_cli("destroy", "--env", "staging", "--layer", "cluster", cwd=proj)
    assert refused.exit_code == 2
    assert "destroy needs --yes when not run from a terminal" in refused.stderr
    assert moto.client("eks").list_clusters()["clusters"] == [CLUSTER]

    res = run_cli("destroy", "--env", "staging", "--layer", "cluster", "--yes", "--json", cwd=proj)
    assert res.exit_code == 0, res.output
    (layer,) = res.json["result"]["layers"]
    assert layer["action"] == "destroyed" and layer["destroyed"] > 0

    assert moto.client("eks").list_clusters()["clusters"] == []
    assert _our_vpcs(moto) == []
    roles = [r["RoleName"] for r in moto.client("iam").list_roles()["Roles"]]
    assert not [r for r in roles if r.startswith(CLUSTER)]
    assert _state(proj)["resources"] == []
    assert not (proj / ".mlserve/deployments/staging.json").exists()

    again = run_cli("destroy", "--env", "staging", "--layer", "cluster", "--yes", cwd=proj)
    assert again.exit_code == 0 and "nothing deployed" in again.stdout
