"""The vLLM query set against a real Prometheus scraping a recorded vLLM exposition.

``data/vllm-0.prom`` and ``data/vllm-1.prom`` are two moments of vLLM's ``/metrics`` (written
by hand after vLLM's documentation: v0.11 metric names, ``model_name`` labels) for the two
versions of the example project's summarize endpoint, served on loopback one after the
other. The collector must read exactly the differences between them, the engine must turn
them into a verdict, and the KEDA query of the rendered LLMInferenceService must evaluate.
"""

from __future__ import annotations

import http.server
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlserve.manifest.analysis import analysis_spec
from mlserve.manifest.models import MetricSpec, RolloutPolicy
from mlserve.manifest.units import Margin
from mlserve.metrics import LookRequest, PrometheusQuery
from mlserve.metrics.collect import collect_llm
from mlserve.metrics.queries import LLM_QUERY_SETS
from mlserve.stats.engine import analyze
from mlserve.stats.snapshot import parse_snapshot
from tests.conftest import REPO
from tests.support.prometheus import free_port, prometheus

pytestmark = [pytest.mark.prometheus]

DATA = Path(__file__).with_name("data")
NAMESPACE = "ml-staging"
VARIANTS = ("llama-8b", "llama-8b-q")
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} (\S+)$")


def parse(path: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for line in path.read_text().splitlines():
        m = _LINE.match(line)
        if m:
            labels = frozenset(tuple(kv.split("=", 1)) for kv in re.findall(r'[a-z_]+="[^"]*"', m.group(2)))
            out[(m.group(1), frozenset((k, v.strip('"')) for k, v in labels))] = float(m.group(3))
    return out


class Recorded(http.server.BaseHTTPRequestHandler):
    current: Path = DATA / "vllm-0.prom"

    def do_GET(self) -> None:
        body = type(self).current.read_bytes()
        self.send_response(200)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Recorded)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tmp = tmp_path_factory.mktemp("vllm-prom")
        with prometheus(tmp, "vllm", server.server_address[1], {"namespace": NAMESPACE}) as url:
            yield url
    finally:
        server.shutdown()


def _value(url: str, promql: str) -> float | None:
    q = urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=2) as r:
            import json

            result = json.loads(r.read())["data"]["result"]
    except OSError:
        return None
    return sum(float(x["value"][1]) for x in result) if result else None


def _wait_for(url: str, promql: str, value: float, timeout: float = 60.0) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _value(url, promql) == value:
            return time.time()
        time.sleep(0.3)
    pytest.fail(f"Prometheus never showed {promql} = {value}")


def test_vllm_query_set_reads_the_recorded_exposition_and_gates_on_it(prom: str) -> None:
    before, after = parse(DATA / "vllm-0.prom"), parse(DATA / "vllm-1.prom")
    probe = 'vllm:generation_tokens_total{model_name="summarize-llama-8b"}'
    gen0 = before[("vllm:generation_tokens_total", frozenset({("engine", "0"), ("model_name", "summarize-llama-8b")}))]
    t0 = _wait_for(prom, probe, gen0) + 1.5  # a scrape of the first state on both sides of t0
    time.sleep(2.0)
    Recorded.current = DATA / "vllm-1.prom"
    gen1 = after[("vllm:generation_tokens_total", frozenset({("engine", "0"), ("model_name", "summarize-llama-8b")}))]
    t1 = _wait_for(prom, probe, gen1)
    query = PrometheusQuery(prom)
    req = LookRequest(
        endpoint="summarize",
        variants=list(VARIANTS),
        weights={"llama-8b": 50, "llama-8b-q": 50},
        started_at=t0,
        at=t1,
        namespace=NAMESPACE,
        llm_source="vllm",
    )
    looks = {}
    for v in VARIANTS:
        got = collect_llm(query, LLM_QUERY_SETS["vllm"], req, v, None, t1 - t0)
        model = frozenset({("engine", "0"), ("model_name", f"summarize-{v}")})

        def grown(name: str, extra: tuple[tuple[str, str], ...] = (), model: frozenset[Any] = model) -> int:
            key = (name, model | frozenset(extra))
            return round(after[key] - before[key])

        reasons = [grown("vllm:request_success_total", (("finished_reason", r),)) for r in ("stop", "length", "abort")]
        assert got["streams"] == sum(reasons) > 0
        assert got["streams_failed"] == reasons[2]
        assert got["generation_tokens"] == grown("vllm:generation_tokens_total")
        assert got["prompt_tokens"] == grown("vllm:prompt_tokens_total")
        for key, family in (
            ("ttft_seconds", "vllm:time_to_first_token_seconds_bucket"),
            ("time_per_output_token_seconds", "vllm:request_time_per_output_token_seconds_bucket"),
        ):
            hist = got[key]
            for le, count in zip(hist["le"], hist["counts"], strict=True):
                bound = "+Inf" if le == "+Inf" else str(float(le))
                assert count == grown(family, (("le", bound),)), (v, key, le)
        assert "tokens_per_second" not in got  # vLLM has no such histogram: that kind holds
        looks[v] = {"requests": got["streams"], "errors": 0, "llm": got}
    doc = {
        "format": "mlserve.snapshot/v1",
        "endpoint": "summarize",
        "baseline": "llama-8b",
        "candidate": "llama-8b-q",
        "strategy": "canary",
        "looks": [{"at": "t1", "weights": {"llama-8b": 75, "llama-8b-q": 25}, "variants": looks}],
    }
    policy = RolloutPolicy(
        srm_p_value=1e-12,  # the recording is not a 75/25 split to the request
        metrics=[
            MetricSpec(name="ttft_p90", kind="ttft", quantile=0.9, margin=Margin(0.2, True)),
            MetricSpec(name="tpot_p90", kind="inter_token", quantile=0.9, margin=Margin(0.2, True)),
        ],
    )
    verdict = analyze(parse_snapshot(doc), analysis_spec(policy))
    by = {m.name: m for m in verdict.metrics}
    # the recorded fp8 version answers its first token later (p90 ~0.47 s against ~0.28 s)
    assert verdict.verdict == "rollback" and by["ttft_p90"].verdict == "fail", verdict.reason
    assert by["tpot_p90"].verdict != "fail"


def test_the_rendered_keda_query_evaluates_on_the_recorded_vllm_gauges(prom: str) -> None:
    docs = list(yaml.safe_load_all((REPO / "stacks/staging/kubernetes/endpoints/summarize.yaml").read_text()))
    llmisvc = [d for d in docs if d and d["kind"] == "LLMInferenceService"]
    assert [d["metadata"]["name"] for d in llmisvc] == ["summarize-llama-8b"]
    trigger = llmisvc[0]["spec"]["scaling"]["keda"]["triggers"][0]
    assert trigger["type"] == "prometheus" and "vllm:num_requests_waiting" in trigger["metadata"]["query"]
    expected = parse(DATA / "vllm-1.prom")[
        ("vllm:num_requests_waiting", frozenset({("engine", "0"), ("model_name", "summarize-llama-8b")}))
    ]
    Recorded.current = DATA / "vllm-1.prom"
    deadline = time.time() + 30
    got = _value(prom, trigger["metadata"]["query"])
    while got != expected and time.time() < deadline:
        time.sleep(0.3)
        got = _value(prom, trigger["metadata"]["query"])
    assert got == expected
