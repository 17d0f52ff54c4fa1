"""Every rendered Kubernetes object, in every traffic mode, validates strictly; the
kubernetes folders build with kubectl kustomize; a weight change touches traffic.yaml only."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlserve.errors import ManifestError, UsageError
from mlserve.project import Project
from mlserve.render import EndpointTraffic, render_environment, render_files
from mlserve.tools import run
from tests.render.k8s_schemas import InvalidObject, validate_object
from tests.render.manifests import REPO, example, project_from, wide


def kustomize(project: Project, env: str, out: Path, traffic: Any = None) -> list[dict[str, Any]]:
    result = render_environment(project, env, out, traffic=traffic)
    built = run(["kubectl", "kustomize", str(result.layer_dirs["kubernetes"])], timeout=120).stdout
    return [d for d in yaml.safe_load_all(built) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


TRAFFIC_STATES: dict[str, dict[str, Any]] = {
    "stable": {},
    "canary": {"fraud": EndpointTraffic("v1", "v2", "canary", {"v1": 90, "v2": 10})},
    "shadow": {"fraud": EndpointTraffic("v1", "v2", "shadow", {"v1": 100}, shadow=20)},
    "ab": {"fraud": {"baseline": "v1", "candidate": "v2", "mode": "ab", "weights": {"v1": 50, "v2": 50}}},
    "llm-canary": {
        "summarize": EndpointTraffic("llama-8b", "llama-8b-q", "canary", {"llama-8b": 75, "llama-8b-q": 25})
    },
}


@pytest.mark.parametrize("env", ["staging", "prod"])
@pytest.mark.parametrize("mode", sorted(TRAFFIC_STATES))
def test_every_object_of_the_example_validates_in_every_traffic_mode(example_built: Any, env: str, mode: str) -> None:
    docs = example_built[(env, mode)]
    checked = {validate_object(d) for d in docs}
    assert checked == {"crd", "core"}
    kinds = {d["kind"] for d in docs}
    workload = "InferenceService" if env == "staging" else "SeldonDeployment"
    assert {workload, "VirtualService", "DestinationRule", "AuthorizationPolicy", "PeerAuthentication"} <= kinds
    assert {"Namespace", "Service", "NetworkPolicy", "PodDisruptionBudget"} <= kinds


@pytest.mark.parametrize("env", ["gpu-eks", "onprem"])
def test_every_object_of_the_wide_manifest_validates(tmp_path: Path, env: str) -> None:
    project = wide(tmp_path / "wide")
    traffic = {
        "tabular": EndpointTraffic("a", "b", "ab", {"a": 50, "b": 50}),
        "vision": EndpointTraffic("r50", "r101", "shadow", {"r50": 100}, shadow=100),
    }
    docs = kustomize(project, env, tmp_path / "out", traffic)
    for d in docs:
        validate_object(d)
    assert len(by_kind(docs, "RequestAuthentication")) == 1


def test_the_validator_is_strict_about_unknown_fields(tmp_path: Path) -> None:
    docs = kustomize(example(), "prod", tmp_path)
    sdep = copy.deepcopy(by_kind(docs, "SeldonDeployment")["fraud"])
    sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["imagePullPolicee"] = "Always"
    with pytest.raises(InvalidObject, match="imagePullPolicee"):
        validate_object(sdep)
    vs = copy.deepcopy(by_kind(docs, "VirtualService")["fraud"])
    vs["spec"]["http"][0]["weights"] = 3
    with pytest.raises(InvalidObject, match="weights"):
        validate_object(vs)
    svc = copy.deepcopy(by_kind(docs, "Service")["fraud"])
    svc["spec"]["selectr"] = {}
    with pytest.raises(InvalidObject):
        validate_object(svc)
    staging = kustomize(example(), "staging", tmp_path / "s")
    isvc = copy.deepcopy(by_kind(staging, "InferenceService")["fraud-v1"])
    isvc["spec"]["predictor"]["model"]["storageURI"] = "s3://x"
    with pytest.raises(InvalidObject, match="storageURI"):
        validate_object(isvc)


def test_canary_weights_and_shadow_mirror_and_ab_header_match(tmp_path: Path) -> None:
    canary = by_kind(kustomize(example(), "staging", tmp_path / "c", TRAFFIC_STATES["canary"]), "VirtualService")
    route = canary["fraud"]["spec"]["http"][0]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in route] == [("v1", 90), ("v2", 10)]
    assert canary["fraud"]["spec"]["hosts"] == ["fraud.ml-staging.svc.cluster.local"]

    shadow = by_kind(kustomize(example(), "staging", tmp_path / "s", TRAFFIC_STATES["shadow"]), "VirtualService")
    http = shadow["fraud"]["spec"]["http"][0]
    assert [r["destination"]["subset"] for r in http["route"]] == ["v1"]
    assert http["mirror"]["subset"] == "v2" and http["mirrorPercentage"] == {"value": 20}

    ab_docs = kustomize(example(), "prod", tmp_path / "a", TRAFFIC_STATES["ab"])
    http = by_kind(ab_docs, "VirtualService")["fraud"]["spec"]["http"]
    pinned = {h["name"]: h for h in http if "match" in h}
    assert pinned["pinned-v2"]["match"][0]["headers"]["x-mlserve-variant"] == {"exact": "v2"}
    assert http[-1]["route"][1]["weight"] == 50
    subsets = by_kind(ab_docs, "DestinationRule")["fraud"]["spec"]["subsets"]
    assert [s["name"] for s in subsets] == ["v1", "v2"]
    sdep = by_kind(ab_docs, "SeldonDeployment")["fraud"]
    assert [(p["name"], p["traffic"]) for p in sdep["spec"]["predictors"]] == [("v1", 50), ("v2", 50)]


def test_seldon_shadow_predictor(tmp_path: Path) -> None:
    docs = kustomize(example(), "prod", tmp_path, TRAFFIC_STATES["shadow"])
    preds = by_kind(docs, "SeldonDeployment")["fraud"]["spec"]["predictors"]
    assert preds[0]["traffic"] == 100 and not preds[0].get("shadow")
    assert preds[1]["shadow"] is True and preds[1]["name"] == "v2"


def test_weight_25_differs_from_weight_10_only_in_the_traffic_patch() -> None:
    project = example()
    for env in ("staging", "prod"):
        at10 = render_files(project, env, {"fraud": EndpointTraffic("v1", "v2", "canary", {"v1": 90, "v2": 10})})
        at25 = render_files(project, env, {"fraud": EndpointTraffic("v1", "v2", "canary", {"v1": 75, "v2": 25})})
        flat10 = {p: t for files in at10.values() for p, t in files.items()}
        flat25 = {p: t for files in at25.values() for p, t in files.items()}
        assert set(flat10) == set(flat25)
        changed = sorted(p for p in flat10 if flat10[p] != flat25[p])
        assert changed == ["kubernetes/traffic.yaml"], changed


def test_gpu_endpoint_requests_gpus_selects_gpu_nodes_and_tolerates_the_taint(tmp_path: Path) -> None:
    docs = kustomize(example(), "staging", tmp_path)
    llm = by_kind(docs, "LLMInferenceService")["summarize-llama-8b"]["spec"]
    container = llm["template"]["containers"][0]
    res = container["resources"]
    assert res["requests"]["nvidia.com/gpu"] == "1" and res["limits"]["nvidia.com/gpu"] == "1"
    assert llm["template"]["nodeSelector"] == {"mlserve.io/gpu-type": "a10g"}
    assert llm["template"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert container["image"].startswith("docker.io/vllm/vllm-openai:")
    # the first served name labels vLLM's metrics per version; clients send the endpoint's name
    assert container["args"][:5] == [
        "--model=/mnt/models",
        "--port=8080",
        "--served-model-name",
        "summarize-llama-8b",
        "summarize",
    ]
    assert llm["model"] == {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "name": "summarize"}
    assert llm["scaling"]["minReplicas"] == 1 and llm["scaling"]["maxReplicas"] == 4
    # autoscaling on an LLM signal: KEDA on vLLM's queue, not CPU or Istio's request rate
    trigger = llm["scaling"]["keda"]["triggers"][0]
    assert trigger["metadata"]["threshold"] == "4"
    assert (
        trigger["metadata"]["query"]
        == 'sum(vllm:num_requests_waiting{namespace="ml-staging",model_name="summarize-llama-8b"})'
    )
    assert llm["labels"]["service.istio.io/canonical-revision"] == "llama-8b"
    assert "summarize-llama-8b" not in by_kind(docs, "InferenceService")
    cpu = by_kind(docs, "InferenceService")["fraud-v1"]["spec"]["predictor"]
    assert "nodeSelector" not in cpu and "nvidia.com/gpu" not in cpu["model"]["resources"]["limits"]


def test_every_container_is_hardened_probed_and_bounded(tmp_path: Path) -> None:
    project = wide(tmp_path / "wide")
    for env in ("gpu-eks", "onprem"):
        docs = kustomize(project, env, tmp_path / env)
        containers: list[dict[str, Any]] = []
        for d in docs:
            if d["kind"] == "InferenceService":
                p = d["spec"]["predictor"]
                containers += p.get("containers", []) + ([p["model"]] if "model" in p else [])
                assert p["securityContext"]["runAsNonRoot"] is True
            if d["kind"] == "LLMInferenceService":
                containers += d["spec"]["template"]["containers"]
                assert d["spec"]["template"]["securityContext"]["runAsNonRoot"] is True
            if d["kind"] == "SeldonDeployment":
                for pred in d["spec"]["predictors"]:
                    for cs in pred["componentSpecs"]:
                        containers += cs["spec"]["containers"]
                        assert cs["spec"]["securityContext"]["runAsNonRoot"] is True
        assert containers
        for c in containers:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["runAsNonRoot"] is True
            assert set(c["resources"]) == {"requests", "limits"}
            assert {"readinessProbe", "livenessProbe", "startupProbe"} <= set(c), c.get("name")


def test_cpu_and_memory_scale_with_scale_metric_others_with_keda(tmp_path: Path) -> None:
    docs = kustomize(wide(tmp_path / "wide"), "onprem", tmp_path / "out")
    isvcs = by_kind(docs, "InferenceService")
    tabular = isvcs["tabular-a"]
    assert tabular["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    pred = tabular["spec"]["predictor"]
    assert (pred["scaleMetric"], pred["scaleMetricType"], pred["scaleTarget"]) == ("cpu", "Utilization", 70)
    assert (pred["minReplicas"], pred["maxReplicas"]) == (1, 3)
    llm = by_kind(docs, "LLMInferenceService")["llm-big"]["spec"]["scaling"]
    assert "istio_requests_total" in llm["keda"]["triggers"][0]["metadata"]["query"]  # metric = "rps"
    assert llm["minReplicas"] == 1 and llm["keda"]["idleReplicaCount"] == 0  # min_replicas = 0: scale to zero
    seldon = kustomize(wide(tmp_path / "wide2"), "gpu-eks", tmp_path / "out2")
    sdeps = by_kind(seldon, "SeldonDeployment")
    hpa = sdeps["tabular"]["spec"]["predictors"][0]["componentSpecs"][0]["hpaSpec"]
    assert hpa["metricsv2"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    keda = sdeps["vision"]["spec"]["predictors"][0]["componentSpecs"][0]["kedaSpec"]
    assert keda["triggers"][0]["type"] == "prometheus" and keda["triggers"][0]["metadata"]["threshold"] == "10"


def test_namespace_security_objects(tmp_path: Path) -> None:
    docs = kustomize(example(), "staging", tmp_path)
    assert by_kind(docs, "PeerAuthentication")["default"]["spec"]["mtls"]["mode"] == "STRICT"
    ns = by_kind(docs, "Namespace")["ml-staging"]
    assert ns["metadata"]["labels"]["istio-injection"] == "enabled"
    netpol = by_kind(docs, "NetworkPolicy")["mlserve-ingress"]["spec"]
    allowed = netpol["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert allowed == ["checkout", "istio-system", "ml-staging", "monitoring"]
    authz = by_kind(docs, "AuthorizationPolicy")["fraud"]["spec"]
    assert authz["action"] == "ALLOW"
    assert authz["rules"] == [{"from": [{"source": {"namespaces": ["checkout", "ml-staging"]}}]}]
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert set(pdbs) == {"fraud-v1", "summarize-llama-8b"}


def test_jwt_auth_renders_request_authentication(tmp_path: Path) -> None:
    docs = kustomize(wide(tmp_path / "wide"), "onprem", tmp_path / "out")
    ra = by_kind(docs, "RequestAuthentication")["tabular"]["spec"]
    assert ra["jwtRules"] == [
        {"issuer": "https://issuer.example.com", "jwksUri": "https://issuer.example.com/.well-known/jwks.json"}
    ]
    rules = by_kind(docs, "AuthorizationPolicy")["tabular"]["spec"]["rules"]
    sources = [r["from"][0]["source"] for r in rules]
    assert all(s["requestPrincipals"] == ["https://issuer.example.com/*"] for s in sources)
    assert sources[1]["principals"] == ["cluster.local/ns/web/sa/frontend"]


def test_bad_traffic_states_are_usage_errors() -> None:
    project = example()
    bad = [
        {"fraud": EndpointTraffic("v1", "v9", "canary", {"v1": 90, "v9": 10})},
        {"fraud": EndpointTraffic("v1", "v2", "canary", {"v1": 90, "v2": 20})},
        {"fraud": EndpointTraffic("v1", None, "canary", {"v1": 100})},
        {"nope": EndpointTraffic("v1")},
        {"fraud": {"baseline": "v1", "wieghts": {}}},
    ]
    for state in bad:
        with pytest.raises(UsageError):
            render_files(project, "staging", state)


def test_local_model_path_without_model_store_is_a_manifest_error(tmp_path: Path) -> None:
    text = """
