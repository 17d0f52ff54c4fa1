"""The example project on the local target: real MLServer processes, the gateway, a real Prometheus.

One deploy for the whole module (tests run in file order and build on each other):
status, idempotent redeploy, a 90/10 split checked by chi-square and against
Prometheus, sticky and shadow through the deployed gateway, a changed version
restarting alone, adoption after the supervisor is killed with -9, and `down`
cleaning up after a second -9.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlserve.local.ports import port_in_use
from mlserve.local.state import pid_alive
from tests.conftest import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]


def _desired(root: Path) -> dict[str, Any]:
    return json.loads((root / ".mlserve/local/desired.json").read_text())


def _state(root: Path) -> dict[str, Any]:
    return json.loads((root / ".mlserve/local/state.json").read_text())


def _pids(root: Path) -> dict[str, tuple[int, int]]:
    return {n: (r["pid"], r["start_time"]) for n, r in _state(root)["processes"].items()}


def _payloads(root: Path) -> list[str]:
    return (root / "payloads/fraud.jsonl").read_text().splitlines()


def _send(url: str, bodies: list[str], headers: list[dict[str, str]] | None = None) -> list[tuple[int, str]]:
    """POST every body to the gateway with a few threads; (status, x-mlserve-variant) each."""
    hdrs = headers or [{} for _ in bodies]

    def one(args: tuple[httpx.Client, str, dict[str, str]]) -> tuple[int, str]:
        client, body, h = args
        r = client.post(f"{url}/v2/models/fraud/infer", content=body, headers={"content-type": "application/json", **h})
        return r.status_code, r.headers.get("x-mlserve-variant", "")

    with httpx.Client(timeout=10, trust_env=False) as client, ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, [(client, b, h) for b, h in zip(bodies, hdrs, strict=True)]))


def _gateway_counts(url: str, metric: str = "mlserve_requests_total") -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=5, trust_env=False).text
    out: Counter[str] = Counter()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == metric and s.labels.get("endpoint") == "fraud" and s.labels.get("code", "200") == "200":
                out[s.labels["variant"]] += s.value
    return dict(out)


def _prom_counts(prom: str) -> dict[str, float]:
    q = 'sum by (variant) (mlserve_requests_total{endpoint="fraud",code="200"})'
    data = httpx.get(f"{prom}/api/v1/query?query={urllib.parse.quote(q)}", timeout=5, trust_env=False).json()
    assert data["status"] == "success", data
    return {r["metric"]["variant"]: float(r["value"][1]) for r in data["data"]["result"]}


def test_deploy_starts_everything_healthy(deployed: Path) -> None:
    res = run_cli("--json", "status", cwd=deployed)
    assert res.exit_code == 0, res.output
    s = res.json["result"]
    assert s["deployed"] and s["env"] == "local" and s["supervisor_alive"]
    rows = {r["name"]: r for r in s["rows"]}
    assert set(rows) == {"fraud/v1", "fraud/v2", "gateway", "prometheus"}
    for r in rows.values():
        assert r["status"] == "healthy" and r["health"] == "ok" and pid_alive(r["pid"]), r
    assert rows["fraud/v1"]["weight"] == 100 and rows["fraud/v2"]["weight"] == 0
    assert s["traffic"]["fraud"]["mode"] == "split"
    for url in (s["gateway_url"], s["prometheus_url"]):
        assert url.startswith("http://127.0.0.1:")
    # Prometheus scrapes every target (give it a scrape interval or two).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        s = run_cli("--json", "status", cwd=deployed).json["result"]
        targets = {r["name"]: r["prometheus_target"] for r in s["rows"] if r["kind"] != "prometheus"}
        if set(targets.values()) == {"up"}:
            break
        time.sleep(0.5)
    assert set(targets.values()) == {"up"}, targets
    # Nothing listens beyond loopback (every process group the supervisor started).
    from tests.local.netcheck import is_loopback, listening_addresses

    groups = {pid for pid, _ in _pids(deployed).values()}
    listens = listening_addresses(groups)
    assert {os.getpgid(pid) for pid in listens} == groups
    assert [a for addrs in listens.values() for a in addrs if not is_loopback(a)] == []
    human = run_cli("status", cwd=deployed)
    assert "fraud" in human.stdout and "100%" in human.stdout and s["gateway_url"] in human.stdout
    token = (deployed / ".mlserve/admin-token").read_text().strip()
    assert token not in human.output and token not in res.output
    assert (deployed / ".mlserve/admin-token").stat().st_mode & 0o777 == 0o600


def test_second_deploy_is_a_no_op(deployed: Path) -> None:
    before = _pids(deployed)
    res = run_cli("--json", "deploy", "--env", "local", cwd=deployed)
    assert res.exit_code == 0, res.output
    r = res.json["result"]
    assert r["changed"] is False and r["started"] == [] and r["restarted"] == []
    assert sorted(r["unchanged"]) == ["fraud/v1", "fraud/v2", "gateway", "prometheus"]
    assert "nothing changed" in res.stderr
    assert _pids(deployed) == before


def test_weighted_split_matches_and_prometheus_agrees(deployed: Path) -> None:
    from scipy.stats import chisquare

    from mlserve.project import load_project
    from mlserve.targets import open_target

    target = open_target(load_project(deployed), "local")
    st = target.set_traffic("fraud", {"v1": 90, "v2": 10})
    assert st.traffic.weights == {"v1": 90, "v2": 10}
    url = target.gateway_url()
    payloads = _payloads(deployed)
    n = 2000
    results = _send(url, [payloads[i % len(payloads)] for i in range(n)])
    assert all(code == 200 for code, _ in results), Counter(code for code, _ in results)
    seen = Counter(v for _, v in results)
    assert set(seen) == {"v1", "v2"}
    p = chisquare([seen["v1"], seen["v2"]], f_exp=[0.9 * n, 0.1 * n]).pvalue
    assert p > 0.001, (seen, p)
    gateway = _gateway_counts(url)
    assert gateway["v1"] >= seen["v1"] and gateway["v2"] >= seen["v2"]
    # After a scrape, Prometheus holds exactly the gateway's counters.
    prom = target.prometheus_url()
    deadline = time.monotonic() + 20
    got: dict[str, float] = {}
    while time.monotonic() < deadline:
        got = _prom_counts(prom)
        if got == gateway:
            break
        time.sleep(0.5)
    assert got == gateway, (got, gateway)


def test_sticky_and_shadow_through_the_deployed_gateway(deployed: Path) -> None:
    from mlserve.project import load_project
    from mlserve.targets import open_target

    target = open_target(load_project(deployed), "local")
    url = target.gateway_url()
    body = _payloads(deployed)[0]
    target.set_traffic("fraud", {"v1": 50, "v2": 50}, mode="sticky")
    keys = [f"user-{i}" for i in range(100)]
    results = _send(url, [body] * 300, [{"x-user-id": k} for k in keys * 3])
    by_key: dict[str, set[str]] = {}
    for (code, variant), key in zip(results, keys * 3, strict=True):
        assert code == 200
        by_key.setdefault(key, set()).add(variant)
    assert all(len(v) == 1 for v in by_key.values())
    assert {next(iter(v)) for v in by_key.values()} == {"v1", "v2"}

    before = sum(_gateway_counts(url, "mlserve_shadow_requests_total").values())
    target.set_traffic("fraud", {"v1": 100, "v2": 0}, shadow_version="v2", shadow_percent=100)
    results = _send(url, [body] * 50)
    assert {v for _, v in results} == {"v1"} and {c for c, _ in results} == {200}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mirrored = sum(_gateway_counts(url, "mlserve_shadow_requests_total").values()) - before
        if mirrored >= 50:
            break
        time.sleep(0.2)
    assert mirrored >= 50
    agreement = _gateway_counts(url, "mlserve_shadow_agreement_total")
    assert sum(agreement.values()) >= 50


def test_changed_version_restarts_only_that_process(deployed: Path) -> None:
    before = _pids(deployed)
    model = deployed / "models/fraud/v2/model.joblib"
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
    res = run_cli("--json", "deploy", cwd=deployed)
    assert res.exit_code == 0, res.output
    r = res.json["result"]
    assert r["changed"] is True and r["restarted"] == ["fraud/v2"] and r["started"] == []
    after = _pids(deployed)
    for name in ("fraud/v1", "gateway", "prometheus"):
        assert after[name] == before[name]
    assert after["fraud/v2"] != before["fraud/v2"] and not pid_alive(*before["fraud/v2"])
    # The gateway kept the live traffic of the rollout (shadow set by the previous test).
    from mlserve.project import load_project
    from mlserve.targets import open_target

    state = open_target(load_project(deployed), "local").traffic()
    assert state.endpoints["fraud"].traffic.shadow is not None


def test_logs_show_the_model_server(deployed: Path) -> None:
    res = run_cli("logs", "fraud", "v1", "--lines", "200", cwd=deployed)
    assert res.exit_code == 0 and "Uvicorn running on http://127.0.0.1" in res.stdout
    res = run_cli("--json", "logs", "fraud", cwd=deployed)
    assert [x["name"] for x in res.json["result"]["logs"]] == ["fraud/v1", "fraud/v2"]
    assert "started" in run_cli("logs", "supervisor", cwd=deployed).stdout


def test_new_supervisor_adopts_processes_after_kill_9(deployed: Path) -> None:
    before = _pids(deployed)
    sup = _state(deployed)["supervisor"]
    os.kill(sup["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(sup["pid"], sup["start_time"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    res = run_cli("--json", "deploy", cwd=deployed)
    assert res.exit_code == 0, res.output
    r = res.json["result"]
    assert r["started"] == [] and r["restarted"] == []
    assert _pids(deployed) == before  # adopted, not restarted
    assert _state(deployed)["supervisor"]["pid"] != sup["pid"]


def test_down_after_supervisor_kill_9_leaves_no_process(deployed: Path) -> None:
    pids = _pids(deployed)
    ports = [p for spec in _desired(deployed)["processes"] for p in spec["ports"].values()]
    sup = _state(deployed)["supervisor"]
    os.kill(sup["pid"], signal.SIGKILL)
    res = run_cli("--json", "down", cwd=deployed)
    assert res.exit_code == 0, res.output
    assert res.json["result"]["leftover"] == []
    for name, (pid, start) in pids.items():
        assert not pid_alive(pid, start), name
    assert not pid_alive(sup["pid"], sup["start_time"])
    assert [p for p in ports if port_in_use(p)] == []
    assert not (deployed / ".mlserve/local/state.json").exists()
    res = run_cli("status", cwd=deployed)
    assert res.exit_code == 0 and "not deployed" in res.stdout
