"""An LLM endpoint's rollout on a simulated cluster: KServe LLMInferenceService versions
(runtime = "vllm"), their control an LLMInferenceService of its own, each arm's series
selected by the Deployment KServe runs it in (``NAME-kserve``), behind Istio and behind the
Gateway API (each arm an InferencePool picked by the endpoint picker, or its own Service).
The stand-in API server validates every applied object against its CRD; a real Prometheus
scrapes Istio series that advance by the weights the stand-in holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlserve.project import load_project
from mlserve.rollout import service
from tests.support.exposition import Behaviour
from tests.support.policy import set_policy
from tests.support.rehearsal import Rehearsal, rehearsal

pytestmark = [pytest.mark.prometheus]

BASE, CAND = "llama-8b", "llama-8b-q"
HARMLESS = {BASE: Behaviour(0.0, 0.8), CAND: Behaviour(0.0, 0.82)}
ERRORS = {BASE: Behaviour(0.0, 0.8), CAND: Behaviour(0.08, 0.8)}
POLICY = {
    "strategy": "canary",
    "interval": "1s",
    "max_duration": "60s",
    "min_requests": 300,
    "steps": [25, 100],
    # each arm sized by its share and the primary scaled down as the candidate grows: the
    # GPU plan of a 4-replica vLLM endpoint with a control fits staging's 8-GPU node group
    "canary_size": "weight",
    "scale_primary": True,
    "metrics": [
        {"name": "error_rate", "kind": "error_rate", "margin": 0.01, "critical": True},
        {"name": "latency_p95", "kind": "latency", "quantile": 0.95, "margin": "50%"},
    ],
}
RATE = 1200.0


def _run(r: Rehearsal) -> dict[str, Any]:
    service.start(load_project(r.project), "summarize", CAND, env=r.env)
    return service.run_to_end(load_project(r.project), "summarize").to_dict()


def _events(out: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (Path(out["run_dir"]) / "events.jsonl").read_text().splitlines()]


def _rehearse(project: Path, tmp: Path, mp: pytest.MonkeyPatch, env: str, versions: dict[str, Behaviour],
              **keys: Any) -> tuple[Rehearsal, dict[str, Any]]:  # fmt: skip
    set_policy(project, "summarize", **POLICY)
    with rehearsal(project, tmp, mp, env=env, endpoint="summarize", components=("istio",), versions=versions,
                   rate=RATE, **keys) as r:  # fmt: skip
        out = _run(r)
        looks = [e for e in _events(out) if e["event"] == "look"]
        assert looks and all(set(e["requests"]) == {BASE, "control", CAND} for e in looks), out
        text = " ".join(looks[-1]["queries"])
        for arm in (BASE, "control", CAND):  # each arm's own workload, the control's included
            assert f'destination_workload="summarize-{arm}-kserve",destination_canonical_revision="{arm}"' in text
            assert r.exposition.sent.get(f"summarize-{arm}", 0) > 0, r.exposition.sent
        assert r.cluster.get("LLMInferenceService", "summarize-control", r.namespace) is None  # the control is gone
        if keys.get("router") == "gateway-api":
            per_arm = "InferencePool" if (keys.get("gateway") or {}).get("endpoint_picker", True) else "Service"
            name = "summarize-control" if per_arm == "InferencePool" else "summarize-control-arm"
            assert r.cluster.get(per_arm, name, r.namespace) is None, f"{per_arm} {name} left behind"
        return r, out


def test_an_llm_candidate_is_promoted_behind_istio(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out = _rehearse(project, tmp_path, monkeypatch, "staging", HARMLESS)
    assert out["status"] == "promoted", out["outcome"]


@pytest.mark.parametrize("picker", [True, False])
def test_an_llm_candidate_with_errors_is_rolled_back_behind_the_gateway_api(
    picker: bool, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway: dict[str, Any] = {"class_name": "istio", "domain": "ml.acme.example"}
    if picker:
        gateway["endpoint_picker"] = "summarize-epp"
    r, out = _rehearse(project, tmp_path, monkeypatch, "edge", ERRORS, gateway=gateway)
    assert out["status"] == "rolled_back", out["outcome"]
    assert "error_rate" in out["outcome"]["reason"] and "than control (a fresh llama-8b)" in out["outcome"]["reason"]
    route = r.cluster.get("HTTPRoute", "summarize", r.namespace)
    assert route is not None
    refs = route["spec"]["rules"][-1]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in refs] == [
        ("summarize-llama-8b" if picker else "summarize-llama-8b-arm", 100)
    ], refs


def test_an_llm_shadow_step_runs_without_the_agreement_gate_when_the_policy_turns_it_off(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LLMInferenceServices have no payload logger, so the cluster has no comparison path for
    them: with the default gate (shadow_agreement = 0.99) a shadow look is held saying how to
    turn it off; with shadow_agreement = 0 the shadow step is judged on the mirrored requests'
    errors and latency (Istio's series of the shadow's own workload) and the canary follows."""
    set_policy(project, "summarize", **{**POLICY, "strategy": "shadow+canary", "max_duration": "8s"})
    with rehearsal(project, tmp_path, monkeypatch, env="staging", endpoint="summarize", components=("istio",),
                   versions=HARMLESS, rate=RATE) as r:  # fmt: skip
        held = _run(r)
        assert held["status"] != "promoted", held
        reasons = " ".join(e.get("reason", "") for e in _events(held) if e["event"] == "held")
        assert "have no payload logger" in reasons and "rollout.shadow_agreement = 0 shadows it" in reasons, reasons
        set_policy(project, "summarize", **{**POLICY, "strategy": "shadow+canary", "shadow_agreement": 0})
        out = _run(r)
        assert out["status"] == "promoted", out["outcome"]
        phases = [e.get("phase") for e in _events(out) if e.get("action") == "enter_step"]
        assert phases[0] == "shadow" and "canary" in phases, phases
        assert not any(e["event"] == "held" and "payload logger" in e.get("reason", "") for e in _events(out))
