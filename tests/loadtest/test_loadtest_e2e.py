"""`mlserve loadtest` against the real local target: MLServer versions, the gateway, Prometheus."""

from __future__ import annotations

import csv
import json
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_cli
from tests.loadtest.conftest import SLOW_MS

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]


def _target(root: Path):  # type: ignore[no-untyped-def]
    from mlserve.project import load_project
    from mlserve.targets.local import LocalTarget

    return LocalTarget(load_project(root), "local")


@pytest.fixture
def split_50(deployed: Path) -> Iterator[Path]:
    """50/50 between v1 and v2, no faults; put back to 100/0 afterwards."""
    from mlserve.local.gateway_config import Fault

    target = _target(deployed)
    target.set_traffic("fraud", {"v1": 50, "v2": 50})
    try:
        yield deployed
    finally:
        target.set_fault("fraud", "v2", Fault())
        target.set_traffic("fraud", {"v1": 100, "v2": 0})


def _prom_counts(prom: str) -> dict[str, float]:
    q = 'sum by (variant) (mlserve_requests_total{endpoint="fraud"})'
    data = httpx.get(f"{prom}/api/v1/query?query={urllib.parse.quote(q)}", timeout=5, trust_env=False).json()
    assert data["status"] == "success", data
    return {r["metric"]["variant"]: float(r["value"][1]) for r in data["data"]["result"]}


