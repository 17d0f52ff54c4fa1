"""Limits, failures and the admin API of the real gateway process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mlserve.errors import TargetError
from mlserve.local.admin_client import LocalGatewayClient
from mlserve.local.gateway_config import Fault, Shadow
from tests.gateway.conftest import REPO, Procs, endpoint, gateway_config, payload, start_gateway
from tests.gateway.load import fire


def closed_port_url() -> str:
    """A loopback URL where nothing listens (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_limits_and_failures(procs: Procs) -> None:
    up = procs.upstream()
    slow = procs.upstream(model="slow", delay_ms=2000)
    dead_a, dead_b = closed_port_url(), closed_port_url()
    cfg = gateway_config(
        procs.tmp,
        {
            "fraud": endpoint({"v1": up, "v2": dead_a}, {"v1": 50, "v2": 50}),
            "slow": endpoint({"v1": slow}, {"v1": 100}),
            "gone": endpoint({"v1": dead_a, "v2": dead_b}, {"v1": 50, "v2": 50}),
        },
        max_body_bytes=4096,
        upstream_timeout=0.3,
    )
    gw = start_gateway(procs, cfg)
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        r = c.post("/v2/models/fraud/infer", content=b"{" + b" " * 5000 + b"}")
        assert r.status_code == 413 and "4096" in r.json()["error"]
        r = c.post("/v2/models/fraud/infer", content=b'{"inputs": [')
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        r = c.post("/v2/models/fraud/infer", json=[1, 2])
        assert r.status_code == 400 and "JSON object" in r.json()["error"]
        r = c.post("/v2/models/nope/infer", json=payload())
        assert r.status_code == 404 and "unknown endpoint 'nope'" in r.json()["error"]
        r = c.post("/v2/models/fraud/versions/v9/infer", json=payload())
        assert r.status_code == 404 and "v9" in r.json()["error"]
        r = c.post("/v2/models/slow/infer", json=payload())
        assert r.status_code == 504 and r.headers["x-mlserve-variant"] == "v1"
        r = c.post("/v2/models/gone/infer", json=payload())
        assert r.status_code == 503 and "could answer" in r.json()["error"]
        # pinned to a version that is down: no retry elsewhere
        r = c.post("/v2/models/fraud/versions/v2/infer", json=payload())
        assert r.status_code == 503
        r = c.post("/v2/models/fraud/versions/v1/infer", json=payload())
        assert r.status_code == 200 and r.headers["x-mlserve-variant"] == "v1"
        # metadata goes to the baseline
        r = c.get("/v2/models/fraud")
        assert r.status_code == 200 and r.json()["name"] == "fraud"
        assert c.get("/v2/models/fraud/ready").status_code == 200
        assert c.get("/v2/health/live").status_code == 200
        assert c.get("/v2/health/ready").status_code == 200
    # v2 refuses connections: every request is retried once on v1 and succeeds
    results = fire(f"{gw.url}/v2/models/fraud/infer", 200, 8)
    assert {(s, v) for s, v, _ in results} == {(200, "v1")}
    refused = gw.count("mlserve_requests_total", endpoint="fraud", variant="v2", code="connect_error")
    assert 50 < refused < 150  # about half were routed to v2 first
    assert gw.count("mlserve_requests_total", endpoint="fraud", variant="v1", code="200") == 201  # +1 pinned
    assert gw.count("mlserve_requests_total", endpoint="slow", variant="v1", code="504") == 1
    assert gw.count("mlserve_requests_total", endpoint="gone", code="connect_error") == 2


def test_admin_api_needs_the_token_and_validates(procs: Procs) -> None:
    up = procs.upstream()
    gw = start_gateway(procs, gateway_config(procs.tmp, {"fraud": endpoint({"v1": up, "v2": up}, {"v1": 100})}))
    with httpx.Client(base_url=gw.admin_url) as c:
        for method, path in (
            ("GET", "/admin/state"),
            ("GET", "/admin/health"),
            ("PUT", "/admin/endpoints/fraud/traffic"),
            ("PUT", "/admin/endpoints/fraud/faults/v2"),
        ):
            assert c.request(method, path).status_code == 401
            assert c.request(method, path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.request(method, path, headers={"Authorization": gw.token}).status_code == 401
        auth = {"Authorization": f"Bearer {gw.token}"}
        cases = [
            ({"weights": {"v1": 90, "v2": 20}}, "must sum to 100 (got 110)"),
            ({"weights": {"v1": 90, "v3": 10}}, "traffic.weights.v3: names no version"),
            ({"weights": {"v1": 50.5, "v2": 49.5}}, "traffic.weights.v1: must be an integer"),
            ({"weights": {"v1": 100}, "mode": "random"}, "traffic.mode: must be one of split, sticky"),
            ({"weights": {"v1": 100}, "shadow": {"version": "v7"}}, "traffic.shadow.version: names no version"),
            ({"weights": {"v1": 100}, "colour": 1}, "traffic.colour: unknown key"),
            ({"mode": "split"}, "traffic.weights: is required"),
        ]
        for body, message in cases:
            r = c.put("/admin/endpoints/fraud/traffic", json=body, headers=auth)
            assert r.status_code == 400 and message in r.json()["error"], (body, r.text)
        r = c.put("/admin/endpoints/fraud/traffic", content=b"{nope", headers=auth)
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        r = c.put("/admin/endpoints/nope/traffic", json={"weights": {"v1": 100}}, headers=auth)
        assert r.status_code == 404
        r = c.put("/admin/endpoints/fraud/faults/v2", json={"error_rate": 2}, headers=auth)
        assert r.status_code == 400 and "error_rate" in r.json()["error"]
        r = c.put("/admin/endpoints/fraud/faults/v9", json={}, headers=auth)
        assert r.status_code == 404
    # nothing above changed the traffic
    with gw.admin() as admin:
        state = admin.state()
        assert dict(state.endpoints["fraud"].traffic.weights) == {"v1": 100, "v2": 0}
        assert state.endpoints["fraud"].generation == 0
        assert admin.health()["status"] == "ok"
        with pytest.raises(TargetError, match="must sum to 100"):
            admin.set_traffic("fraud", {"v1": 10})
        ep = admin.set_traffic("fraud", {"v1": 75, "v2": 25}, shadow=Shadow("v2", 10))
        assert ep.generation == 1 and ep.versions["v2"].weight == 25
        ep = admin.set_fault("fraud", "v2", Fault(latency_ms=5, error_rate=0.5))
        assert ep.versions["v2"].fault == Fault(latency_ms=5, error_rate=0.5)
    saved = json.loads((procs.tmp / ".mlserve" / "local" / "traffic.json").read_text())
    assert saved["endpoints"]["fraud"]["weights"] == {"v1": 75, "v2": 25}
    with pytest.raises(TargetError, match="refused the admin token"):
        LocalGatewayClient(gw.admin_url, "not-the-token").state()


def test_client_says_when_the_gateway_is_down() -> None:
    with pytest.raises(TargetError, match="not running") as info:
        LocalGatewayClient(closed_port_url(), "x" * 20).state()
    assert "mlserve deploy --env local" in str(info.value)


def _run_gateway(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlserve.local.gateway", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_bad_config_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    ep = {"fraud": endpoint({"v1": "http://127.0.0.1:9"}, {"v1": 100})}
    cfg = gateway_config(tmp_path, ep)
    data = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**data, "host": "0.0.0.0"}))
    out = _run_gateway(cfg)
    assert out.returncode == 2 and "host: the local gateway listens on 127.0.0.1 only" in out.stderr
    cfg.write_text(json.dumps({**data, "endpoints": {"fraud": {**ep["fraud"], "baseline": "v3"}}}))
    out = _run_gateway(cfg)
    assert out.returncode == 2 and "endpoints.fraud.baseline: names no version" in out.stderr
    # a token file others can read is refused
    token = Path(data["admin_token_file"])
    cfg.write_text(json.dumps(data))
    token.chmod(0o644)
    out = _run_gateway(cfg)
    assert out.returncode == 2 and "chmod 600" in out.stderr
    token.chmod(0o600)
    # a port in use
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        cfg.write_text(json.dumps({**data, "port": s.getsockname()[1]}))
        out = _run_gateway(cfg)
    assert out.returncode == 1 and "cannot listen on 127.0.0.1" in out.stderr
    assert "Traceback" not in out.stderr


def test_slow_client_is_cut_off(procs: Procs) -> None:
    up = procs.upstream()
    gw = start_gateway(procs, gateway_config(procs.tmp, {"fraud": endpoint({"v1": up}, {"v1": 100})}, body_timeout=0.5))
    port = int(gw.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v2/models/fraud/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        answer = b""
        while not answer.endswith(b"}"):  # status line and body may come in separate segments
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"not received within 0.5 s" in answer
    # the gateway still serves others
    assert httpx.post(f"{gw.url}/v2/models/fraud/infer", json=payload()).status_code == 200
