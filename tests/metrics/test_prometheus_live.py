"""collect_look against a real Prometheus scraping a real exporter on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from mlserve.metrics import LookRequest, MetricsUnavailable, PrometheusQuery, collect_look
from tests.support.prometheus import free_port, prometheus

pytestmark = [pytest.mark.prometheus]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Exporter:
    """The gateway's metric families, served by prometheus-client like the gateway does."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.new_registry()
        self.server, self.thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def new_registry(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mlserve_requests", "", ["endpoint", "variant", "code"], registry=self.registry)
        self.duration = Histogram(
            "mlserve_request_duration_seconds", "", ["endpoint", "variant"], buckets=BUCKETS, registry=self.registry
        )
        for v in ("v1", "v2"):
            for code in ("200", "500"):
                self.requests.labels("fraud", v, code)
            self.duration.labels("fraud", v)

    def restart(self) -> None:
        """A gateway restart: every counter starts again from zero."""
        self.server.shutdown()
        self.server.server_close()
        self.new_registry()
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    def traffic(self, variant: str, ok: int, errors: int, seconds: float) -> None:
        self.requests.labels("fraud", variant, "200").inc(ok)
        self.requests.labels("fraud", variant, "500").inc(errors)
        for _ in range(ok + errors):
            self.duration.labels("fraud", variant).observe(seconds)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Exporter, str]]:
    exporter = Exporter(free_port())
    try:
        with prometheus(tmp_path_factory.mktemp("prom"), "gateway", exporter.port) as url:
            yield exporter, url
    finally:
        exporter.server.shutdown()


def wait_scrapes(n: int = 3) -> None:
    time.sleep(1.0 * n + 0.3)


def look(url: str, start: float, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    req = LookRequest(
        endpoint="fraud", variants=["v1", "v2"], weights={"v1": 90, "v2": 10}, started_at=start, at=time.time()
    )
    return collect_look(PrometheusQuery(url), req, previous).look


def close(observed: int, expected: int, slack: float = 0.08) -> bool:
    return abs(observed - expected) <= max(2, slack * expected)


def test_counts_histograms_and_resets(stack: tuple[Exporter, str]) -> None:
    exporter, url = stack
    wait_scrapes(3)  # zeros are scraped before the rollout starts
    start = time.time()
    for _ in range(5):
        exporter.traffic("v1", 180, 0, 0.004)
        exporter.traffic("v2", 19, 1, 0.04)
        time.sleep(1.0)
    wait_scrapes(2)
    first = look(url, start)
    v1, v2 = first["variants"]["v1"], first["variants"]["v2"]
    assert close(v1["requests"], 900) and close(v2["requests"], 100), first
    assert v1["errors"] == 0 and 3 <= v2["errors"] <= 7, first
    # latency lands in the right buckets: v1 below 5 ms, v2 between 25 and 50 ms
    le = v2["latency_seconds"]["le"]
    assert le[-1] == "+Inf" and v2["latency_seconds"]["counts"][-1] == v2["requests"]
    at_25ms = v2["latency_seconds"]["counts"][le.index(0.025)]
    at_50ms = v2["latency_seconds"]["counts"][le.index(0.05)]
    assert at_25ms == 0 and at_50ms == v2["requests"]
    assert v1["latency_seconds"]["counts"][le.index(0.005)] == v1["requests"]

    # the gateway restarts: counters drop to zero, increase() keeps counting across it
    exporter.restart()
    wait_scrapes(2)
    for _ in range(3):
        exporter.traffic("v1", 100, 0, 0.004)
        exporter.traffic("v2", 10, 2, 0.04)
        time.sleep(1.0)
    wait_scrapes(2)
    second = look(url, start, previous=first)
    assert close(second["variants"]["v1"]["requests"], 1200), second
    assert close(second["variants"]["v2"]["requests"], 136), second
    assert second["variants"]["v2"]["errors"] >= first["variants"]["v2"]["errors"]


def test_unreachable_prometheus_is_held() -> None:
    port = free_port()
    req = LookRequest(
        endpoint="fraud", variants=["v1"], weights={"v1": 100}, started_at=time.time() - 10, at=time.time()
    )
    with pytest.raises(MetricsUnavailable, match=f"Prometheus at http://127.0.0.1:{port} did not answer"):
        collect_look(PrometheusQuery(f"http://127.0.0.1:{port}", timeout=2), req)


def test_unknown_endpoint_is_held(stack: tuple[Exporter, str]) -> None:
    _, url = stack
    req = LookRequest(
        endpoint="ghost", variants=["v1"], weights={"v1": 100}, started_at=time.time() - 30, at=time.time()
    )
    with pytest.raises(MetricsUnavailable, match="no data for requests of ghost/v1"):
        collect_look(PrometheusQuery(url), req)
