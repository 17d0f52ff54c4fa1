"""The objects issue 17 adds to the kubernetes layer: Gateway API routing (Gateway, HTTPRoute,
InferencePool), the shadow comparator and the payload loggers that feed it, arms sized for
their share; all validated strictly against the CRDs in ../shared/crds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlserve.errors import UsageError
from mlserve.render import EndpointTraffic, render_files
from tests.render.k8s_schemas import validate_object
from tests.render.manifests import example, project_from
from tests.render.test_kubernetes import TRAFFIC_STATES, by_kind, kustomize

REPO = Path(__file__).resolve().parents[2]


def _route(docs: list[dict[str, Any]], name: str = "fraud") -> dict[str, Any]:
    return by_kind(docs, "HTTPRoute")[name]


@pytest.mark.parametrize("mode", sorted(TRAFFIC_STATES))
def test_gateway_api_objects_validate_in_every_traffic_mode(tmp_path: Path, mode: str) -> None:
    docs = kustomize(example(), "edge", tmp_path, TRAFFIC_STATES[mode])
    for d in docs:
        validate_object(d)
    kinds = {d["kind"] for d in docs}
    assert {"Gateway", "HTTPRoute", "InferencePool", "InferenceService"} <= kinds
    assert not {"VirtualService", "DestinationRule"} & kinds  # the Gateway API routes, Istio does not
    gw = by_kind(docs, "Gateway")["mlserve"]
    assert gw["spec"]["gatewayClassName"] == "istio"
    assert gw["spec"]["listeners"][0]["hostname"] == "*.ml-edge.ml.acme.example"
    route = _route(docs)
    assert route["spec"]["parentRefs"] == [
        {"name": "mlserve"},
        {"group": "", "kind": "Service", "name": "fraud", "port": 80},
    ]
    assert route["spec"]["hostnames"] == ["fraud.ml-edge.ml.acme.example"]


def test_httproute_weights_mirror_and_sticky_matches(tmp_path: Path) -> None:
    docs = kustomize(example(), "edge", tmp_path / "c", TRAFFIC_STATES["canary"])
    rules = _route(docs)["spec"]["rules"]
    assert [(b["name"], b["port"], b["weight"]) for b in rules[-1]["backendRefs"]] == [
        ("fraud-v1-predictor", 80, 90),
        ("fraud-v2-predictor", 80, 10),
    ]
    shadow = _route(kustomize(example(), "edge", tmp_path / "s", TRAFFIC_STATES["shadow"]))["spec"]["rules"][-1]
    assert [b["name"] for b in shadow["backendRefs"]] == ["fraud-v1-predictor"]
    assert shadow["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": "fraud-v2-predictor", "port": 80}, "percent": 20},
        }
    ]
    ab = _route(kustomize(example(), "edge", tmp_path / "a", TRAFFIC_STATES["ab"]))["spec"]["rules"]
    pinned = {r["name"]: r for r in ab[:-1]}
    assert pinned["pinned-v2"]["matches"] == [
        {"headers": [{"type": "Exact", "name": "x-mlserve-variant", "value": "v2"}]}
    ]
    assert pinned["pinned-v2"]["backendRefs"] == [{"name": "fraud-v2-predictor", "port": 80, "weight": 1}]
    assert [b["weight"] for b in ab[-1]["backendRefs"]] == [50, 50]


def test_sticky_cookie_matches_and_a_gateway_that_cannot_mirror(tmp_path: Path) -> None:
    text = (REPO / "mlserve.toml").read_text()
    text = text.replace('strategy = "canary"\n', 'strategy = "canary"\nsticky_cookie = "uid"\n', 1)
    project = project_from(text, tmp_path / "cookie")
    ab = kustomize(project, "edge", tmp_path / "a", TRAFFIC_STATES["ab"])
    for d in ab:
        validate_object(d)
    second = _route(ab)["spec"]["rules"][1]["matches"][1]["headers"][0]
    assert second == {"type": "RegularExpression", "name": "cookie", "value": "(^|;\\s*)uid=v2(;|$)"}
    nomirror = project_from(
        text.replace('domain = "ml.acme.example"', 'domain = "ml.acme.example"\nmirror = false'), tmp_path / "nomirror"
    )
    with pytest.raises(UsageError, match=r"gateway\.mirror is false"):
        render_files(nomirror, "edge", TRAFFIC_STATES["shadow"])


def test_llm_arms_are_inference_pools_weighed_by_the_route(tmp_path: Path) -> None:
    docs = kustomize(example(), "edge", tmp_path, TRAFFIC_STATES["llm-canary"])
    pools = by_kind(docs, "InferencePool")
    assert set(pools) == {"summarize-llama-8b", "summarize-llama-8b-q"}
    assert pools["summarize-llama-8b-q"]["spec"]["selector"]["matchLabels"]["mlserve.io/version"] == "llama-8b-q"
    assert pools["summarize-llama-8b"]["spec"]["endpointPickerRef"] == {
        "name": "summarize-epp",
        "port": {"number": 9002},
    }
    refs = _route(docs, "summarize")["spec"]["rules"][-1]["backendRefs"]
    assert refs == [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "summarize-llama-8b", "weight": 75},
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "summarize-llama-8b-q", "weight": 25},
    ]


def test_shadow_comparator_and_the_loggers_that_feed_it(tmp_path: Path) -> None:
    """prod (Seldon): summarize's predictors log answers to the comparator; fraud (monitoring
    on) logs to its drift collector, never to the comparator."""
    docs = kustomize(example(), "prod", tmp_path)
    for d in docs:
        validate_object(d)
    dep = by_kind(docs, "Deployment")["mlserve-comparator"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["resources"]["limits"]
    cm = by_kind(docs, "ConfigMap")["mlserve-comparator"]["data"]
    assert cm["comparator.py"] == (REPO / "mlserve" / "targets" / "comparator.py").read_text()
    assert cm["answers.py"] == (REPO / "mlserve" / "answers.py").read_text()
    url = "http://mlserve-comparator.ml-prod.svc.cluster.local"
    sd = by_kind(docs, "SeldonDeployment")
    assert sd["summarize"]["spec"]["predictors"][0]["graph"]["logger"] == {"mode": "response", "url": url}
    drift = {"mode": "all", "url": "http://mlserve-drift-fraud.ml-prod.svc.cluster.local/log/fraud/v1"}
    assert sd["fraud"]["spec"]["predictors"][0]["graph"]["logger"] == drift


@pytest.mark.parametrize("env", ["staging", "edge"])
def test_kserve_shadow_logger_on_inference_services_only(tmp_path: Path, env: str) -> None:
    """KServe: summarize's versions are LLMInferenceServices, which have no payload logger, and
    fraud has monitoring on, so the example renders no comparator there; with fraud's monitoring
    off and a shadow step, its InferenceServices log answers to it (with the request id)."""
    docs = kustomize(example(), env, tmp_path / "example")
    assert "mlserve-comparator" not in by_kind(docs, "Deployment")
    assert all("logger" not in d["spec"] for d in by_kind(docs, "LLMInferenceService").values())
    text = (REPO / "mlserve.toml").read_text().replace('strategy = "canary"\n', 'strategy = "shadow+canary"\n', 1)
    start = text.index("[endpoints.fraud.monitoring]")
    end = text.index("[endpoints.fraud.rollout]")
    docs = kustomize(project_from(text[:start] + text[end:], tmp_path / "p"), env, tmp_path / "out")
    for d in docs:
        validate_object(d)
    ns = dict(staging="ml-staging", edge="ml-edge")[env]
    assert by_kind(docs, "InferenceService")["fraud-v1"]["spec"]["predictor"]["logger"] == {
        "mode": "response", "url": f"http://mlserve-comparator.{ns}.svc.cluster.local",
        "metadataHeaders": ["X-Request-Id"], "metadataAnnotations": ["mlserve.io/endpoint"],
    }  # fmt: skip
    assert "mlserve-comparator" in by_kind(docs, "Deployment")


def test_seldon_mirror_sets_one_request_id_for_both_predictors(tmp_path: Path) -> None:
    shadow = {"summarize": EndpointTraffic("llama-8b", "llama-8b-q", "shadow", {"llama-8b": 100}, shadow=20)}
    docs = kustomize(example(), "prod", tmp_path, shadow)
    http = by_kind(docs, "VirtualService")["summarize"]["spec"]["http"][-1]
    assert http["headers"] == {"request": {"set": {"seldon-puid": "%REQ(x-request-id)%"}}}


def test_arms_are_sized_for_their_share_when_the_policy_asks(tmp_path: Path) -> None:
    text = (
        (REPO / "mlserve.toml")
        .read_text()
        .replace("shadow_percent = 20\n", 'shadow_percent = 20\ncanary_size = "weight"\nscale_primary = true\n', 1)
    )
    project = project_from(text, tmp_path / "sized")
    state = {"summarize": EndpointTraffic("llama-8b", "llama-8b-q", "canary", {"llama-8b": 75, "llama-8b-q": 25})}
    docs = kustomize(project, "staging", tmp_path / "out", state)
    isvc = by_kind(docs, "LLMInferenceService")
    # max_replicas 4: the candidate at 25% gets ceil(4 x 0.25) = 1, the primary at 75% ceil(3) = 3
    assert isvc["summarize-llama-8b-q"]["spec"]["scaling"]["maxReplicas"] == 1
    assert isvc["summarize-llama-8b"]["spec"]["scaling"]["maxReplicas"] == 3
    stable = by_kind(kustomize(project, "staging", tmp_path / "stable"), "LLMInferenceService")
    assert stable["summarize-llama-8b"]["spec"]["scaling"]["maxReplicas"] == 4
