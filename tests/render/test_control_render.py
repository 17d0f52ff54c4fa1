"""A rollout's control arm on Kubernetes: one more InferenceService (staging, KServe) or
Seldon predictor (prod) of the baseline version, with the candidate's resources, a three-way
split, every object CRD-valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlserve.render import EndpointTraffic
from tests.render.k8s_schemas import validate_object
from tests.render.manifests import example
from tests.render.test_kubernetes import by_kind, kustomize

CONTROLLED = {"fraud": EndpointTraffic("v1", "v2", "canary", {"v1": 80, "control": 10, "v2": 10}, control="control")}


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_control_is_one_more_workload_of_the_baseline_with_a_three_way_split(tmp_path: Path, env: str) -> None:
    docs = kustomize(example(), env, tmp_path, CONTROLLED)
    assert {validate_object(d) for d in docs} == {"crd", "core"}
    subsets = by_kind(docs, "DestinationRule")["fraud"]["spec"]["subsets"]
    assert [s["name"] for s in subsets] == ["v1", "control", "v2"]
    assert subsets[1]["labels"]["mlserve.io/version"] == "control"
    route = by_kind(docs, "VirtualService")["fraud"]["spec"]["http"][-1]["route"]
    assert sorted((r["destination"]["subset"], r["weight"]) for r in route) == [("control", 10), ("v1", 80), ("v2", 10)]
    if env == "staging":
        isvcs = by_kind(docs, "InferenceService")
        assert {"fraud-v1", "fraud-control", "fraud-v2"} <= set(isvcs)
        control, base, cand = isvcs["fraud-control"], isvcs["fraud-v1"], isvcs["fraud-v2"]
        # the baseline's model, served with the candidate's size
        assert control["spec"]["predictor"]["model"]["storageUri"] == base["spec"]["predictor"]["model"]["storageUri"]
        for key in ("minReplicas", "maxReplicas"):
            assert control["spec"]["predictor"].get(key) == cand["spec"]["predictor"].get(key)
    else:
        preds = by_kind(docs, "SeldonDeployment")["fraud"]["spec"]["predictors"]
        assert sorted((p["name"], p["traffic"]) for p in preds) == [("control", 10), ("v1", 80), ("v2", 10)]
        uri = {p["name"]: p["graph"].get("modelUri") for p in preds}
        assert uri["control"] == uri["v1"]
