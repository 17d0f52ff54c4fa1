"""Manifests for the render tests: the repository's example and a wider one that
exercises every runtime, both serving backends on both cluster kinds, several GPU types,
the GPU operator, JWT auth and a remote state backend."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlserve.project import Project, load_project

REPO = Path(__file__).resolve().parents[2]

WIDE = """
[project]
name = "wide"
description = "Every runtime and backend"
owner = "platform@example.com"

[environments.dev]
target = "local"
endpoints = ["tabular"]

[environments.gpu-eks]
target = "kubernetes"
serving = "seldon"
namespace = "ml-gpu"
cluster = "aws-eks"
region = "us-east-1"
model_store = "s3://wide-models"
gpu_operator = true
kubernetes_version = "1.30"

[environments.gpu-eks.backend]
type = "s3"
config = { bucket = "wide-tf-state", region = "us-east-1", dynamodb_table = "tf-locks", key = "teams/ml" }

[environments.onprem]
target = "kubernetes"
serving = "kserve"
namespace = "ml-onprem"
cluster = "existing"
kube_context = "onprem-admin"
model_store = "gs://wide-models"

[environments.onprem.backend]
type = "gcs"
config = { bucket = "wide-state" }

[endpoints.tabular]
runtime = "xgboost"
baseline = "a"
[endpoints.tabular.versions.a]
model_uri = "models/tabular/a"
env = { MLSERVER_PARALLEL_WORKERS = "2" }
[endpoints.tabular.versions.b]
model_uri = "s3://elsewhere/tabular/b"
[endpoints.tabular.autoscaling]
metric = "cpu"
target = 70
[endpoints.tabular.auth]
allowed_namespaces = ["web", "batch"]
allowed_principals = ["cluster.local/ns/web/sa/frontend"]
jwt_issuer = "https://issuer.example.com"
jwks_uri = "https://issuer.example.com/.well-known/jwks.json"
[endpoints.tabular.rollout]
strategy = "ab"
sticky_header = "x-customer"

[endpoints.vision]
runtime = "triton"
baseline = "r50"
[endpoints.vision.versions.r50]
model_uri = "s3://wide-models/vision/r50"
[endpoints.vision.versions.r101]
model_uri = "s3://wide-models/vision/r101"
args = ["--log-verbose=1"]
[endpoints.vision.resources]
gpu = 1
gpu_type = "t4"

[endpoints.llm]
runtime = "vllm"
baseline = "big"
[endpoints.llm.versions.big]
model_uri = "hf://org/big-model"
args = ["--tensor-parallel-size", "8"]
[endpoints.llm.resources]
cpu = "32"
memory = "256Gi"
gpu = 8
gpu_type = "h100"
[endpoints.llm.autoscaling]
min_replicas = 0
max_replicas = 2
metric = "rps"
target = 5

[endpoints.embed]
runtime = "torchserve"
baseline = "v1"
[endpoints.embed.versions.v1]
model_uri = "gs://wide-models/embed/v1"
[endpoints.embed.resources]
gpu = 1
gpu_type = "l4"
instance_types = ["g6.2xlarge", "g6.4xlarge"]

[endpoints.rules]
runtime = "seldon"
baseline = "v1"
[endpoints.rules.versions.v1]
model_uri = "s3://wide-models/rules/v1"
model_class = "rules.Model"

[endpoints.bespoke]
runtime = "custom"
baseline = "v1"
[endpoints.bespoke.versions.v1]
model_uri = "s3://wide-models/bespoke/v1"
image = "registry.example.com/bespoke:1.2.3"
args = ["serve", "--port", "8080"]
"""


def example() -> Project:
    return load_project(REPO)


def project_from(text: str, root: Path) -> Project:
    """A project holding ``text`` as its manifest, beside the example's reference profiles
    (an endpoint with ``[monitoring]`` renders its profile into a ConfigMap)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mlserve.toml").write_text(text, encoding="utf-8")
    if (REPO / "profiles").is_dir():
        shutil.copytree(REPO / "profiles", root / "profiles", dirs_exist_ok=True)
    return load_project(root)


def wide(root: Path) -> Project:
    return project_from(WIDE, root)
