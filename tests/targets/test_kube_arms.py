"""Each arm of a look resolves to its own workload on a cluster, a rollout's control included:
the objects are the renderer's own (what kubectl would list), the resolution is pure
(:func:`mlserve.targets.kube_arms.select`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlserve.metrics import MetricsUnavailable
from mlserve.project import load_project
from mlserve.render import EndpointTraffic
from mlserve.render.core import render_files
from mlserve.targets import kube_arms
from mlserve.targets.base import Mode, Plan
from mlserve.targets.live import to_render

CONTROLLED = Plan.controlled(Mode.CANARY, "v1", "v2", "control", 10)
QUERY = "kubectl get ..."


def _listed(project: Path, env: str, serving: str) -> dict[str, Any]:
    """What ``kubectl get ... -o json`` returns for fraud's arms, from the rendered objects."""
    files = render_files(load_project(project), env, {"fraud": to_render(CONTROLLED, EndpointTraffic)})
    docs = [d for d in yaml.safe_load_all(files["kubernetes"]["kubernetes/endpoints/fraud.yaml"]) if d]
    if serving == "seldon":
        return next(d for d in docs if d["kind"] == "SeldonDeployment")
    return {"items": [d for d in docs if d["kind"] == "InferenceService"]}


def _select(data: dict[str, Any], serving: str, router: str, plan: Plan = CONTROLLED) -> dict[str, dict[str, str]]:
    wanted = kube_arms.wanted_arms(list(plan.arms), plan.arms)
    return kube_arms.select(data, serving=serving, router=router, endpoint="fraud", wanted=wanted, query=QUERY)


@pytest.mark.parametrize("router", ["istio", "gateway-api"])
def test_the_control_resolves_to_its_own_inference_service_never_the_primarys(project: Path, router: str) -> None:
    arms = _select(_listed(project, "staging", "kserve"), "kserve", router)
    # its pods carry service.istio.io/canonical-revision = the arm's name, which Istio reports
    assert arms["control"] == {
        "object": "fraud-control",
        "version": "control",
        "workload": "fraud-control-predictor",
        "service": "fraud-control-predictor" if router == "gateway-api" else "fraud",
    }
    assert arms["v1"]["object"] == "fraud-v1" and arms["v1"]["version"] == "v1"
    assert arms["v2"]["workload"] == "fraud-v2-predictor"
    assert len({a["workload"] for a in arms.values()}) == 3


def test_the_control_resolves_to_its_own_seldon_predictor(project: Path) -> None:
    arms = _select(_listed(project, "prod", "seldon"), "seldon", "istio")
    assert arms["control"]["predictor"] == "control" and arms["control"]["workload"] == "fraud-control-0-model"
    assert arms["v1"]["predictor"] == "v1" and arms["v2"]["predictor"] == "v2"


def test_a_missing_control_holds_the_look_and_the_primary_is_never_taken_for_it(project: Path) -> None:
    data = _listed(project, "staging", "kserve")
    data["items"] = [i for i in data["items"] if i["metadata"]["name"] != "fraud-control"]
    with pytest.raises(MetricsUnavailable, match=r"no workload for arm control of fraud \(version v1, role control\)"):
        _select(data, "kserve", "istio")
    # a two-arm plan of the same objects does not pick up a control that is still running
    two = Plan.split(Mode.CANARY, "v1", "v2", 10)
    arms = _select(_listed(project, "staging", "kserve"), "kserve", "istio", two)
    assert set(arms) == {"v1", "v2"} and arms["v1"]["object"] == "fraud-v1"


def test_two_controls_of_one_version_are_told_apart_by_the_arm_name(project: Path) -> None:
    data = _listed(project, "staging", "kserve")
    other = yaml.safe_load(yaml.safe_dump(next(i for i in data["items"] if i["metadata"]["name"] == "fraud-control")))
    other["metadata"]["name"] = "fraud-control-2"
    other["metadata"]["labels"]["mlserve.io/version"] = "control-2"
    data["items"].append(other)
    assert _select(data, "kserve", "istio")["control"]["object"] == "fraud-control"
    plan = Plan.controlled(Mode.CANARY, "v1", "v2", "control-3", 10)  # neither is named so: both serve v1
    with pytest.raises(MetricsUnavailable, match="ambiguous workload for arm control-3"):
        _select(data, "kserve", "istio", plan)


