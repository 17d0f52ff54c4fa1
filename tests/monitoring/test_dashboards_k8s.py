"""Rendered monitoring objects for Kubernetes: Grafana dashboards (structure against a schema
written from Grafana's dashboard model, every query parsed by promtool), PrometheusRules and
dashboard ConfigMaps as the platform expects them, payload loggers pointing at the drift
collector, and the collector itself fed CloudEvents in process."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
import yaml

from mlserve.monitoring.collector import Collector, CollectorConfig, app
from mlserve.monitoring.dashboards import grafana_dashboard
from mlserve.monitoring.rules import EndpointRules, dump_yaml
from mlserve.render import render_files
from mlserve.tools.promtool import check_rules
from tests.monitoring.grafana_schema import DASHBOARD_SCHEMA
from tests.render.manifests import REPO, example

FRAUD = EndpointRules("fraud", 0.01, 0.25, drift=True, namespace="ml", labels={"namespace": "ml"})


@pytest.mark.parametrize("source", ["local", "istio", "seldon"])
def test_dashboard_json_follows_the_grafana_model(source: str) -> None:
    dash = grafana_dashboard("acme-ml", "staging", FRAUD, source)
    jsonschema.validate(dash, DASHBOARD_SCHEMA)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) == 9
    titles = {p["title"] for p in dash["panels"]}
    assert {"Requests per second by version", "Latency quantiles by version", "Error ratio by version"} <= titles
    assert {"Error budget burn rate (availability)", "Input drift by feature (PSI)"} <= titles
    cells = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dash["panels"]}
    assert len(cells) == len(ids)  # no two panels on the same place of the grid
    assert len(dash["uid"]) <= 40 and dash["annotations"]["list"][0]["name"] == "Rollout steps"


def test_schema_rejects_what_grafana_would_not_load() -> None:
    dash = grafana_dashboard("acme-ml", "staging", FRAUD, "local")
    for broken in (
        {**dash, "panels": [{**dash["panels"][0], "gridPos": {"h": 8, "w": 30, "x": 0, "y": 0}}]},
        {**dash, "panels": [{**dash["panels"][0], "targets": []}]},
        {**dash, "uid": "x" * 41},
        {k: v for k, v in dash.items() if k != "schemaVersion"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, DASHBOARD_SCHEMA)


@pytest.mark.prometheus
def test_every_panel_and_annotation_query_parses(tmp_path: Path) -> None:
    rules = []
    for source in ("local", "istio", "seldon"):
        dash = grafana_dashboard("acme-ml", "staging", FRAUD, source)
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
        exprs.append(dash["annotations"]["list"][0]["expr"])
        for i, e in enumerate(exprs):
            rules.append({"record": f"mlserve:check_{source}_{i}", "expr": e.replace("$__rate_interval", "1m")})
    path = tmp_path / "panels.yml"
    path.write_text(dump_yaml({"groups": [{"name": "panels", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in check_rules([path]).stdout


def _docs(env: str) -> list[dict[str, Any]]:
    files = render_files(example(), env)["kubernetes"]
    out = []
    for path, text in files.items():
        out += [dict(d, _file=path) for d in yaml.safe_load_all(text) if d]
    return out


@pytest.mark.parametrize(("env", "workload"), [("staging", "InferenceService"), ("prod", "SeldonDeployment")])
def test_rendered_rules_dashboards_and_collector(env: str, workload: str) -> None:
    docs = _docs(env)
    rules = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PrometheusRule"}
    assert set(rules) == {"mlserve-fraud", "mlserve-summarize"}
    assert rules["mlserve-fraud"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"] for g in rules["mlserve-fraud"]["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == {
        "MlserveErrorBudgetBurn",
        "MlserveLatencyBudgetBurn",
        "MlserveInputDrift",
        "MlservePredictionDrift",
    }
    summarize = {r.get("alert") for g in rules["mlserve-summarize"]["spec"]["groups"] for r in g["rules"]}
    assert "MlserveInputDrift" not in summarize  # no monitoring table on that endpoint
    boards = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(boards) == 2
    for board in boards:
        (text,) = board["data"].values()
        jsonschema.validate(json.loads(text), DASHBOARD_SCHEMA)
    # the payload logger of every fraud version posts to the collector's Service
    ns = "ml-staging" if env == "staging" else "ml-prod"
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "mlserve-drift-fraud")
    deploy = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlserve-drift-fraud")
    assert service["spec"]["selector"] == deploy["spec"]["template"]["metadata"]["labels"]
    assert (
        deploy["spec"]["replicas"] == 1
        and "mlserve.monitoring.collector" in deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    loggers = []
    for d in docs:
        if d["kind"] == "InferenceService" and d["metadata"]["labels"]["mlserve.io/endpoint"] == "fraud":
            loggers.append(d["spec"]["predictor"]["logger"])
        if (
            d["kind"] == "SeldonDeployment"
            and d["metadata"]["name"] == "fraud"
            and d["_file"].startswith("kubernetes/endpoints")
        ):
            loggers += [p["graph"]["logger"] for p in d["spec"]["predictors"]]
    assert loggers and all(lg["mode"] == "all" for lg in loggers)
    assert {lg["url"] for lg in loggers} == {f"http://mlserve-drift-fraud.{ns}.svc.cluster.local/log/fraud/v1"}
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "mlserve-drift-fraud")
    assert json.loads(config["data"]["profile.json"])["format"] == "mlserve.profile/v1"
    assert json.loads(config["data"]["collector.json"])["versions"] == ["v1", "v2"]


def test_platform_layer_lets_grafana_find_dashboards_in_every_namespace() -> None:
    releases = render_files(example(), "staging")["platform"]["terraform/platform/releases.tf"]
    assert 'searchNamespace = "ALL"' in releases and 'label           = "grafana_dashboard"' in releases


def test_example_profile_is_what_init_writes() -> None:
    from mlserve.monitoring.profile import load_profile
    from mlserve.scaffold import reference_profile

    assert (REPO / "profiles" / "fraud.json").read_text() == reference_profile()
    prof = load_profile(REPO / "profiles" / "fraud.json")
    assert len(prof.features) == 8 and prof.prediction is not None and prof.prediction.centres == (0.0, 1.0)


# -- the collector --------------------------------------------------------------------------


def _collector(tmp_path: Path) -> tuple[Collector, Any]:
    cfg = {
        "endpoint": "fraud",
        "baseline": "v1",
        "versions": ["v1", "v2"],
        "monitoring": {"profile": str(REPO / "profiles" / "fraud.json"), "window": 60, "slots": 6, "min_samples": 50},
    }
    path = tmp_path / "collector.json"
    path.write_text(json.dumps(cfg))
    c = Collector(CollectorConfig.load(path))
    return c, app(c)


def test_collector_pairs_logged_requests_and_responses(tmp_path: Path) -> None:
    collector, asgi = _collector(tmp_path)
    rng = np.random.default_rng(2)

    async def go() -> list[str]:
        results = []
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            for i in range(120):
                req = {
                    "inputs": [
                        {
                            "name": "input-0",
                            "shape": [1, 8],
                            "datatype": "FP32",
                            "data": (rng.normal(size=8) + 3).tolist(),
                        }
                    ]
                }
                resp = {"outputs": [{"name": "predict", "shape": [1, 1], "data": [1]}]}
                events = [
                    ("org.kubeflow.serving.inference.request", req),
                    ("org.kubeflow.serving.inference.response", resp),
                ]
                if i % 2:
                    events.reverse()  # the response may be logged first
                for ce_type, body in events:
                    r = await client.post(
                        "/log/fraud/v2",
                        json=body,
                        headers={"ce-id": f"id-{i}", "ce-type": ce_type, "ce-specversion": "1.0"},
                    )
                    results.append(r.json()["result"])
            bad = await client.post("/log/fraud/v2", json={}, headers={"ce-type": "x.request"})
            assert bad.status_code == 400
            assert (await client.post("/log/other/v1", json={}, headers={"ce-id": "1"})).status_code == 404
            text = (await client.get("/metrics")).text
            assert 'mlserve_drift_psi{endpoint="fraud",feature="input-0[0]",kind="input",variant="v2"}' in text
            assert 'mlserve_predictions_total{class="positive",endpoint="fraud",variant="v2"} 120.0' in text
            assert (await client.get("/healthz")).json() == {"ok": True, "pending": 0, "dropped": 0}
        return results

    results = asyncio.run(go())
    assert results.count("observed") == 120 and results.count("pending") == 120 and not collector.pending
    psi = [s.psi for s in collector.monitor.drift("v2") if s.kind == "input"]
    assert len(psi) == 8 and min(psi) > 0.5  # inputs shifted by 3


def test_collector_forgets_unpaired_events(tmp_path: Path) -> None:
    collector, _ = _collector(tmp_path)
    now = [0.0]
    collector.clock = lambda: now[0]
    collector.event("v1", "a", "x.request", b"{}")
    now[0] = 120.0
    collector.event("v1", "b", "x.request", b"{}")
    assert list(collector.pending) == ["b"] and collector.dropped == 1
