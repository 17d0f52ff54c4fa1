"""Terraform layers: fmt-clean everywhere, the AWS cluster layer validates with the local
provider mirror, the helm/kubernetes layers parse (python-hcl2) with the right structure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2
import pytest

from mlserve.project import Project
from mlserve.render import render_environment, render_files
from mlserve.tools import run
from tests.render.helpers import terraform_validate
from tests.render.manifests import example, wide

PARSE = hcl2.SerializationOptions(strip_string_quotes=True)


def parse_layer(files: dict[str, str]) -> dict[str, Any]:
    """Merge the parsed .tf files of one layer: block type -> list of blocks."""
    merged: dict[str, list[Any]] = {}
    for path, text in sorted(files.items()):
        if path.endswith(".tf"):
            for key, value in hcl2.loads(text, serialization_options=PARSE).items():
                merged.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    return merged


def resources(parsed: dict[str, Any], rtype: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block in parsed.get("resource", []):
        for t, named in block.items():
            if t == rtype:
                out.update(named)
    return out


def tf_block(parsed: dict[str, Any], key: str) -> Any:
    """The first ``terraform {}`` block that holds ``key`` (its first instance)."""
    return next(b[key][0] for b in parsed["terraform"] if key in b)


def names(parsed: dict[str, Any], block: str) -> set[str]:
    return {n for b in parsed.get(block, []) for n in b}


def render_all(project: Project, out: Path) -> Path:
    for env in project.manifest.environments:
        render_environment(project, env, out)
    return out


@pytest.mark.terraform
def test_every_rendered_stack_is_terraform_fmt_clean(tmp_path: Path) -> None:
    render_all(example(), tmp_path / "example")
    render_all(wide(tmp_path / "wide"), tmp_path / "wide-out")
    for root in (tmp_path / "example", tmp_path / "wide-out"):
        done = run(["terraform", "fmt", "-check", "-recursive", "-diff", "-no-color", str(root)], check=False)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.terraform
def test_wide_cluster_layer_with_backend_validates(tmp_path: Path) -> None:
    result = render_environment(wide(tmp_path / "wide"), "gpu-eks", tmp_path / "out")
    assert "The configuration is valid" in terraform_validate(result.layer_dirs["cluster"], tmp_path / "work")


def test_cluster_layer_structure() -> None:
    parsed = parse_layer(render_files(example(), "staging")["cluster"])
    assert names(parsed, "variable") >= {"region", "aws_endpoint_url", "cluster_name", "gpu_node_groups", "tags"}
    for var in parsed["variable"]:
        for name, body in var.items():
            assert body.get("description"), f"variable {name} has no description"
            assert body.get("type"), f"variable {name} has no type"
    assert names(parsed, "output") >= {
        "cluster_name",
        "cluster_endpoint",
        "vpc_id",
        "node_group_names",
        "gpu_node_group_names",
    }
    gpu = resources(parsed, "aws_eks_node_group")["gpu"]
    assert gpu["ami_type"] == "AL2023_x86_64_NVIDIA"
    taint = {k: v for k, v in gpu["taint"][0].items() if not k.startswith("__")}
    assert taint == {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
    attach = resources(parsed, "aws_iam_role_policy_attachment")
    assert "AmazonEKSWorkerNodePolicy" in attach["node"]["for_each"]
    assert set(resources(parsed, "aws_subnet")) == {"public", "private"}
    groups = next(v["gpu_node_groups"] for v in parsed["variable"] if "gpu_node_groups" in v)["default"]
    assert groups["gpu-a10g"]["instance_types"] == ["g5.xlarge"]


@pytest.mark.parametrize(
    ("gpu_type", "gpus", "instance"),
    [
        ("t4", 1, "g4dn.xlarge"),
        ("a10g", 1, "g5.xlarge"),
        ("l4", 1, "g6.xlarge"),
        ("l40s", 1, "g6e.xlarge"),
        ("a100", 1, "p4d.24xlarge"),
        ("h100", 8, "p5.48xlarge"),
        ("a10g", 4, "g5.12xlarge"),
    ],
)
def test_gpu_type_maps_to_instance_type(gpu_type: str, gpus: int, instance: str) -> None:
    from mlserve.render.context import instance_for

    assert instance_for(gpu_type, gpus)[0] == instance


def test_explicit_instance_types_and_backend_keys_per_layer(tmp_path: Path) -> None:
    layers = render_files(wide(tmp_path / "wide"), "gpu-eks")
    parsed = parse_layer(layers["cluster"])
    groups = next(v["gpu_node_groups"] for v in parsed["variable"] if "gpu_node_groups" in v)["default"]
    assert groups["gpu-l4"]["instance_types"] == ["g6.2xlarge", "g6.4xlarge"]
    assert groups["gpu-h100"]["instance_types"] == ["p5.48xlarge"]
    keys = []
    for layer in ("cluster", "platform"):
        backend = tf_block(parse_layer(layers[layer]), "backend")["s3"]
        assert backend["bucket"] == "wide-tf-state"
        keys.append(backend["key"])
    assert keys == ["teams/ml/gpu-eks/cluster.tfstate", "teams/ml/gpu-eks/platform.tfstate"]


def _releases(parsed: dict[str, Any]) -> dict[str, Any]:
    return resources(parsed, "helm_release")


def test_platform_layer_kserve_existing_cluster(tmp_path: Path) -> None:
    parsed = parse_layer(render_files(wide(tmp_path / "wide"), "onprem")["platform"])
    providers = tf_block(parsed, "required_providers")
    assert providers["helm"]["version"] == "~> 2.17" and providers["kubernetes"]["version"] == "~> 2.36"
    assert "aws" not in providers
    charts = {r["chart"] for r in _releases(parsed).values()}
    assert charts == {
        "base",
        "istiod",
        "keda",
        "cert-manager",
        "kserve-crd",
        "kserve",
        "kube-prometheus-stack",
        "nvidia-device-plugin",
        "dcgm-exporter",
    }
    kube = next(p["kubernetes"] for p in parsed["provider"] if "kubernetes" in p)
    assert kube["config_context"] == "${var.kube_context}"
    ctx = next(v["kube_context"] for v in parsed["variable"] if "kube_context" in v)
    assert ctx["default"] == "onprem-admin"
    assert tf_block(parsed, "backend")["gcs"]["prefix"] == "mlserve/wide/onprem/platform"


def test_platform_layer_seldon_on_eks_with_gpu_operator(tmp_path: Path) -> None:
    parsed = parse_layer(render_files(wide(tmp_path / "wide"), "gpu-eks")["platform"])
    charts = {r["chart"] for r in _releases(parsed).values()}
    assert "seldon-core-operator" in charts and "gpu-operator" in charts
    assert not {"kserve", "nvidia-device-plugin", "dcgm-exporter"} & charts
    providers = tf_block(parsed, "required_providers")
    assert providers["aws"]["version"] == "~> 5.100"
    assert names(parsed, "data") >= {"aws_eks_cluster", "aws_eks_cluster_auth"}


def test_example_platform_layers() -> None:
    staging = parse_layer(render_files(example(), "staging")["platform"])
    assert {r["chart"] for r in _releases(staging).values()} >= {"kserve", "nvidia-device-plugin", "dcgm-exporter"}
    prod = parse_layer(render_files(example(), "prod")["platform"])
    assert "seldon-core-operator" in {r["chart"] for r in _releases(prod).values()}
    outputs = names(prod, "output")
    assert "releases" in outputs


@pytest.mark.parametrize("key", ["secret_key", "access_key", "sas_token", "client_secret", "token"])
def test_credentials_in_backend_config_are_refused(tmp_path: Path, key: str) -> None:
    from mlserve.errors import ManifestError
    from tests.render.manifests import WIDE, project_from

    text = WIDE.replace('key = "teams/ml" }', f'key = "teams/ml", {key} = "hunter2hunter2" }}')
    project = project_from(text, tmp_path / "p")
    with pytest.raises(ManifestError) as info:
        render_files(project, "gpu-eks")
    assert f"environments.gpu-eks.backend.config.{key}" in str(info.value)
    assert "hunter2" not in str(info.value)
