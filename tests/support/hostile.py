"""A manifest with one hostile string in every free-text field that a kubernetes
environment renders: the render tests check each value's place, the reliability suite
checks that nothing it renders changes structure."""

from __future__ import annotations

from typing import Any


def hostile_manifest(s: str, *, everything: bool = False) -> dict[str, Any]:
    """``everything`` adds the fields that only some objects render: a second version, the
    on-prem environment's state backend, rollout metrics (their PromQL) and a GPU endpoint."""
    doc: dict[str, Any] = {
        "project": {"name": "hostile", "description": s, "owner": s},
        "environments": {
            "eks": {
                "target": "kubernetes",
                "serving": "kserve",
                "namespace": "ns-eks",
                "cluster": "aws-eks",
                "region": "eu-west-1",
                "description": s,
                "model_store": "s3://bucket",
                "backend": {"type": "s3", "config": {"bucket": s, "key": s, "region": "eu-west-1"}},
            },
            "onprem": {
                "target": "kubernetes",
                "serving": "seldon",
                "namespace": "ns-onprem",
                "cluster": "existing",
                "kube_context": s,
                "description": s,
                "model_store": "s3://bucket",
            },
        },
        "endpoints": {
            "e": {
                "runtime": "sklearn",
                "baseline": "v1",
                "description": s,
                "versions": {
                    "v1": {"model_uri": "s3://bucket/m", "description": s, "args": [s, "--x"], "env": {"HOSTILE": s}}
                },
                "auth": {"allowed_principals": [s]},
            }
        },
    }
    if not everything:
        return doc
    doc["environments"]["onprem"]["backend"] = {"type": "gcs", "config": {"bucket": s, "prefix": s}}
    e = doc["endpoints"]["e"]
    e["versions"]["v2"] = {"model_uri": "s3://bucket/m2", "description": s, "args": ["--y", s], "env": {"B": s}}
    e["rollout"] = {
        "metrics": [
            {"name": "error_rate", "kind": "error_rate", "description": s},
            {"name": "conv", "kind": "ratio", "direction": "higher", "description": s, "numerator": s,
             "denominator": s},
        ]
    }  # fmt: skip
    doc["endpoints"]["g"] = {
        "runtime": "vllm",
        "baseline": "a",
        "description": s,
        "versions": {"a": {"model_uri": "hf://org/model", "args": ["--max-model-len", s]}},
        "resources": {"gpu": 1, "gpu_type": "a10g"},
    }
    return doc