LLM_PLAN = Plan.controlled(Mode.CANARY, "llama-8b", "llama-8b-q", "control", 10)


def _llm_listed(project: Path, env: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """kubectl's list of summarize's LLMInferenceServices, and every rendered object of it."""
    files = render_files(load_project(project), env, {"summarize": to_render(LLM_PLAN, EndpointTraffic)})
    docs = [d for d in yaml.safe_load_all(files["kubernetes"]["kubernetes/endpoints/summarize.yaml"]) if d]
    return {"items": [d for d in docs if d["kind"] == "LLMInferenceService"]}, docs


def _llm_select(data: dict[str, Any], router: str, pools: bool = False) -> dict[str, dict[str, str]]:
    wanted = kube_arms.wanted_arms(list(LLM_PLAN.arms), LLM_PLAN.arms)
    return kube_arms.select(
        data, serving="kserve", router=router, endpoint="summarize", wanted=wanted, query=QUERY, pools=pools
    )


def test_an_llm_endpoints_arms_resolve_to_the_deployments_kserve_runs_them_in(project: Path) -> None:
    """LLMInferenceService arms (runtime = "vllm" on KServe): the Deployment NAME-kserve, or the
    one the API reports in status.workloads.primary (v1alpha2); the control to its own."""
    data, _ = _llm_listed(project, "staging")
    arms = _llm_select(data, "istio")
    assert {a: arms[a]["workload"] for a in arms} == {
        "llama-8b": "summarize-llama-8b-kserve",
        "control": "summarize-control-kserve",
        "llama-8b-q": "summarize-llama-8b-q-kserve",
    }
    assert arms["control"]["version"] == "control" and all(a["service"] == "summarize" for a in arms.values())
    reported = yaml.safe_load(yaml.safe_dump(data))
    reported["items"][0]["status"] = {"workloads": {"primary": {"kind": "Deployment", "name": "llm-main-7f9"}}}
    name = reported["items"][0]["metadata"]["name"]
    arm = next(a for a, v in _llm_select(reported, "istio").items() if v["object"] == name)
    assert _llm_select(reported, "istio")[arm]["workload"] == "llm-main-7f9"
    # the InferenceService query finds none of them: the look is held, naming the query
    with pytest.raises(MetricsUnavailable, match="no workload for arm llama-8b of summarize"):
        _llm_select({"items": []}, "istio")


def test_behind_the_gateway_api_an_llm_arm_is_its_inference_pool_or_its_own_service(project: Path) -> None:
    """edge has an endpoint picker: each arm is an InferencePool of its own name. Without one,
    each arm gets mlserve's Service NAME-arm (KServe's workload Service speaks TLS to a vLLM
    KServe configures), rendered beside it and named by the HTTPRoute."""
    data, docs = _llm_listed(project, "edge")
    pooled = _llm_select(data, "gateway-api", pools=True)
    pools = {d["metadata"]["name"] for d in docs if d["kind"] == "InferencePool"}
    assert {a["service"] for a in pooled.values()} == pools == {a["object"] for a in pooled.values()}
    from tests.support.rehearsal import set_env

    set_env(project, "edge", gateway={"class_name": "istio", "domain": "ml.acme.example"})  # no picker
    data, docs = _llm_listed(project, "edge")
    plain = _llm_select(data, "gateway-api")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    route = next(d for d in docs if d["kind"] == "HTTPRoute")
    backends = {b["name"] for b in route["spec"]["rules"][-1]["backendRefs"]}
    assert not any(d["kind"] == "InferencePool" for d in docs)
    for arm, sel in plain.items():
        assert sel["service"] == f"{sel['object']}-arm" and sel["service"] in services, (arm, sorted(services))
        assert services[sel["service"]]["spec"]["selector"] == {
            "mlserve.io/endpoint": "summarize", "mlserve.io/version": sel["version"],
        }  # fmt: skip
    assert backends <= {s["service"] for s in plain.values()} and backends
