from __future__ import annotations

from pathlib import Path

import pytest

from mlserve.project import load_project
from mlserve.render import render_environment, render_files
from tests.render.helpers import terraform_validate

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.terraform
def test_cluster_layer_inits_and_validates_with_the_local_mirror(tmp_path: Path) -> None:
    project = load_project(REPO)
    result = render_environment(project, "staging", tmp_path / "stacks")
    out = terraform_validate(result.layer_dirs["cluster"], tmp_path)
    assert "The configuration is valid" in out


def test_cluster_layer_has_the_gpu_node_group_pieces() -> None:
    project = load_project(REPO)
    files = render_files(project, "staging")["cluster"]
    groups = files["terraform/cluster/node_groups.tf"]
    assert 'ami_type        = "AL2023_x86_64_NVIDIA"' in groups
    assert 'key    = "nvidia.com/gpu"' in groups and 'effect = "NO_SCHEDULE"' in groups
    variables = files["terraform/cluster/variables.tf"]
    assert 'instance_types = ["g5.xlarge"]' in variables
    assert 'version = "~> 5.100"' in files["terraform/cluster/versions.tf"]


def test_existing_cluster_has_no_cluster_layer() -> None:
    project = load_project(REPO)
    assert set(render_files(project, "prod")) == {"platform", "kubernetes"}
    assert render_files(project, "local") == {}