[project]
name = "p"
[environments.k]
target = "kubernetes"
serving = "kserve"
namespace = "ns"
cluster = "existing"
[endpoints.e]
runtime = "sklearn"
baseline = "v1"
[endpoints.e.versions.v1]
model_uri = "models/e/v1"
"""
    project = project_from(text, tmp_path / "p")
    with pytest.raises(ManifestError, match=r"endpoints\.e\.versions\.v1\.model_uri.*model_store"):
        render_files(project, "k")


def test_environment_without_endpoints_still_builds(tmp_path: Path) -> None:
    from tests.render.manifests import WIDE

    text = WIDE.replace('kube_context = "onprem-admin"', 'kube_context = "onprem-admin"\nendpoints = []')
    docs = kustomize(project_from(text, tmp_path / "p"), "onprem", tmp_path / "out")
    assert sorted(d["kind"] for d in docs) == ["Namespace", "NetworkPolicy", "PeerAuthentication"]


def test_the_local_chat_endpoint_renders_and_validates_on_both_serving_stacks(tmp_path: Path) -> None:
    """runtime = "transformers" on a cluster: KServe's Hugging Face server (no image of
    `transformers serve` exists), an InferenceService on KServe, a custom container on Seldon."""
    text = (
        (REPO / "mlserve.toml")
        .read_text()
        .replace('endpoints = ["fraud", "summarize"]', 'endpoints = ["fraud", "summarize", "chat"]')
    )
    project = project_from(text, tmp_path / "p")
    for env in ("staging", "prod"):
        docs = kustomize(project, env, tmp_path / env)
        for d in docs:
            validate_object(d)
        if env == "staging":
            model = by_kind(docs, "InferenceService")["chat-v1"]["spec"]["predictor"]["model"]
            assert model["modelFormat"]["name"] == "huggingface" and "--backend=huggingface" in model["args"]
            assert model["storageUri"] == "s3://acme-ml-models/models/chat/v1"
        else:
            sdep = by_kind(docs, "SeldonDeployment")["chat"]
            container = sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
            assert "--backend=huggingface" in container["args"] and "--http_port=9000" in container["args"]


def test_kserve_pods_get_the_fine_latency_buckets_and_seldon_pods_none() -> None:
    """KServe arms are read from Istio's sidecar histograms: every predictor pod carries the
    statsHistogramBuckets annotation with mlserve's 3% bounds in milliseconds (the same as
    the local gateway's), so p99 is compared within a fraction of a 10% margin on a cluster
    too. Seldon arms are read from the executor, whose buckets mlserve cannot set."""
    import itertools
    import json

    from mlserve.metrics.buckets import ISTIO_BUCKETS_ANNOTATION, ISTIO_DURATION_METRIC, LATENCY_BUCKETS

    files = {p: t for layer in render_files(example(), "staging").values() for p, t in layer.items()}
    docs = [d for d in yaml.safe_load_all(files["kubernetes/endpoints/fraud.yaml"]) if d]
    isvcs = [d for d in docs if d["kind"] == "InferenceService"]
    assert isvcs
    for isvc in isvcs:
        value = isvc["spec"]["predictor"]["annotations"][ISTIO_BUCKETS_ANNOTATION]
        bounds = json.loads(value)[ISTIO_DURATION_METRIC]
        assert len(bounds) == len(LATENCY_BUCKETS) > 300
        ratios = [b / a for a, b in itertools.pairwise(bounds)]
        assert max(ratios) < 1.035 and bounds[0] == 0.5 and bounds[-1] >= 30_000
        validate_object(isvc)
    prod = "\n".join(t for layer in render_files(example(), "prod").values() for t in layer.values())
    assert ISTIO_BUCKETS_ANNOTATION not in prod
