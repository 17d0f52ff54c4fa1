"""The LLM endpoint end to end on the local target: `transformers serve` processes with the
tiny chat model `mlserve init` trains, mlserve's gateway speaking the OpenAI API with
streaming, a real Prometheus, and rollouts gated on time to first token and on the shadow's
text agreement.

One deployment for the module (chat v1, v2 and v1b, the same model as v1; the fraud
endpoint is left out to spare the CPU). The rollout tests run a small streaming load from
two threads, bounded in time.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlserve.local.gateway_config import Fault
from mlserve.project import load_project
from mlserve.rollout.store import RunDir
from mlserve.targets.local import LocalTarget
from tests.conftest import run_cli
from tests.support.deploy import deployed_project
from tests.support.load import ChatLoad
from tests.support.policy import set_policy

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

PROMPT = "my card was charged twice for the same order"


def chat_only(versions: tuple[str, ...]) -> Callable[[Path], None]:
    """An edit of the scaffolded project: its local environment runs only chat, with the
    given versions (v1b: the same model as v1, for A/A)."""

    def edit(root: Path) -> None:
        import tomlkit

        manifest = root / "mlserve.toml"
        text = manifest.read_text().replace('endpoints = ["fraud"]', 'endpoints = ["chat"]', 1)
        text += '\n[endpoints.chat.versions.v1b]\nmodel_uri = "models/chat/v1"\ndescription = "v1 again (A/A)"\n'
        doc = tomlkit.parse(text)
        chat = doc["endpoints"]["chat"]["versions"]  # type: ignore[index]
        for name in [v for v in chat if v not in versions]:  # type: ignore[union-attr]
            del chat[name]  # type: ignore[union-attr]
        manifest.write_text(tomlkit.dumps(doc))

    return edit


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory, scaffolded: Path) -> Iterator[Path]:
    """chat v1 and v1b (two `transformers serve` processes), the gateway and Prometheus."""
    with deployed_project(tmp_path_factory, scaffolded, "llm", edit=chat_only(("v1", "v1b"))) as root:
        yield root


def _target(root: Path) -> LocalTarget:
    return LocalTarget(load_project(root), "local")


def _chat(model: str = "chat", stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 12,
        "temperature": 0,
        "stream": stream,
        **extra,
    }


def _stream(url: str, body: dict[str, Any]) -> tuple[dict[str, str], list[tuple[float, bytes]]]:
    """Every read of a streamed answer, with the time it arrived."""
    reads: list[tuple[float, bytes]] = []
    with httpx.Client(timeout=30, trust_env=False) as client:
        t0 = time.perf_counter()  # before the request is sent: TTFT as the client sees it
        with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
            for chunk in resp.iter_raw():
                reads.append((time.perf_counter() - t0, chunk))
    return dict(resp.headers), reads


def _events(reads: list[tuple[float, bytes]]) -> list[dict[str, Any]]:
    data = b"".join(c for _, c in reads).decode()
    out = []
    for block in data.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[6:]))
    return out


def _text(events: list[dict[str, Any]]) -> str:
    return "".join((e["choices"][0].get("delta") or {}).get("content") or "" for e in events if e.get("choices"))


def _prom(root: Path, promql: str) -> float:
    url = _target(root).prometheus_url()
    with httpx.Client(timeout=10, trust_env=False) as client:
        got = client.get(f"{url}/api/v1/query", params={"query": promql}).json()
    result = got["data"]["result"]
    return sum(float(r["value"][1]) for r in result)


def _wait_prom(root: Path, promql: str, at_least: float, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    value = _prom(root, promql)
    while value < at_least and time.monotonic() < deadline:
        time.sleep(0.5)
        value = _prom(root, promql)
    return value


def test_curl_shows_streamed_tokens_and_prometheus_holds_the_ttft_histogram(llm: Path) -> None:
    url = _target(llm).gateway_url()
    before = _prom(llm, 'mlserve_llm_time_to_first_token_seconds_count{endpoint="chat",variant="v1"}')
    body = json.dumps(_chat())
    runs = 3
    for _ in range(runs):
        out = subprocess.run(
            ["curl", "-sN", "-i", f"{url}/v1/chat/completions", "-H", "content-type: application/json", "-d", body],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "content-type: text/event-stream" in out.lower()
        assert "x-mlserve-variant: v1" in out.lower()
        chunks = [json.loads(line[6:]) for line in out.splitlines() if line.startswith("data: {")]
        content = [c for c in chunks if c["choices"] and (c["choices"][0].get("delta") or {}).get("content")]
        assert len(content) >= 5, out  # one event per generated token, not one blob
    # the model is deterministic under greedy decoding: the same text every time
    _, reads = _stream(url, _chat())
    first = _text(_events(reads))
    _, reads = _stream(url, _chat())
    assert _text(_events(reads)) == first and first
    # passed through as generated: the events arrived in several reads, not in one buffer
    assert len(reads) >= 3, reads
    got = _wait_prom(
        llm, 'mlserve_llm_time_to_first_token_seconds_count{endpoint="chat",variant="v1"}', before + runs + 2
    )
    assert got == before + runs + 2
    buckets = _prom(llm, 'count(mlserve_llm_time_to_first_token_seconds_bucket{endpoint="chat",variant="v1"})')
    assert buckets > 200  # 5%-apart buckets from 1 ms to 60 s
    tokens = _prom(llm, 'mlserve_llm_generation_tokens_total{endpoint="chat",variant="v1"}')
    assert tokens >= 12 * (runs + 2)
    # the other routes
    with httpx.Client(timeout=30, trust_env=False) as client:
        models = client.get(f"{url}/v1/models").json()
        assert {m["id"] for m in models["data"]} == {"chat", "chat:v1", "chat:v1b"}
        whole = client.post(f"{url}/v1/completions", json={"model": "chat:v1b", "prompt": PROMPT, "max_tokens": 6})
        assert whole.status_code == 200 and whole.headers["x-mlserve-variant"] == "v1b"
        assert whole.json()["usage"]["prompt_tokens"] > 0
        bad = client.post(f"{url}/v1/chat/completions", json={"model": "nope", "messages": []})
        assert bad.status_code == 404 and "unknown model 'nope'" in bad.json()["error"]["message"]


def test_llm_faults_first_token_delay_broken_stream_and_client_cancel(llm: Path) -> None:
    target = _target(llm)
    url = target.gateway_url()
    target.set_fault("chat", "v1b", Fault(first_token_ms=400))
    try:
        _, reads = _stream(url, _chat("chat:v1b"))
        events = _events(reads)
        first_text = next(t for t, c in reads if b'"content":"' in c)
        assert first_text >= 0.4  # the first token waited for the injected delay
        assert _text(events)
        target.set_fault("chat", "v1b", Fault(stream_error_rate=1.0))
        failed_before = _prom(llm, 'mlserve_llm_streams_total{endpoint="chat",variant="v1b",outcome="failed"}')
        _, reads = _stream(url, _chat("chat:v1b"))
        raw = b"".join(c for _, c in reads)
        assert b"event: error" in raw and b"stream_error_rate" in raw
        assert len([e for e in _events(reads) if e.get("choices")]) <= 4  # cut off after its second token
        _wait_prom(llm, 'mlserve_llm_streams_total{endpoint="chat",variant="v1b",outcome="failed"}', failed_before + 1)
    finally:
        target.set_fault("chat", "v1b", Fault())
    # a client that goes away after the first bytes: the upstream is cancelled and counted so
    cancelled = 'mlserve_llm_streams_total{endpoint="chat",variant="v1",outcome="cancelled"}'
    before = _prom(llm, cancelled)
    with (
        httpx.Client(timeout=30, trust_env=False) as client,
        client.stream("POST", f"{url}/v1/chat/completions", json=_chat("chat:v1", max_tokens=200)) as resp,
    ):
        next(resp.iter_raw())
    assert _wait_prom(llm, cancelled, before + 1) >= before + 1


def test_sticky_split_keys_on_the_user_field(llm: Path) -> None:
    target = _target(llm)
    url = target.gateway_url()
    target.set_traffic("chat", {"v1": 50, "v1b": 50}, mode="sticky")
    try:
        seen: dict[str, set[str]] = {}
        with httpx.Client(timeout=30, trust_env=False) as client:
            for i in range(16):
                user = f"user-{i % 4}"
                resp = client.post(f"{url}/v1/chat/completions", json=_chat(stream=False, user=user, max_tokens=2))
                assert resp.status_code == 200
                seen.setdefault(user, set()).add(resp.headers["x-mlserve-variant"])
        assert all(len(v) == 1 for v in seen.values()), seen
    finally:
        target.set_traffic("chat", {"v1": 100})


def test_loadtest_reports_token_stream_percentiles_per_variant(llm: Path, tmp_path: Path) -> None:
    out = tmp_path / "lt"
    res = run_cli(
        "loadtest", "chat", "--duration", "3s", "--users", "2", "--spawn-rate", "2", "--out", str(out), cwd=llm
    )
    assert res.exit_code == 0, res.output
    assert "Token streams (per request)" in res.stdout and "TTFT p50 ms" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "openai" and summary["infer_path"] == "/v1/chat/completions"
    assert summary["llm"]["v1"]["requests"] == summary["variants"]["v1"]["requests"] > 0
    assert summary["llm"]["v1"]["ttft_ms"]["p95"] >= summary["llm"]["v1"]["ttft_ms"]["p50"] > 0
    assert summary["llm"]["v1"]["tokens_per_second"]["p50"] > 0 and summary["llm"]["all"]["failed_streams"] == 0
    assert "/v1/chat/completions" in (out / "locustfile.py").read_text()


# ---------------------------------------------------------------------------
# Rollouts
# ---------------------------------------------------------------------------


@pytest.fixture
def clean(llm: Path) -> Iterator[Path]:
    original = (llm / "mlserve.toml").read_text()
    try:
        yield llm
    finally:
        target = _target(llm)
        for v in target.traffic().endpoints["chat"].versions:
            target.set_fault("chat", v, Fault())
        (llm / "mlserve.toml").write_text(original)
        if run_cli("rollback", "chat", cwd=llm).exit_code not in (0, 4):
            run_cli("rollout", "abort", "chat", cwd=llm)
            run_cli("rollback", "chat", cwd=llm)
        target.set_traffic("chat", {"v1": 100})


@pytest.fixture
def loaded(clean: Path) -> Iterator[Path]:
    load = ChatLoad(_target(clean).gateway_url(), (clean / "payloads/chat.jsonl").read_text().splitlines())
    try:
        yield clean
    finally:
        load.stop()


CANARY = {
    "strategy": "canary",
    "interval": "2s",
    "max_duration": "100s",
    "min_requests": 30,
    "steps": [50, 100],
    "on_inconclusive": "rollback",
    "metrics": [
        {"name": "stream_errors", "kind": "stream_errors", "margin": 0.05, "critical": True},
        {"name": "ttft_p90", "kind": "ttft", "quantile": 0.9, "margin": "50%"},
    ],
}


def _rollout(root: Path, candidate: str, *run_args: str) -> tuple[int, dict[str, Any]]:
    res = run_cli("rollout", "start", "chat", "--candidate", candidate, cwd=root)
    assert res.exit_code == 0, res.output
    res = run_cli("rollout", "run", "chat", "--json", *run_args, cwd=root)
    return res.exit_code, res.json["result"]


def _decision(result: dict[str, Any]) -> dict[str, Any]:
    decision = RunDir(Path(result["run_dir"])).read_state().decision
    assert decision is not None
    return decision.to_dict()


@pytest.mark.slow  # the longest of this module (~13 s on a busy 2-core machine): `make test-all`
def test_slower_first_token_is_rolled_back_on_the_ttft_gate(loaded: Path) -> None:
    # ttft critical: a regression this large must roll back even if the first looks also see a
    # skewed split (requests of the load counted against a scrape taken before the traffic change)
    metrics = [CANARY["metrics"][0], {**CANARY["metrics"][1], "critical": True}]
    set_policy(loaded, "chat", **{**CANARY, "metrics": metrics})
    _target(loaded).set_fault("chat", "v1b", Fault(first_token_ms=400))
    code, result = _rollout(loaded, "v1b")
    assert code == 3, _decision(result)
    failed = {m["name"] for m in _decision(result)["metrics"] if m["verdict"] == "fail"}
    assert failed == {"ttft_p90"}, _decision(result)
