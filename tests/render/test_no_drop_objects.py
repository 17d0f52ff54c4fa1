"""Kubernetes objects for changes without a dropped request, on the kustomize-built objects
(what `kubectl apply -k` sends), validated strictly against the upstream CRDs elsewhere
(tests/render/test_kubernetes.py runs every mode through the schemas)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlserve.render import EndpointTraffic
from tests.render.k8s_schemas import validate_object
from tests.render.manifests import wide
from tests.render.test_kubernetes import TRAFFIC_STATES, by_kind, kustomize

MODES = sorted(TRAFFIC_STATES)
WORKLOADS = ("InferenceService", "LLMInferenceService", "SeldonDeployment")
CASES = [(env, mode) for env in ("staging", "prod") for mode in MODES]


def _containers(doc: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, str]]]:
    """(pod spec holder, container, pod labels) of every model container of a workload."""
    if doc["kind"] == "InferenceService":
        pred = doc["spec"]["predictor"]
        found = pred.get("containers") or [pred["model"]]
        return [(pred, c, pred["labels"]) for c in found]
    if doc["kind"] == "LLMInferenceService":  # vLLM: the pod template and its labels
        template = doc["spec"]["template"]
        return [(template, c, doc["spec"]["labels"]) for c in template["containers"]]
    out = []
    for p in doc["spec"]["predictors"]:
        for cs in p["componentSpecs"]:
            out += [(cs["spec"], c, cs["metadata"]["labels"]) for c in cs["spec"]["containers"]]
    return out


def _pre_stop_seconds(container: dict[str, Any]) -> int:
    hook = container["lifecycle"]["preStop"]
    return int(hook["sleep"]["seconds"]) if "sleep" in hook else int(hook["exec"]["command"][1])


@pytest.mark.parametrize(("env", "mode"), CASES)
def test_pods_drain_before_they_stop_and_are_ready_only_with_their_model(
    example_built: Any, env: str, mode: str
) -> None:
    docs = example_built[(env, mode)]
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    assert workloads
    seen = 0
    for doc in workloads:
        for holder, container, labels in _containers(doc):
            seen += 1
            pause = _pre_stop_seconds(container)
            grace = int(holder["terminationGracePeriodSeconds"])
            assert pause >= 5, doc["metadata"]["name"]
            assert grace >= pause + 30, (doc["metadata"]["name"], grace)  # the pause, then the longest request
            ready = container["readinessProbe"]
            if doc["kind"] == "InferenceService" and "model" in doc["spec"]["predictor"]:
                fmt = doc["spec"]["predictor"]["model"]["modelFormat"]["name"]
                if fmt in ("sklearn", "xgboost"):  # KServe names the MLServer model after the InferenceService
                    assert ready["httpGet"]["path"] == f"/v2/models/{doc['metadata']['name']}/ready"
                if fmt == "huggingface":  # vLLM serves the endpoint's name (--model_name)
                    assert ready["httpGet"]["path"] == f"/v2/models/{labels['mlserve.io/endpoint']}/ready"
            if doc["kind"] == "LLMInferenceService":  # vLLM answers /health once its engine holds the model
                assert ready["httpGet"]["path"] == "/health"
    assert seen >= 2


@pytest.mark.parametrize("mode", MODES)
def test_kserve_rolls_out_new_pods_before_removing_old_ones(example_built: Any, mode: str) -> None:
    docs = example_built[("staging", mode)]
    for isvc in by_kind(docs, "InferenceService").values():
        strategy = isvc["spec"]["predictor"]["deploymentStrategy"]
        assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


@pytest.mark.parametrize(("env", "mode"), CASES)
def test_every_running_version_has_a_disruption_budget_that_selects_exactly_its_pods(
    example_built: Any, env: str, mode: str
) -> None:
    docs = example_built[(env, mode)]
    pods: dict[tuple[str, str], dict[str, str]] = {}
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            for _holder, _c, labels in _containers(doc):
                pods[(labels["mlserve.io/endpoint"], labels["mlserve.io/version"])] = labels
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert len(pdbs) == len(pods)
    for pdb in pdbs.values():
        spec = pdb["spec"]
        assert spec["maxUnavailable"] == 1 and spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        selector = spec["selector"]["matchLabels"]
        matched = [k for k, labels in pods.items() if all(labels.get(a) == b for a, b in selector.items())]
        assert len(matched) == 1, (pdb["metadata"]["name"], matched)
        validate_object(pdb)


@pytest.mark.parametrize(("env", "mode"), CASES)
def test_weights_of_an_endpoint_change_in_one_object_and_never_route_to_nothing(
    example_built: Any, env: str, mode: str
) -> None:
    """One VirtualService per endpoint holds every route (one apply request changes them all,
    summing to 100), and each routed or mirrored subset is a version with a running workload."""
    docs = example_built[(env, mode)]
    services = by_kind(docs, "VirtualService")
    rules = by_kind(docs, "DestinationRule")
    running = {
        (labels["mlserve.io/endpoint"], labels["mlserve.io/version"])
        for d in docs
        if d["kind"] in WORKLOADS
        for _h, _c, labels in _containers(d)
    }
    for name, vs in services.items():
        subsets = {s["name"] for s in rules[name]["spec"]["subsets"]}
        for http in vs["spec"]["http"]:
            weights = [r["weight"] for r in http["route"]]
            assert sum(weights) == 100 and all(w > 0 for w in weights), (name, http)
            targets = [r["destination"]["subset"] for r in http["route"]]
            if "mirror" in http:
                targets.append(http["mirror"]["subset"])
            for subset in targets:
                assert subset in subsets and (name, subset) in running, (name, subset)
    if env == "prod":  # Seldon: the predictors' traffic of an endpoint is one object too
        for sd in by_kind(docs, "SeldonDeployment").values():
            assert sum(int(p["traffic"]) for p in sd["spec"]["predictors"] if not p.get("shadow")) == 100


def test_gpu_and_llm_endpoints_get_a_longer_grace_period(tmp_path: Path) -> None:
    project = wide(tmp_path / "wide")
    traffic = {"vision": EndpointTraffic("r50", "r101", "canary", {"r50": 90, "r101": 10})}
    docs = kustomize(project, "onprem", tmp_path / "out", traffic)  # KServe
    graces = {}
    for doc in docs:
        if doc["kind"] == "InferenceService":
            graces[doc["metadata"]["name"]] = int(doc["spec"]["predictor"]["terminationGracePeriodSeconds"])
            validate_object(doc)
    assert graces and max(graces.values()) >= 120 and min(graces.values()) >= 45, graces
