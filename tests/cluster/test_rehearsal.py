"""Rollouts on a simulated cluster: mlserve drives the real kubectl against the stand-in API
server (every applied object validated against its CRD there), and a real Prometheus scrapes
exposition samples whose counters advance by the weights the stand-in holds. The rollout
code is the same as on a cluster: only kubectl's server and Prometheus' targets differ."""

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

HARMLESS = {"v1": Behaviour(0.0, 0.02), "v2": Behaviour(0.0, 0.021)}
ERRORS = {"v1": Behaviour(0.0, 0.02), "v2": Behaviour(0.08, 0.02)}
POLICY = {
    # the concurrent control (control = "replica", main's default) is not rehearsed on the
    # simulated cluster yet: these runs compare with the primary, as before it
    "control": "primary",
    "interval": "1s",
    "max_duration": "60s",
    "min_requests": 300,
    "steps": [25, 100],
    "metrics": [
        {"name": "error_rate", "kind": "error_rate", "margin": 0.01, "critical": True},
        {"name": "latency_p95", "kind": "latency", "quantile": 0.95, "margin": "50%"},
    ],
}
# (environment, extra environment keys, exposition components)
CASES = {
    "kserve-istio": ("staging", {}, ("istio", "mlserver")),
    "kserve-gateway-api": ("staging", {"router": "gateway-api"}, ("istio", "mlserver")),
    "seldon-istio": ("prod", {}, ("seldon", "istio")),
}


def _run(r: Rehearsal) -> dict[str, Any]:
    service.start(load_project(r.project), "fraud", "v2", env=r.env)
    return service.run_to_end(load_project(r.project), "fraud").to_dict()


def _events(out: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (Path(out["run_dir"]) / "events.jsonl").read_text().splitlines()]


def _route_weights(r: Rehearsal, router: str) -> dict[str, int]:
    if router == "gateway-api":
        route = r.cluster.get("HTTPRoute", "fraud", r.namespace)
        assert route is not None
        return {b["name"]: b["weight"] for b in route["spec"]["rules"][-1]["backendRefs"]}
    vs = r.cluster.get("VirtualService", "fraud", r.namespace)
    assert vs is not None
    return {d["destination"]["subset"]: d["weight"] for d in vs["spec"]["http"][-1]["route"]}


def _check_promoted(r: Rehearsal, out: dict[str, Any], case: str) -> None:
    assert out["status"] == "promoted", out
    router = CASES[case][1].get("router", "istio")
    # the split the stand-in held is the split the series saw
    d = out["decision"]
    assert d["srm"]["ok"] and abs(d["srm"]["candidate_share"] - 0.25) < 0.03, d["srm"]
    assert _route_weights(r, router) == ({"fraud-v2-predictor": 100} if router == "gateway-api" else {"v2": 100})
    looks = [e for e in _events(out) if e["event"] == "look"]
    assert looks and all(e["queries"] for e in looks)
    text = " ".join(looks[-1]["queries"])
    if case.startswith("seldon"):
        assert 'predictor_name="v2"' in text and 'deployment_name="fraud"' in text
    else:
        assert 'destination_workload="fraud-v2-predictor"' in text and 'reporter="destination"' in text
    report = (Path(out["run_dir"]) / "report.md").read_text()
    assert "## Queries" in report and looks[-1]["queries"][0] in report


@pytest.mark.parametrize("case", ["kserve-istio"])
def test_harmless_candidate_is_promoted(
    case: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, keys, components = CASES[case]
    set_policy(project, **POLICY)
    with rehearsal(project, tmp_path, monkeypatch, env=env, components=components, versions=HARMLESS, **keys) as r:
        out = _run(r)
        _check_promoted(r, out, case)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["kserve-gateway-api", "seldon-istio"])
def test_harmless_candidate_is_promoted_on_every_router_and_backend(
    case: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test_harmless_candidate_is_promoted(case, project, tmp_path, monkeypatch)


@pytest.mark.parametrize("case", ["kserve-gateway-api"])
def test_candidate_whose_series_show_errors_is_rolled_back(
    case: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, keys, components = CASES[case]
    set_policy(project, **POLICY)
    with rehearsal(project, tmp_path, monkeypatch, env=env, components=components, versions=ERRORS, **keys) as r:
        out = _run(r)
        assert out["status"] == "rolled_back", out
        assert "error_rate" in out["outcome"]["reason"]
        router = keys.get("router", "istio")
        assert _route_weights(r, router) == ({"fraud-v1-predictor": 100} if router == "gateway-api" else {"v1": 100})
        candidate = "v2" if case.startswith("seldon") else "fraud-v2"  # a Seldon arm is its predictor
        assert r.exposition.sent.get(candidate, 0) > 0  # the candidate did serve, and failed


@pytest.mark.slow
@pytest.mark.parametrize("case", ["kserve-istio", "seldon-istio"])
def test_candidate_whose_series_show_errors_is_rolled_back_everywhere(
    case: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test_candidate_whose_series_show_errors_is_rolled_back(case, project, tmp_path, monkeypatch)