def _gateway_counts(gateway: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{gateway}/metrics", timeout=5, trust_env=False).text
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "mlserve_requests_total" and s.labels.get("endpoint") == "fraud":
                out[s.labels["variant"]] = out.get(s.labels["variant"], 0.0) + s.value
    return out


def _settled_prom_counts(prom: str, gateway: str, timeout: float = 15.0) -> dict[str, float]:
    """Prometheus' counts once it has scraped the gateway's current (idle) counters."""
    deadline = time.monotonic() + timeout
    while True:
        want, got = _gateway_counts(gateway), _prom_counts(prom)
        if all(got.get(v, 0.0) == n for v, n in want.items()):
            return got
        assert time.monotonic() < deadline, f"Prometheus never caught up: gateway {want}, prometheus {got}"
        time.sleep(0.5)


def test_ten_second_run_writes_reports_and_agrees_with_prometheus(split_50: Path, tmp_path: Path) -> None:
    target = _target(split_50)
    prom, gateway = target.prometheus_url(), target.gateway_url()
    before = _settled_prom_counts(prom, gateway)
    gw_before = _gateway_counts(gateway)
    out = tmp_path / "run"
    res = run_cli(
        "loadtest", "fraud", "--duration", "10s", "--users", "4", "--rps", "60", "--out", str(out), "--json",
        cwd=split_50,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert res.json["result"]["requests"] == summary["requests"]

    # locust's own files, and the locustfile a user can re-run
    html = (out / "report.html").read_text()
    assert "<html" in html.lower() and "fraud [v1]" in html and "fraud [v2]" in html
    with open(out / "locust_stats.csv", newline="") as fh:
        rows = {r["Name"]: r for r in csv.DictReader(fh)}
    assert {"fraud [v1]", "fraud [v2]", "Aggregated"} <= set(rows)
    assert int(rows["Aggregated"]["Request Count"]) == summary["requests"]
    with open(out / "locust_stats_history.csv", newline="") as fh:
        history = list(csv.DictReader(fh))
    assert len([h for h in history if h["Name"] == "Aggregated"]) >= 8  # about one row a second
    assert (out / "locust_failures.csv").read_text().startswith("Method,Name,Error")
    compile((out / "locustfile.py").read_text(), "locustfile.py", "exec")
    assert len((out / "payloads.jsonl").read_text().splitlines()) == 32

    # summary.json: totals, per variant, window, target, SLO
    assert summary["format"] == "mlserve.loadtest/v1"
    assert summary["target_url"] == gateway
    assert 9.5 <= summary["end_time"] - summary["start_time"] <= 12.0
    assert summary["failures"] == 0 and summary["failure_ratio"] == 0.0
    assert summary["requests"] >= 100
    assert 0 < summary["requests_per_second"] <= 60 * 1.1
    assert set(summary["variants"]) == {"v1", "v2"}
    assert sum(v["requests"] for v in summary["variants"].values()) == summary["requests"]
    for v in summary["variants"].values():
        lat = v["latency_ms"]
        assert v["requests"] > 0 and 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert summary["slo"]["passed"] is True and summary["slo"]["breaches"] == []

    # The gateway's counters as Prometheus scraped them, for the same window: within one
    # scrape interval (1 s) of traffic per variant.
    after = _settled_prom_counts(prom, gateway)
    gw_after = _gateway_counts(gateway)
    for variant, v in summary["variants"].items():
        seen = after.get(variant, 0.0) - before.get(variant, 0.0)
        tolerance = v["requests_per_second"] * 1.0
        assert abs(seen - v["requests"]) <= tolerance, (variant, seen, v["requests"], tolerance)
        # users stop gracefully, so the gateway's own counters agree exactly
        assert gw_after.get(variant, 0.0) - gw_before.get(variant, 0.0) == v["requests"]

    # locust never ran inside this process: no gevent patching of the test runner
    assert "locust" not in sys.modules
    assert threading.Thread.__module__ == "threading"


def test_slow_version_breaks_the_p99_slo_and_exits_3(split_50: Path, tmp_path: Path) -> None:
    from mlserve.local.gateway_config import Fault

    _target(split_50).set_fault("fraud", "v2", Fault(latency_ms=SLOW_MS))
    res = run_cli("loadtest", "fraud", "-t", "4s", "-u", "4", cwd=split_50)
    assert res.exit_code == 3, res.output
    runs = sorted((split_50 / "experiments" / "fraud").glob("loadtest-*"))  # the default --out
    assert runs, res.output
    out = runs[-1]
    assert "SLO broken p99_latency" in res.stdout
    assert "error_rate" not in res.stdout.split("SLO broken", 1)[1]
    summary = json.loads((out / "summary.json").read_text())
    assert [b["slo"] for b in summary["slo"]["breaches"]] == ["p99_latency"]
    assert summary["variants"]["v2"]["latency_ms"]["p50"] >= SLOW_MS
    assert summary["variants"]["v1"]["latency_ms"]["p50"] < SLOW_MS

    from mlserve.loadtest import load_result, summary_markdown

    md = summary_markdown(load_result(out), link_from=split_50)
    assert "| v2 |" in md and "SLO broken: p99_latency" in md
    assert f"[locust HTML report](experiments/fraud/{out.name}/report.html)" in md


def test_background_load_on_a_flaky_canary_stops_early_and_reports(split_50: Path, tmp_path: Path) -> None:
    """The rollout engine's API: start, keep going while something else runs, stop; the
    failures land on the failing variant and break the error_rate SLO."""
    from mlserve.loadtest import start_background_load
    from mlserve.local.gateway_config import Fault
    from mlserve.manifest.models import InputSpec

    target = _target(split_50)
    target.set_fault("fraud", "v2", Fault(error_rate=0.5))
    started = time.monotonic()
    with start_background_load(
        target.gateway_url(),
        "fraud",
        out_dir=tmp_path / "bg",
        users=2,
        input_spec=InputSpec(),
        rps_cap=40,
        max_duration=300,
        slo={"p99_latency": None, "error_rate": 0.01},
    ) as load:
        deadline = time.monotonic() + 30
        while True:  # the worker needs a few seconds to start on a busy machine
            progress = load.progress()
            if progress is not None and progress.requests >= 20:
                break
            assert time.monotonic() < deadline, progress
            time.sleep(0.25)
        assert load.running()
        result = load.stop()
    assert not load.running()
    assert time.monotonic() - started < 60
    s = result.summary
    assert s["stop_reason"] == "stopped" and s["duration_seconds"] < 40
    assert result.requests >= 20 and set(result.variants) == {"v1", "v2"}
    v1, v2 = result.variants["v1"], result.variants["v2"]
    assert v1["failures"] == 0 and 0 < v2["failures"] < v2["requests"]
    assert {e["variant"] for e in s["errors"]} == {"v2"}
    assert result.exit_code == 3 and [b.slo for b in result.slo.breaches] == ["error_rate"]
    assert "failed, above the SLO of 1.00%" in result.slo.breaches[0].message
    assert result.html_report.is_file()
