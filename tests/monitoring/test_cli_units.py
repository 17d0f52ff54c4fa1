"""`mlserve monitor`, `mlserve dashboard` and the alerts in `mlserve status`, without a live
deployment: argument errors, the monitor's sample on fixed query answers, the dashboard
server's API and page (against a stand-in Prometheus on loopback), the status table."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from mlserve.monitoring import dashboard_server as ds
from mlserve.monitoring.alerts import flatten
from mlserve.monitoring.rules import EndpointRules
from mlserve.monitoring.view import sample
from tests.conftest import run_cli


def test_monitor_and_dashboard_need_a_deployment_and_valid_options(project: Path) -> None:
    res = run_cli("monitor", "fraud", cwd=project)
    assert res.exit_code == 1 and "is not deployed locally" in res.stderr
    res = run_cli("monitor", "nope", cwd=project)
    assert res.exit_code == 1 or res.exit_code == 2
    res = run_cli("dashboard", "--env", "staging", cwd=project)
    assert res.exit_code == 2 and "Grafana dashboards" in res.stderr
    res = run_cli("dashboard", cwd=project)
    assert res.exit_code == 1 and "not deployed locally" in res.stderr


def test_monitor_sample_maps_answers_to_versions() -> None:
    answers = {
        "rate(mlserve_requests_total": [({"variant": "v1"}, 120.0), ({"variant": "v2"}, 13.5)],
        "histogram_quantile(0.5": [({"variant": "v1"}, 0.012)],
        "histogram_quantile(0.99": [({"variant": "v1"}, 0.080)],
        "mlserve_traffic_weight": [({"variant": "v1"}, 90.0), ({"variant": "v2"}, 10.0)],
        "topk by (variant)": [({"variant": "v2", "feature": "input-0[3]"}, 0.41)],
        "max by (variant) (mlserve_drift_psi": [({"variant": "v2"}, 0.05)],
        "sum by (variant) (rate(mlserve_predictions_total": [({"variant": "v1"}, 0.1)],
    }

    def query(expr: str) -> list[tuple[dict[str, str], float]]:
        if " / " in expr and expr.startswith(
            'sum by (endpoint, variant) (rate(mlserve_requests_total{endpoint="fraud",code'
        ):
            return [({"variant": "v2"}, 0.02)]  # the error ratio
        for key, got in answers.items():
            if expr.startswith(key) or key in expr.split("\n")[0][:60]:
                return got
        return []

    s = sample(
        query, "fraud", ["v1", "v2"], window=30, drift_threshold=0.2, alerts=[{"endpoint": "other"}], clock=lambda: 5.0
    )
    rows = {r.version: r for r in s.versions}
    assert rows["v1"].weight == 90.0 and rows["v1"].requests_per_second == 120.0
    assert rows["v1"].p50_seconds == 0.012 and rows["v1"].p99_seconds == 0.080
    assert rows["v2"].error_ratio == 0.02 and rows["v2"].input_drift_psi == 0.41
    assert rows["v2"].input_drift_feature == "input-0[3]" and rows["v2"].prediction_drift_psi == 0.05
    assert rows["v1"].positive_share == 0.1 and s.alerts == ()


class _FakeProm(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        q = parse_qs(urlsplit(self.path).query)
        _FakeProm.seen.append(q.get("query", [""])[0])
        start = float(q.get("start", ["0"])[0])
        body = {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [
                    {
                        "metric": {"variant": "v1", "feature": "input-0[0]"},
                        "values": [[start, "1"], [start + 5, "NaN"], [start + 10, "2"]],
                    }
                ],
            },
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_prom() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeProm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_dashboard_server_serves_the_panels_own_queries_only(fake_prom: str) -> None:
    rules = [EndpointRules("fraud", 0.01, 0.25, drift=True)]
    server = ds.start(0, fake_prom, ds.boards_for(rules), "mlserve / t (local)", 900)
    try:
        with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as c:
            page = c.get("/")
            assert page.status_code == 200 and page.text.count('class="panel"') == 9
            assert "<script src" not in page.text and "https://" not in page.text  # nothing from outside
            meta = c.get("/api/panels").json()["fraud"]
            assert [p["key"] for p in meta][:4] == ["traffic", "weights", "latency", "errors"]
            _FakeProm.seen.clear()
            got = c.get("/api/panel/fraud/1?seconds=600").json()
            assert got["series"] == [
                {
                    "name": "v1",
                    "points": [[got["series"][0]["points"][0][0], 1.0], [got["series"][0]["points"][1][0], 2.0]],
                }
            ]
            assert _FakeProm.seen == [
                'sum by (endpoint, variant) (rate(mlserve_requests_total{endpoint="fraud"}[30s]))'
            ]
            assert c.get("/api/panel/fraud/99").status_code == 404
            assert c.get("/api/panel/other/1").status_code == 404
            assert c.get("/api/annotations/fraud").json()["marks"]
    finally:
        server.shutdown()
        server.server_close()


def test_dashboard_server_says_when_prometheus_is_down() -> None:
    server = ds.start(0, "http://127.0.0.1:9", ds.boards_for([EndpointRules("fraud", 0.01, None)]), "t", 900)
    try:
        r = httpx.get(f"{server.url}api/panel/fraud/1", timeout=10, trust_env=False)
        assert r.status_code == 502 and "did not answer" in r.json()["error"]
    finally:
        server.shutdown()
        server.server_close()


def test_status_table_lists_firing_alerts_first() -> None:
    import io

    from rich.console import Console

    from mlserve.cli.commands.status import _alerts

    raw = [
        {
            "labels": {
                "alertname": "MlserveInputDrift",
                "severity": "ticket",
                "endpoint": "fraud",
                "variant": "v2",
                "feature": "input-0[0]",
            },
            "annotations": {"summary": "fraud/v2: input drift on input-0[0]"},
            "state": "pending",
            "activeAt": "2026-01-01T00:00:00Z",
        },
        {
            "labels": {
                "alertname": "MlserveErrorBudgetBurn",
                "severity": "page",
                "endpoint": "fraud",
                "variant": "v1",
                "long_window": "1h",
                "short_window": "5m",
            },
            "annotations": {"summary": "fraud/v1 burns its availability error budget"},
            "state": "firing",
            "activeAt": "2026-01-01T00:01:00Z",
        },
    ]
    out = io.StringIO()
    _alerts(Console(file=out, width=200, no_color=True), [flatten(a) for a in raw])
    text = out.getvalue()
    assert "Firing alerts: 1 (1 pending)" in text and "MlserveErrorBudgetBurn" in text and "long_window=1h" in text
    assert "MlserveInputDrift" not in text  # pending ones are counted, not listed
    out = io.StringIO()
    _alerts(Console(file=out, width=200), [])
    assert "none firing" in out.getvalue()
