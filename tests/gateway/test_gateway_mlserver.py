"""End to end with real MLServer processes serving the scaffolded sklearn models."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from mlserve.local.gateway_config import Shadow
from tests.gateway.conftest import Procs, endpoint, gateway_config, start_gateway


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mlserver(procs: Procs, model: Path, version: str) -> str:
    server_dir = procs.tmp / "servers" / version
    server_dir.mkdir(parents=True)
    http = free_port()
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": http,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": 0,
    }
    model_settings = {
        "name": "fraud",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model), "version": version},
    }
    (server_dir / "settings.json").write_text(json.dumps(settings))
    (server_dir / "model-settings.json").write_text(json.dumps(model_settings))
    mlserver = Path(sys.executable).parent / "mlserver"
    procs.popen([str(mlserver), "start", str(server_dir)], cwd=server_dir, quiet=True)
    return f"http://127.0.0.1:{http}"


def wait_ready(procs: Procs, urls: list[str]) -> None:
    """Both servers start at once (each takes seconds to import and load its model)."""
    deadline = time.monotonic() + 90
    pending = list(urls)
    while pending:
        assert time.monotonic() < deadline, f"not ready in 90 s: {pending}"
        assert all(p.poll() is None for p in procs.procs), "an mlserver process exited"
        for url in list(pending):
            try:
                if httpx.get(f"{url}/v2/models/fraud/ready", timeout=1).status_code == 200:
                    pending.remove(url)
            except httpx.HTTPError:
                pass
        time.sleep(0.25)


@pytest.mark.e2e
def test_gateway_in_front_of_real_mlserver(procs: Procs, scaffolded: Path) -> None:
    v1 = start_mlserver(procs, scaffolded / "models" / "fraud" / "v1" / "model.joblib", "v1")
    v2 = start_mlserver(procs, scaffolded / "models" / "fraud" / "v2" / "model.joblib", "v2")
    wait_ready(procs, [v1, v2])
    gw = start_gateway(
        procs, gateway_config(procs.tmp, {"fraud": endpoint({"v1": v1, "v2": v2}, {"v1": 50, "v2": 50})})
    )
    payloads = [json.loads(line) for line in (scaffolded / "payloads" / "fraud.jsonl").read_text().splitlines()]
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        for p in payloads * 2:
            r = c.post("/v2/models/fraud/infer", json=p)
            assert r.status_code == 200, r.text
            assert r.json()["outputs"][0]["data"], r.text
            seen[r.headers["x-mlserve-variant"]] += 1
        assert set(seen) == {"v1", "v2"}
        meta = c.get("/v2/models/fraud")
        assert meta.status_code == 200 and meta.json()["name"] == "fraud"
        with gw.admin() as admin:
            state = admin.state()
            assert all(v.healthy for v in state.endpoints["fraud"].versions.values())
            admin.set_traffic("fraud", {"v1": 100}, shadow=Shadow("v2", 100))
        for p in payloads:
            r = c.post("/v2/models/fraud/infer", json=p)
            assert r.status_code == 200 and r.headers["x-mlserve-variant"] == "v1"
    for v in ("v1", "v2"):
        assert gw.count("mlserve_requests_total", endpoint="fraud", variant=v, code="200") == seen[v] + (
            len(payloads) if v == "v1" else 0
        )
    deadline = time.monotonic() + 10
    while gw.count("mlserve_shadow_agreement_total", variant="v2") < len(payloads):
        assert time.monotonic() < deadline, gw.count("mlserve_shadow_agreement_total", variant="v2")
        time.sleep(0.1)
    # two different models: both answers compared, each counted as agreeing or not
    assert gw.count("mlserve_shadow_requests_total", variant="v2", code="200") == len(payloads)
    assert gw.count("mlserve_shadow_agreement_total", variant="v2", agree="true") > 0
