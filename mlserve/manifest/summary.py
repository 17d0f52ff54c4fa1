"""A plain-data summary of a manifest: what `mlserve validate` shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlserve.manifest.models import Manifest
from mlserve.manifest.units import format_duration
from mlserve.metrics.queries import unresolved_margins


def summarize(manifest: Manifest, root: Path | None = None) -> dict[str, Any]:
    endpoints = []
    warnings: list[str] = []
    for name, ep in manifest.endpoints.items():
        r = ep.rollout
        endpoints.append(
            {
                "name": name,
                "runtime": ep.runtime,
                "baseline": ep.baseline,
                "versions": list(ep.versions),
                "gpu": ep.resources.gpu,
                "gpu_type": ep.resources.gpu_type,
                "cpu": ep.resources.cpu,
                "memory": ep.resources.memory,
                "replicas": [ep.autoscaling.min_replicas, ep.autoscaling.max_replicas],
                "slo": {
                    "p99_latency_seconds": ep.slo.p99_latency,
                    "error_rate": ep.slo.error_rate,
                },
                "rollout": {
                    "strategy": r.strategy,
                    "steps": r.steps,
                    "interval": format_duration(r.interval),
                    "max_duration": format_duration(r.max_duration),
                    "alpha": r.alpha,
                    "min_requests": r.min_requests,
                    "on_inconclusive": r.on_inconclusive,
                    "metrics": [
                        {
                            "name": m.name,
                            "kind": m.kind,
                            "quantile": m.quantile,
                            "direction": m.better,
                            "margin": str(m.margin),
                            "critical": m.critical,
                        }
                        for m in r.metrics
                    ],
                },
            }
        )
    environments = []
    for name, env in manifest.environments.items():
        deployed = list(manifest.endpoints_in(name))
        environments.append(
            {
                "name": name,
                "target": env.target,
                "serving": env.serving,
                "cluster": env.cluster,
                "namespace": env.namespace,
                "region": env.region,
                "endpoints": deployed,
            }
        )
        for ep_name in deployed:
            for i, message in unresolved_margins(env.target, env.serving, manifest.endpoints[ep_name].rollout.metrics):
                warnings.append(f"endpoints.{ep_name}.rollout.metrics[{i}].margin: environment {name!r}: {message}")
        if env.target == "local" and root is not None:
            for ep_name in deployed:
                ep = manifest.endpoints[ep_name]
                for v_name, v in ep.versions.items():
                    if "://" not in v.model_uri and not (root / v.model_uri).exists():
                        warnings.append(
                            f"endpoints.{ep_name}.versions.{v_name}.model_uri: {v.model_uri} does not exist yet "
                            f"(needed by environment {name!r})"
                        )
    return {
        "project": manifest.project.name,
        "endpoints": endpoints,
        "environments": environments,
        "gpus": sum(e["gpu"] for e in endpoints),
        "warnings": warnings,
    }
