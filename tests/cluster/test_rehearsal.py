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
    "interval": "1s",
    "max_duration": "60s",
    "min_requests": 300,
    "steps": [25, 100],
    "metrics": [
        {"name": "error_rate", "kind": "error_rate", "margin": 0.01, "critical": True},
        {"name": "latency_p95", "kind": "latency", "quantile": 0.95, "margin": "50%"},
    ],
}
# requests per second to the endpoint: with the concurrent control the evidence unit is the
# interval (one bet per look), which decides within about ten 1 s looks at this rate
RATE = 1200.0
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


def _stable(router: str, version: str) -> dict[str, int]:
    return {f"fraud-{version}-predictor": 100} if router == "gateway-api" else {version: 100}


def _arm_query(case: str, arm: str) -> str:
    """The selector of one arm's series: its own workload, as its pods are labelled."""
    if case.startswith("seldon"):
        return f'deployment_name="fraud",predictor_name="{arm}"'
    return f'destination_workload="fraud-{arm}-predictor",destination_canonical_revision="{arm}"'


def _sent(r: Rehearsal, case: str, arm: str) -> int:
    return r.exposition.sent.get(arm if case.startswith("seldon") else f"fraud-{arm}", 0)


def _check_control(r: Rehearsal, out: dict[str, Any], case: str) -> None:
    """The control served its share from its own workload, was compared, and is gone."""
    events = _events(out)
    assert [e["event"] for e in events if e["event"].startswith("control_")] == ["control_started", "control_stopped"]
    enter = next(e for e in events if e.get("action") == "enter_step")
    assert enter["weights"] == {"v1": 50, "control": 25, "v2": 25}
    assert _sent(r, case, "control") > 0
    looks = [e for e in events if e["event"] == "look"]
    assert all(_arm_query(case, "control") in " ".join(e["queries"]) for e in looks)
    assert all(set(e["requests"]) == {"v1", "control", "v2"} for e in looks)
    # the sample-ratio check covers every arm, and the counts it saw are the split the cluster made
    arms = out["decision"]["srm"]["arms"]
    assert set(arms) == {"v1", "control", "v2"}, arms
    for arm, expected in (("v1", 0.5), ("control", 0.25), ("v2", 0.25)):
        assert arms[arm]["expected"] == expected and abs(arms[arm]["share"] - expected) < 0.04, arms
    report = (Path(out["run_dir"]) / "report.md").read_text()
    assert "compared with the control arm 'control' (a fresh instance of v1" in report
    assert "| control | control | v1 | 25% |" in report
    if case.startswith("seldon"):
        sdep = r.cluster.get("SeldonDeployment", "fraud", r.namespace)
        assert sdep is not None and [p["name"] for p in sdep["spec"]["predictors"]] == [_final(out)]
    else:
        assert r.cluster.get("InferenceService", "fraud-control", r.namespace) is None


def _final(out: dict[str, Any]) -> str:
    return "v2" if out["status"] == "promoted" else "v1"


def _check_promoted(r: Rehearsal, out: dict[str, Any], case: str, control: str) -> None:
    assert out["status"] == "promoted", out
    router = CASES[case][1].get("router", "istio")
    # the split the stand-in held is the split the series saw
    d = out["decision"]
    share = 0.5 if control == "replica" else 0.25  # the candidate's share of the compared pair
    assert d["srm"]["ok"] and abs(d["srm"]["candidate_share"] - share) < 0.04, d["srm"]
    assert _route_weights(r, router) == _stable(router, "v2")
    looks = [e for e in _events(out) if e["event"] == "look"]
    assert looks and all(e["queries"] for e in looks)
    text = " ".join(looks[-1]["queries"])
    assert _arm_query(case, "v2") in text and _arm_query(case, "v1") in text
    if not case.startswith("seldon"):
        assert 'reporter="destination"' in text
    report = (Path(out["run_dir"]) / "report.md").read_text()
    assert "## Queries" in report and looks[-1]["queries"][0] in report
    # KServe pods carry the fine statsHistogramBuckets and the sidecars report at them: the
    # quantile compared is the one the policy names (Seldon's executor keeps coarse buckets)
    note = next(m for m in d["metrics"] if m["name"] == "latency_p95")["note"]
    if case.startswith("seldon"):
        assert "p95 compared" not in note and "coarser than the 50% margin" in note, note
    elif control == "replica":
        assert note.startswith("p95 compared") and "3% wide" in note, note
    else:  # the per-request test compares at the nearest bound: within a bucket of p95
        assert note.startswith("p9") and "compared" in note, note
    if control == "replica":
        _check_control(r, out, case)
    else:
        assert "control" not in text and not any(e["event"].startswith("control_") for e in _events(out))


def _check_rolled_back(r: Rehearsal, out: dict[str, Any], case: str, control: str) -> None:
    assert out["status"] == "rolled_back", out
    assert "error_rate" in out["outcome"]["reason"]
    router = CASES[case][1].get("router", "istio")
    assert _route_weights(r, router) == _stable(router, "v1")
    assert _sent(r, case, "v2") > 0  # the candidate did serve, and failed
    if control == "replica":
        assert "than control (a fresh v1)" in out["outcome"]["reason"], out["outcome"]
        _check_control(r, out, case)


def _rehearse(case: str, control: str, versions: dict[str, Behaviour], project: Path, tmp: Path, mp: Any) -> None:
    env, keys, components = CASES[case]
    set_policy(project, **POLICY, **({"control": "primary"} if control == "primary" else {}))
    with rehearsal(project, tmp, mp, env=env, components=components, versions=versions, rate=RATE, **keys) as r:
        out = _run(r)
        check = _check_promoted if versions is HARMLESS else _check_rolled_back
        check(r, out, case, control)


# The concurrent control (control = "replica", the default) on every router and backend; the
# comparison with the primary (control = "primary") beside it, in the slow run.


@pytest.mark.parametrize("case", ["kserve-istio", "seldon-istio"])
def test_harmless_candidate_is_promoted(
    case: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _rehearse(case, "replica", HARMLESS, project, tmp_path, monkeypatch)


@pytest.mark.parametrize("case", ["kserve-gateway-api"])
def test_candidate_whose_series_show_errors_is_rolled_back(
    case: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _rehearse(case, "replica", ERRORS, project, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "control"),
    [("kserve-gateway-api", "replica"), *((c, "primary") for c in CASES)],
)
def test_harmless_candidate_is_promoted_on_every_router_and_backend(
    case: str, control: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _rehearse(case, control, HARMLESS, project, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "control"),
    [("kserve-istio", "replica"), ("seldon-istio", "replica"), *((c, "primary") for c in CASES)],
)
def test_candidate_whose_series_show_errors_is_rolled_back_everywhere(
    case: str, control: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _rehearse(case, control, ERRORS, project, tmp_path, monkeypatch)
