"""Hot reconfiguration of a running gateway (real processes on loopback): a new config file
applied by ``POST /admin/reload`` or SIGHUP, in-flight requests finishing on the upstream they
started on, and a listening socket handed from one gateway process to the next (SIGUSR2)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlserve.errors import TargetError
from mlserve.local.gateway_config import Fault
from tests.gateway.conftest import (
    REPO,
    GatewayProc,
    Procs,
    endpoint,
    gateway_config,
    payload,
    read_ready,
    start_gateway,
)


def _rewrite(gw: GatewayProc, change: Any) -> None:
    cfg = json.loads(gw.config_path.read_text())
    change(cfg)
    cfg["generation"] = int(cfg.get("generation", 0)) + 1
    tmp = gw.config_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cfg))
    os.replace(tmp, gw.config_path)


def _post(url: str, client: httpx.Client | None = None, **kw: Any) -> httpx.Response:
    return (client or httpx).post(f"{url}/v2/models/fraud/infer", json=payload(), timeout=10, **kw)


def test_reload_swaps_routes_keeps_weights_and_lets_in_flight_requests_finish(procs: Procs, tmp_path: Path) -> None:
    fast, slow, new = procs.upstream(value=1.0), procs.upstream(value=2.0, delay_ms=1500), procs.upstream(value=3.0)
    cfg = gateway_config(tmp_path, {"fraud": endpoint({"v1": fast, "v2": slow}, {"v1": 100})})
    gw = start_gateway(procs, cfg)
    with gw.admin() as admin:
        admin.set_traffic("fraud", {"v1": 60, "v2": 40})
        admin.set_fault("fraud", "v1", Fault(latency_ms=1))  # a live fault the config does not name
        pid = admin.health()["pid"]
        # a request that takes 1.5 s on v2, started before v2 is removed
        answers: list[httpx.Response] = []
        worker = threading.Thread(
            target=lambda: answers.append(httpx.post(f"{gw.url}/v2/models/fraud/versions/v2/infer", json=payload()))
        )
        worker.start()
        time.sleep(0.4)
        _rewrite(
            gw,
            lambda c: (
                c["endpoints"]["fraud"]["versions"].pop("v2"),
                c["endpoints"]["fraud"]["versions"].__setitem__("v3", new),
                c.__setitem__("max_body_bytes", 2048),
            ),
        )
        result = admin.reload()
        assert result["generation"] == 1 and result["pid"] == pid
        assert "fraud/v2: removed (drained)" in result["changes"] and "fraud/v3: added" in result["changes"]
        assert result["inflight"].get(slow, 0) >= 1  # the old table still holds the slow request
        assert slow not in admin.upstreams()["routed"]
        worker.join(10)
        assert answers and answers[0].status_code == 200 and answers[0].headers["x-mlserve-variant"] == "v2"
        assert admin.upstreams()["inflight"].get(slow, 0) == 0
        state = admin.state(probe=False)
        ep = state.endpoints["fraud"]
        # v2's 40% went to the baseline; v3 starts at 0; the live fault on v1 was kept
        assert dict(ep.traffic.weights) == {"v1": 100, "v3": 0}
        assert ep.versions["v1"].fault.latency_ms == 1
        assert state.config_generation == 1 and state.reloads == 1 and state.pid == pid
        # the new limit applies to the next request
        big = {"inputs": [{"name": "x", "shape": [1, 600], "datatype": "FP32", "data": [0.5] * 600}]}
        assert httpx.post(f"{gw.url}/v2/models/fraud/infer", json=big).status_code == 413
        assert _post(gw.url).json()["outputs"][0]["data"] == [1.0]
        admin.set_traffic("fraud", {"v1": 0, "v3": 100})
        assert _post(gw.url).headers["x-mlserve-variant"] == "v3"
        # the weight gauge of the removed arm is gone, the new one is exported
        assert gw.count("mlserve_traffic_weight", endpoint="fraud", variant="v3") == 100
        assert not [k for k in gw.metrics() if k[0] == "mlserve_traffic_weight" and ("variant", "v2") in k[1]]


def test_config_faults_replace_live_ones_only_when_the_config_changes_them(procs: Procs, tmp_path: Path) -> None:
    a, b = procs.upstream(), procs.upstream(value=2.0)
    cfg = gateway_config(tmp_path, {"fraud": endpoint({"v1": a, "v2": b}, {"v1": 100})})
    gw = start_gateway(procs, cfg)
    with gw.admin() as admin:
        admin.set_fault("fraud", "v2", Fault(error_rate=0.5))
        _rewrite(gw, lambda c: c["endpoints"]["fraud"].__setitem__("faults", {"v1": {"latency_ms": 5}}))
        admin.reload()
        versions = admin.state(probe=False).endpoints["fraud"].versions
        assert versions["v1"].fault.latency_ms == 5  # the config changed v1's fault: taken
        assert versions["v2"].fault.error_rate == 0.5  # the config left v2 alone: the live one stays
        _rewrite(gw, lambda c: c["endpoints"]["fraud"].__setitem__("faults", {"v2": {"error_rate": 0.1}}))
        admin.reload()
        versions = admin.state(probe=False).endpoints["fraud"].versions
        assert versions["v1"].fault.latency_ms == 0 and versions["v2"].fault.error_rate == 0.1


def test_a_reload_that_needs_a_new_process_or_is_invalid_changes_nothing(procs: Procs, tmp_path: Path) -> None:
    a, b = procs.upstream(), procs.upstream()
    cfg = gateway_config(tmp_path, {"fraud": endpoint({"v1": a, "v2": b}, {"v1": 100})})
    gw = start_gateway(procs, cfg)
    with gw.admin() as admin:
        admin.set_traffic("fraud", {"v1": 70, "v2": 30})
        before = admin.state(probe=False).to_dict()
        _rewrite(gw, lambda c: c.__setitem__("port", 1))
        with pytest.raises(TargetError, match=r"409: port: changing it needs a new gateway process"):
            admin.reload()
        _rewrite(gw, lambda c: (c.__setitem__("port", 0), c["endpoints"]["fraud"].__setitem__("baseline", "v9")))
        with pytest.raises(
            TargetError, match=r"400: config not applied: .*endpoints\.fraud\.baseline: names no version"
        ):
            admin.reload()
        gw.config_path.write_text("{not json")
        with pytest.raises(TargetError, match=r"400: config not applied: .*not valid JSON"):
            admin.reload()
        after = admin.state(probe=False).to_dict()
    assert after["endpoints"] == before["endpoints"] and after["reloads"] == 0
    assert _post(gw.url).status_code == 200


def test_sighup_reloads_the_config_file(procs: Procs, tmp_path: Path) -> None:
    a, b = procs.upstream(), procs.upstream(value=2.0)
    cfg = gateway_config(tmp_path, {"fraud": endpoint({"v1": a}, {"v1": 100})})
    gw = start_gateway(procs, cfg)
    _rewrite(gw, lambda c: c["endpoints"]["fraud"]["versions"].__setitem__("v2", b))
    gw.proc.send_signal(signal.SIGHUP)
    with gw.admin() as admin:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and admin.state(probe=False).reloads == 0:
            time.sleep(0.05)
        state = admin.state(probe=False)
    assert state.reloads == 1 and set(state.endpoints["fraud"].versions) == {"v1", "v2"}
    r = httpx.post(f"{gw.url}/v2/models/fraud/versions/v2/infer", json=payload())
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [2.0]


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _gateway_on(procs: Procs, cfg: Path, data: socket.socket, admin: socket.socket, ready: Path) -> Any:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MLSERVE_LISTEN_FDS": f"http={data.fileno()},admin={admin.fileno()}",
        "MLSERVE_READY_FILE": str(ready),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlserve.local.gateway", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        pass_fds=(data.fileno(), admin.fileno()),
    )
    procs.procs.append(proc)
    return proc


def test_listening_sockets_hand_over_between_processes_without_a_failed_request(procs: Procs, tmp_path: Path) -> None:
    """What the supervisor does when the gateway's own code changes: the sockets stay open in
    the parent, a second gateway serves on them, the first drains (SIGUSR2) and exits."""
    up = procs.upstream()
    cfg = gateway_config(tmp_path, {"fraud": endpoint({"v1": up}, {"v1": 100})})
    data, admin_sock = _listener(), _listener()
    ready = tmp_path / "gateway.ready"
    first = _gateway_on(procs, cfg, data, admin_sock, ready)
    pid1 = read_ready(first)["pid"]
    url = f"http://127.0.0.1:{data.getsockname()[1]}"
    codes: Counter[str] = Counter()
    served_by: Counter[str] = Counter()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(trust_env=False, timeout=10) as c:  # keep-alive connections, reused
            while not stop.is_set():
                try:
                    r = _post(url, c)
                    codes[str(r.status_code)] += 1
                    served_by[r.headers.get("connection", "keep-alive")] += 1
                except httpx.HTTPError as exc:
                    codes[type(exc).__name__] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        second = _gateway_on(procs, cfg, data, admin_sock, ready)
        pid2 = read_ready(second)["pid"]
        assert json.loads(ready.read_text())["pid"] == pid2
        first.send_signal(signal.SIGUSR2)
        first.wait(timeout=20)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert pid2 != pid1 and first.returncode == 0
    assert set(codes) == {"200"} and codes["200"] > 100, codes
    assert served_by["close"] >= 1  # the draining process told its clients to reconnect
    token = Path(json.loads(cfg.read_text())["admin_token_file"]).read_text().strip()
    admin_url = f"http://127.0.0.1:{admin_sock.getsockname()[1]}"
    health = httpx.get(f"{admin_url}/admin/health", headers={"Authorization": f"Bearer {token}"}).json()
    assert health["pid"] == pid2
    data.close()
    admin_sock.close()


def test_a_restart_with_fewer_arms_carries_the_saved_weights_over(procs: Procs, tmp_path: Path) -> None:
    a, b, c = procs.upstream(), procs.upstream(), procs.upstream()
    cfg = gateway_config(tmp_path, {"fraud": endpoint({"v1": a, "v2": b, "v3": c}, {"v1": 100})})
    gw = start_gateway(procs, cfg)
    with gw.admin() as admin:
        admin.set_traffic("fraud", {"v1": 60, "v2": 30, "v3": 10})
    procs.stop(gw.proc)
    _rewrite(gw, lambda cf: cf["endpoints"]["fraud"]["versions"].pop("v3"))
    again = start_gateway(procs, cfg)
    with again.admin() as admin:
        weights = dict(admin.state(probe=False).endpoints["fraud"].traffic.weights)
    assert weights == {"v1": 70, "v2": 30}  # as a reload would have carried them, not reset to 100/0
