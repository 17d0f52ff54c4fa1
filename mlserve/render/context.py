"""From the manifest (and a traffic state) to the plain data the templates see.

Every decision that is not layout (instance types for a GPU, image for a runtime, node
group sizes) is made here in Python, where it can be tested; templates only arrange.
Everything is sorted so that the same inputs give the same bytes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlserve.errors import ManifestError
from mlserve.manifest.models import Endpoint, Environment, Manifest
from mlserve.render.traffic import EndpointTraffic

# GPU type -> EC2 instance types by GPUs per instance, smallest first.
GPU_INSTANCES: dict[str, tuple[tuple[str, int], ...]] = {
    "t4": (("g4dn.xlarge", 1), ("g4dn.12xlarge", 4), ("g4dn.metal", 8)),
    "a10g": (("g5.xlarge", 1), ("g5.12xlarge", 4), ("g5.48xlarge", 8)),
    "l4": (("g6.xlarge", 1), ("g6.12xlarge", 4), ("g6.48xlarge", 8)),
    "l40s": (("g6e.xlarge", 1), ("g6e.12xlarge", 4), ("g6e.48xlarge", 8)),
    "a100": (("p4d.24xlarge", 8),),
    "h100": (("p5.48xlarge", 8),),
}
DEFAULT_GPU_TYPE = "a10g"
CPU_INSTANCE_TYPES = ("m6i.xlarge",)
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TYPE_LABEL = "mlserve.io/gpu-type"
GPU_LABEL = "mlserve.io/gpu"


def instance_for(gpu_type: str, gpus: int) -> tuple[str, int]:
    """The smallest instance of a GPU family that fits one replica."""
    options = GPU_INSTANCES[gpu_type]
    for name, count in options:
        if count >= gpus:
            return name, count
    return options[-1]


_TAG_UNSAFE = re.compile(r"[^\w .:/=+\-@]", re.UNICODE)


def aws_tag_value(text: str) -> str:
    """AWS accepts only letters, digits, spaces and ``_.:/=+-@`` in tag values (256 max)."""
    return _TAG_UNSAFE.sub("_", text.replace("\n", " "))[:256]


def cluster_name(manifest: Manifest, env_name: str) -> str:
    env = manifest.environments[env_name]
    return env.cluster_name or f"{manifest.project.name}-{env_name}"[:63].rstrip("-")


def availability_zones(region: str) -> list[str]:
    # EKS wants subnets in at least two zones; a and b exist in every commercial region.
    return [f"{region}a", f"{region}b"]


@dataclass(frozen=True)
class NodeGroup:
    name: str
    gpu_type: str | None
    instance_types: tuple[str, ...]
    min_size: int
    max_size: int
    desired_size: int
    gpus_per_node: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.name.replace("-", "_"),
            "gpu_type": self.gpu_type,
            "instance_types": list(self.instance_types),
            "min_size": self.min_size,
            "max_size": self.max_size,
            "desired_size": self.desired_size,
        }


def gpu_node_groups(endpoints: Mapping[str, Endpoint]) -> list[NodeGroup]:
    """One managed node group per GPU type used by the environment's endpoints."""
    groups: dict[str, dict[str, Any]] = {}
    for _name, ep in sorted(endpoints.items()):
        res = ep.resources
        if res.gpu <= 0:
            continue
        gpu_type = res.gpu_type or DEFAULT_GPU_TYPE
        g = groups.setdefault(gpu_type, {"types": set(), "min_gpus": 0, "max_gpus": 0, "per_node": 8})
        if res.instance_types:
            g["types"].update(res.instance_types)
            per_node = res.gpu
        else:
            instance, per_node = instance_for(gpu_type, res.gpu)
            g["types"].add(instance)
        g["per_node"] = min(g["per_node"], max(per_node, res.gpu))
        # Every version of a rollout runs at once (baseline + candidate).
        g["min_gpus"] += res.gpu * ep.autoscaling.min_replicas
        g["max_gpus"] += res.gpu * ep.autoscaling.max_replicas * 2
    out = []
    for gpu_type, g in sorted(groups.items()):
        per_node = max(1, g["per_node"])
        min_size = math.ceil(g["min_gpus"] / per_node)
        max_size = max(1, math.ceil(g["max_gpus"] / per_node))
        out.append(
            NodeGroup(
                name=f"gpu-{gpu_type}",
                gpu_type=gpu_type,
                instance_types=tuple(sorted(g["types"])),
                min_size=min_size,
                max_size=max_size,
                desired_size=min_size,
                gpus_per_node=per_node,
            )
        )
    return out


_SECRET_KEY = re.compile(r"(secret|token|password|passwd|access_key|sas|private_key|client_certificate)", re.I)


