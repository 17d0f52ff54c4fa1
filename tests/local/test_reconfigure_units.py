"""The pure decisions behind changes without a dropped request: which upstream an arm routes
to while servers come and go, live traffic carried over a reload, what makes a process
restart rather than reload, and the desired-state edits of the arms API. No processes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mlserve.local.desired import refresh, with_model, without_model
from mlserve.local.gateway_config import GatewayConfig, Shadow, TrafficState
from mlserve.local.plan import build_plan
from mlserve.local.routes import ArmServer, effective
from mlserve.local.state import LocalPaths, ProcessSpec
from mlserve.local.supervisor import can_overlap
from mlserve.project import load_project

U1, U2, U3, OLD = (f"http://127.0.0.1:{p}" for p in (9001, 9002, 9003, 9009))


def _desired(**versions: str) -> dict[str, Any]:
    return {
        "format": "mlserve.gateway/v1",
        "generation": 7,
        "endpoints": {
            "fraud": {
                "versions": dict(versions),
                "baseline": "v1",
                "traffic": {"mode": "split", "weights": {"v1": 100, **{v: 0 for v in versions if v != "v1"}}},
                "faults": {v: {"latency_ms": 5} for v in versions if v != "v1"},
            }
        },
    }


def test_a_new_arm_enters_the_routes_only_once_its_server_was_healthy() -> None:
    desired = _desired(v1=U1, v2=U2)
    starting = {("fraud", "v1"): ArmServer("fraud", "v1", U1, U1), ("fraud", "v2"): ArmServer("fraud", "v2", U2, None)}
    routes = effective(desired, starting)
    ep = routes.config["endpoints"]["fraud"]
    assert ep["versions"] == {"v1": U1} and "v2" not in ep["faults"] and ep["traffic"]["weights"] == {"v1": 100}
    assert not routes.complete and routes.urls == {U1}
    GatewayConfig.from_dict({**routes.config, "port": 1, "admin_port": 2, "admin_token_file": "t", "state_file": "s"})
    ready = {**starting, ("fraud", "v2"): ArmServer("fraud", "v2", U2, U2)}
    done = effective(desired, ready)
    assert done.complete and done.config == desired and done.digest != routes.digest


def test_a_replaced_server_keeps_its_arm_until_the_new_one_is_ready() -> None:
    desired = _desired(v1=U1, v2=U3)
    during = {
        ("fraud", "v1"): ArmServer("fraud", "v1", U1, U1),
        ("fraud", "v2"): ArmServer("fraud", "v2", U3, None, OLD),
    }
    routes = effective(desired, during)
    assert routes.config["endpoints"]["fraud"]["versions"] == {"v1": U1, "v2": OLD} and not routes.complete
    after = effective(desired, {**during, ("fraud", "v2"): ArmServer("fraud", "v2", U3, U3, OLD)})
    assert after.config["endpoints"]["fraud"]["versions"]["v2"] == U3 and after.complete and OLD not in after.urls


def test_the_baseline_is_always_routed_and_a_dropped_arm_gives_its_weight_and_shadow_back() -> None:
    desired = _desired(v1=U1, v2=U2)
    desired["endpoints"]["fraud"]["traffic"] = {"mode": "split", "weights": {"v1": 80, "v2": 20},
                                                "shadow": {"version": "v2", "percent": 50}}  # fmt: skip
    routes = effective(
        desired,
        {("fraud", "v1"): ArmServer("fraud", "v1", U1, None), ("fraud", "v2"): ArmServer("fraud", "v2", U2, None)},
    )
    ep = routes.config["endpoints"]["fraud"]
    assert ep["versions"] == {"v1": U1}
    assert ep["traffic"] == {"mode": "split", "weights": {"v1": 100}, "shadow": None}
    assert desired["endpoints"]["fraud"]["versions"] == {"v1": U1, "v2": U2}  # the input is not changed


def test_live_traffic_is_carried_over_a_new_set_of_arms() -> None:
    live = TrafficState(weights={"v1": 60, "v2": 30, "old": 10}, mode="sticky", shadow=Shadow("old", 20))
    moved = live.carried_over(["v1", "v2", "new"], "v1")
    assert moved == TrafficState(weights={"v1": 70, "v2": 30, "new": 0}, mode="sticky", shadow=None)
    kept = TrafficState(weights={"v1": 75, "v2": 25}, shadow=Shadow("v2", 5)).carried_over(["v1", "v2"], "v1")
    assert dict(kept.weights) == {"v1": 75, "v2": 25} and kept.shadow == Shadow("v2", 5)


def _spec(kind: str, ports: dict[str, int]) -> ProcessSpec:
    return ProcessSpec("x", kind, [], {}, "/", ports["http"], "", "", "f", ports=ports)


def test_which_changes_may_overlap_with_the_instance_they_replace() -> None:
    assert can_overlap(_spec("model", {"http": 1, "grpc": 2}), _spec("model", {"http": 3, "grpc": 4}))
    assert not can_overlap(_spec("model", {"http": 1, "grpc": 2}), _spec("model", {"http": 1, "grpc": 4}))
    assert can_overlap(_spec("gateway", {"http": 1}), _spec("gateway", {"http": 1}))  # shared sockets
    assert not can_overlap(_spec("prometheus", {"http": 1}), _spec("prometheus", {"http": 2}))  # one TSDB


@pytest.fixture
def planned(project: Path) -> tuple[Any, Any, LocalPaths]:
    p = load_project(project)
    paths = LocalPaths(project / ".mlserve")
    return p, build_plan(p, "local", paths, previous=None, running_ports=set()), paths


def test_routes_faults_and_limits_reload_while_a_model_change_starts_a_new_server(
    planned: tuple[Any, Any, LocalPaths],
) -> None:
    project, plan, paths = planned
    first = plan.desired_document(1, project.root)
    specs = {p["name"]: p for p in first["processes"]}
    text = project.manifest_path.read_text()
    fault = "\n[environments.local.faults.fraud.v2]\nlatency_ms = 7\n"
    limits = "\n[environments.local.limits]\nmax_body_bytes = 4096\n"
    project.manifest_path.write_text(text + fault + limits)
    again = build_plan(load_project(project.root), "local", paths, previous=first, running_ports=set())
    new = {p.name: p for p in again.processes}
    for name in specs:  # nothing restarts: same fingerprints and ports
        assert new[name].fingerprint == specs[name]["fingerprint"] and new[name].ports == specs[name]["ports"], name
    assert new["gateway"].config_fingerprint != specs["gateway"]["config_fingerprint"]  # reloaded instead
    assert new["prometheus"].config_fingerprint == specs["prometheus"]["config_fingerprint"]
    assert (
        again.gateway["max_body_bytes"] == 4096
        and again.gateway["endpoints"]["fraud"]["faults"]["v2"]["latency_ms"] == 7
    )
    # a retrained model: a new server for v2 on fresh ports, in its own folder, beside the old one
    model = project.root / "models/fraud/v2/model.joblib"
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    third = build_plan(load_project(project.root), "local", paths, previous=first, running_ports=set())
    v2 = third.by_name()["fraud/v2"]
    assert v2.fingerprint != specs["fraud/v2"]["fingerprint"]
    assert not set(v2.ports.values()) & set(specs["fraud/v2"]["ports"].values())
    assert (
        v2.cwd != specs["fraud/v2"]["cwd"]
        and third.by_name()["fraud/v1"].fingerprint == specs["fraud/v1"]["fingerprint"]
    )
    # the generation alone never makes the gateway reload
    later = third.desired_document(9, project.root)
    assert {p["name"]: p["config_fingerprint"] for p in later["processes"]}["gateway"] == third.by_name()[
        "gateway"
    ].config_fingerprint


def test_an_arm_added_and_removed_in_the_desired_state(planned: tuple[Any, Any, LocalPaths]) -> None:
    from mlserve.local.plan import _Ports, plan_model

    project, plan, paths = planned
    doc = plan.desired_document(1, project.root)
    taken = {int(v) for p in doc["processes"] for v in p["ports"].values()}
    ep = project.manifest.endpoints["fraud"]
    spec, files = plan_model(project, paths, _Ports({}, taken), "fraud", ep, "v1", arm="control")
    assert spec.name == "fraud/control" and spec.route == "control" and spec.version == "v1"
    assert not set(spec.ports.values()) & taken and "fraud.control-" in spec.cwd
    settings = json.loads(next(t for p, t in files.items() if p.endswith("model-settings.json")))
    assert settings["name"] == "fraud" and settings["parameters"]["version"] == "v1"
    more = with_model(doc, spec, ep.runtime)
    prom_files = refresh(more)
    gw = more["gateway"]["endpoints"]["fraud"]
    assert gw["versions"]["control"] == f"http://127.0.0.1:{spec.port}" and gw["traffic"]["weights"]["control"] == 0
    assert '"arm": "control"' in next(iter(prom_files.values()))
    fps = {p["name"]: p["config_fingerprint"] for p in more["processes"]}
    assert fps["prometheus"] != {p["name"]: p["config_fingerprint"] for p in doc["processes"]}["prometheus"]
    less = without_model(more, "fraud/control")
    refresh(less)
    assert less["gateway"] == doc["gateway"] and less["scrape"] == doc["scrape"]
    assert [p["name"] for p in less["processes"]] == [p["name"] for p in doc["processes"]]