def backend_context(manifest: Manifest, env_name: str, layer: str) -> dict[str, Any] | None:
    """The remote state backend of one layer: the manifest's config, with a state key
    (or prefix/path) per environment and layer so that layers never share a state.

    Backend blocks cannot read variables, so a credential here would sit in plain text in
    every rendered stack and in git: refused, with the way to pass it instead.
    """
    env = manifest.environments[env_name]
    if env.backend is None:
        return None
    secrets = sorted(k for k in env.backend.config if _SECRET_KEY.search(k))
    if secrets:
        raise ManifestError(
            [
                f"mlserve.toml: environments.{env_name}.backend.config.{secrets[0]}: looks like a credential; "
                "rendered stacks are committed, so it would be stored in plain text"
            ],
            hint="leave credentials out of mlserve.toml: the backend reads them from its environment "
            "(AWS_SECRET_ACCESS_KEY, ARM_ACCESS_KEY, GOOGLE_CREDENTIALS, ...) or from terraform init -backend-config",
        )
    config = dict(env.backend.config)
    key_name = {"s3": "key", "azurerm": "key", "gcs": "prefix", "local": "path"}[env.backend.type]
    base = config.get(key_name, "").strip("/") or f"mlserve/{manifest.project.name}"
    suffix = f"{env_name}/{layer}" if env.backend.type == "gcs" else f"{env_name}/{layer}.tfstate"
    config[key_name] = f"{base}/{suffix}"
    return {"type": env.backend.type, "config": dict(sorted(config.items()))}


CHART_VERSIONS = {
    "cert_manager": "v1.16.2",
    "dcgm_exporter": "3.6.1",
    "gpu_operator": "v24.9.1",
    "istio": "1.24.2",
    "keda": "2.16.1",
    "kserve": "v0.15.2",
    "kube_prometheus_stack": "67.9.0",
    "nvidia_device_plugin": "0.17.0",
    "seldon_core_operator": "1.17.1",
}


def platform_releases(env: Environment, has_gpu: bool, keda: bool) -> list[dict[str, str]]:
    """Helm releases of the platform layer: (release name, terraform resource key)."""
    names = ["istio-base", "istiod"] + (["keda"] if keda else [])
    names += ["cert-manager", "kserve-crd", "kserve"] if env.serving == "kserve" else ["seldon-core"]
    names.append("kube-prometheus-stack")
    if has_gpu:
        names += ["gpu-operator"] if env.gpu_operator else ["nvidia-device-plugin", "dcgm-exporter"]
    keys = {"seldon-core": "seldon_core_operator"}
    return [{"name": n, "key": keys.get(n, n.replace("-", "_"))} for n in sorted(names)]


def environment_context(manifest: Manifest, env_name: str, traffic: Mapping[str, EndpointTraffic]) -> dict[str, Any]:
    env: Environment = manifest.environments[env_name]
    endpoints = manifest.endpoints_in(env_name)
    project = manifest.project
    tags = {"mlserve.io/project": project.name, "mlserve.io/environment": env_name, "managed-by": "mlserve"}
    if project.owner:
        tags["owner"] = aws_tag_value(project.owner)
    has_gpu = any(ep.resources.gpu > 0 for ep in endpoints.values())
    keda = any(ep.autoscaling.metric in ("concurrency", "rps") for ep in endpoints.values())
    releases = platform_releases(env, has_gpu, keda)
    charts = {k: v for k, v in CHART_VERSIONS.items() if _chart_used(k, env, has_gpu, keda)}
    return {
        "charts": charts,
        "charts_width": max(len(k) for k in charts),
        "releases": releases,
        "releases_width": max(len(r["name"]) for r in releases) + 2,
        "project": {"name": project.name, "description": project.description, "owner": project.owner},
        "env": {
            "name": env_name,
            "description": env.description,
            "serving": env.serving,
            "namespace": env.namespace,
            "cluster": env.cluster,
            "cluster_name": cluster_name(manifest, env_name),
            "kubernetes_version": env.kubernetes_version,
            "region": env.region,
            "kube_context": env.kube_context,
            "prometheus_url": env.prometheus_url,
            "model_store": env.model_store,
            "gpu_operator": env.gpu_operator,
        },
        "tags": dict(sorted(tags.items())),
        "availability_zones": availability_zones(env.region) if env.region else [],
        "gpu_node_groups": [g.as_dict() for g in gpu_node_groups(endpoints)],
        "cpu_instance_types": list(CPU_INSTANCE_TYPES),
        "has_gpu": has_gpu,
        "keda": keda,
        "gpu_taint_key": GPU_TAINT_KEY,
        "gpu_type_label": GPU_TYPE_LABEL,
        "gpu_label": GPU_LABEL,
    }


def _chart_used(key: str, env: Environment, has_gpu: bool, keda: bool) -> bool:
    if key == "keda":
        return keda
    if key in ("cert_manager", "kserve"):
        return env.serving == "kserve"
    if key == "seldon_core_operator":
        return env.serving == "seldon"
    if key == "gpu_operator":
        return has_gpu and env.gpu_operator
    if key in ("nvidia_device_plugin", "dcgm_exporter"):
        return has_gpu and not env.gpu_operator
    return True
