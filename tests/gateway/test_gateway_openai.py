"""The gateway's OpenAI routes against a scripted SSE upstream (no model): events passed on
as they arrive, cancellation, the usage the client did not ask for, faults, shadows and
their text agreement, sticky routing by ``user``, and the token-stream metrics."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from mlserve.local.gateway_config import Fault, Shadow
from tests.gateway.conftest import GatewayProc, Procs, gateway_config, read_ready, start_gateway

HERE = Path(__file__).resolve().parent
WORDS = "duplicate charge on one order"


def llm_upstream(procs: Procs, text: str = WORDS, hold: bool = False) -> str:
    argv = [sys.executable, str(HERE / "openai_upstream.py"), "--text", text, *(["--hold"] if hold else [])]
    return f"http://127.0.0.1:{read_ready(procs.popen(argv))['port']}"


def chat_gateway(procs: Procs, versions: dict[str, str], weights: dict[str, int], **ep: Any) -> GatewayProc:
    cfg = {
        "versions": versions,
        "baseline": "v1",
        "protocol": "openai",
        "traffic": {"mode": "split", "weights": weights},
    }
    return start_gateway(procs, gateway_config(procs.tmp, {"chat": {**cfg, **ep}}))


def chat(model: str = "chat", stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream, **extra}


def events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(b[6:]) for b in raw.split(b"\n\n") if b.startswith(b"data: {")]


def test_first_token_reaches_the_client_while_the_server_still_holds_the_rest(procs: Procs) -> None:
    up = llm_upstream(procs, hold=True)
    gw = chat_gateway(procs, {"v1": up}, {"v1": 100})
    got: list[bytes] = []
    with (
        httpx.Client(timeout=20, trust_env=False) as client,
        client.stream("POST", f"{gw.url}/v1/chat/completions", json=chat()) as resp,
    ):
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-mlserve-variant"] == "v1"
        parts = resp.iter_raw()
        for part in parts:
            got.append(part)
            if b'"content": "duplicate"' in b"".join(got):
                break  # the upstream has sent one token and waits: nothing was buffered
        httpx.post(f"{up}/release", trust_env=False)
        got.extend(parts)
    evs = events(b"".join(got))
    text = "".join((e["choices"][0]["delta"].get("content") or "") for e in evs if e["choices"])
    assert text == WORDS
    assert not any("usage" in e for e in evs)  # asked for upstream, dropped: the client did not ask
    assert gw.count("mlserve_llm_streams_total", endpoint="chat", variant="v1", outcome="completed") == 1
    assert gw.count("mlserve_llm_generation_tokens_total", endpoint="chat", variant="v1") == 5
    assert gw.count("mlserve_llm_prompt_tokens_total", endpoint="chat", variant="v1") == 3
    assert gw.count("mlserve_llm_time_to_first_token_seconds_count", endpoint="chat", variant="v1") == 1
    assert gw.count("mlserve_llm_inter_token_seconds_count", endpoint="chat", variant="v1") == 4
    assert gw.count("mlserve_llm_time_per_output_token_seconds_count", endpoint="chat", variant="v1") == 1
    assert gw.count("mlserve_requests_total", endpoint="chat", variant="v1", code="200") == 1
    sent = httpx.get(f"{up}/stats", trust_env=False).json()["bodies"][-1]
    assert "model" not in sent and sent["stream_options"] == {"include_usage": True}


def test_a_client_that_leaves_cancels_the_upstream(procs: Procs) -> None:
    up = llm_upstream(procs, hold=True)
    gw = chat_gateway(procs, {"v1": up}, {"v1": 100})
    with (
        httpx.Client(timeout=20, trust_env=False) as client,
        client.stream(
            "POST", f"{gw.url}/v1/chat/completions", json=chat(stream_options={"include_usage": True})
        ) as resp,
    ):
        next(resp.iter_raw())
    deadline = threading.Event()
    for _ in range(100):
        if httpx.get(f"{up}/stats", trust_env=False).json()["disconnected"] == 1:
            break
        deadline.wait(0.1)
    assert httpx.get(f"{up}/stats", trust_env=False).json()["disconnected"] == 1  # never released: it was cancelled
    for _ in range(50):
        if gw.count("mlserve_llm_streams_total", endpoint="chat", variant="v1", outcome="cancelled") == 1:
            break
        deadline.wait(0.1)
    assert gw.count("mlserve_llm_streams_total", endpoint="chat", variant="v1", outcome="cancelled") == 1
    assert gw.count("mlserve_requests_total", endpoint="chat", variant="v1", code="499") == 1


def test_faults_cut_streams_and_fail_requests(procs: Procs) -> None:
    up = llm_upstream(procs)
    gw = chat_gateway(procs, {"v1": up, "v2": up}, {"v1": 100})
    with gw.admin() as admin:
        admin.set_fault("chat", "v2", Fault(stream_error_rate=1.0))
    with httpx.Client(timeout=20, trust_env=False) as client:
        raw = client.post(f"{gw.url}/v1/chat/completions", json=chat("chat:v2")).content
        assert b"event: error" in raw and len([e for e in events(raw) if e.get("choices")]) == 3  # role + 2 tokens
        assert gw.count("mlserve_llm_streams_total", endpoint="chat", variant="v2", outcome="failed") == 1
        with gw.admin() as admin:
            admin.set_fault("chat", "v2", Fault(error_rate=1.0))
        resp = client.post(f"{gw.url}/v1/chat/completions", json=chat("chat:v2"))
        assert resp.status_code == 500 and "injected fault" in resp.json()["error"]["message"]
        whole = client.post(f"{gw.url}/v1/chat/completions", json=chat("chat:v1", stream=False))
        assert whole.json()["choices"][0]["message"]["content"] == WORDS
        assert client.post(f"{gw.url}/v1/chat/completions", content=b"{").status_code == 400
        missing = client.post(f"{gw.url}/v1/chat/completions", json={"model": "chat:v9", "messages": []})
        assert missing.status_code == 404 and "unknown version 'v9'" in missing.json()["error"]["message"]
        models = client.get(f"{gw.url}/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["chat", "chat:v1", "chat:v2"]


def test_shadow_generations_are_compared_and_sticky_keys_on_user(procs: Procs) -> None:
    same, other = llm_upstream(procs), llm_upstream(procs, text="refund the second payment")
    gw = chat_gateway(procs, {"v1": same, "v2": same, "v3": other}, {"v1": 100})
    with httpx.Client(timeout=20, trust_env=False) as client:
        for target, agree in (("v2", "true"), ("v3", "false")):
            with gw.admin() as admin:
                admin.set_traffic("chat", {"v1": 100}, shadow=Shadow(target, 100))
            for _ in range(3):
                client.post(f"{gw.url}/v1/chat/completions", json=chat())
            for _ in range(100):
                if gw.count("mlserve_shadow_agreement_total", endpoint="chat", variant=target) >= 3:
                    break
                threading.Event().wait(0.05)
            assert gw.count("mlserve_shadow_agreement_total", endpoint="chat", variant=target, agree=agree) == 3
            assert gw.count("mlserve_llm_shadow_exact_match_total", endpoint="chat", variant=target, agree=agree) == 3
        path = procs.tmp / ".mlserve/local/llm-shadow-samples.json"
        for _ in range(60):  # written at most once a second
            samples = json.loads(path.read_text())["endpoints"]["chat"] if path.exists() else []
            if any(s["shadow_text"] == "refund the second payment" and not s["agree"] for s in samples):
                break
            threading.Event().wait(0.1)
        assert any(s["shadow_text"] == "refund the second payment" and not s["agree"] for s in samples), samples
        with gw.admin() as admin:
            admin.set_traffic("chat", {"v1": 50, "v2": 50}, mode="sticky")
        seen: dict[str, set[str]] = {}
        for i in range(24):
            resp = client.post(f"{gw.url}/v1/chat/completions", json=chat(stream=False, user=f"u{i % 6}"))
            seen.setdefault(f"u{i % 6}", set()).add(resp.headers["x-mlserve-variant"])
        assert all(len(v) == 1 for v in seen.values()) and len(set().union(*seen.values())) == 2


def test_a_reload_drains_a_removed_version_only_after_its_streams_end(procs: Procs) -> None:
    """nodrop's guarantee on the OpenAI routes: a stream started on v2 keeps v2 in flight
    across a reload that removes it and ends with its whole text; new requests follow the
    new route table (v1 moved to another server)."""
    import os

    held, v1, moved = llm_upstream(procs, hold=True), llm_upstream(procs), llm_upstream(procs, text="moved here")
    gw = chat_gateway(procs, {"v1": v1, "v2": held}, {"v1": 100})
    got: list[bytes] = []
    with (
        gw.admin() as admin,
        httpx.Client(timeout=20, trust_env=False) as client,
        client.stream("POST", f"{gw.url}/v1/chat/completions", json=chat("chat:v2")) as resp,
    ):
        parts = resp.iter_raw()
        for part in parts:
            got.append(part)
            if b'"content": "duplicate"' in b"".join(got):
                break  # v2 is streaming and holds the rest
        cfg = json.loads(gw.config_path.read_text())
        cfg["endpoints"]["chat"]["versions"] = {"v1": moved}
        cfg["generation"] = int(cfg.get("generation", 0)) + 1
        tmp = gw.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cfg))
        os.replace(tmp, gw.config_path)
        result = admin.reload()
        assert "chat/v2: removed (drained)" in result["changes"], result
        assert result["inflight"].get(held, 0) >= 1  # the stream still holds the old table
        assert held not in admin.upstreams()["routed"]
        httpx.post(f"{held}/release", trust_env=False)
        got.extend(parts)
        deadline = time.monotonic() + 10  # the handler lets go of its table once the stream is closed
        while admin.upstreams()["inflight"].get(held, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert admin.upstreams()["inflight"].get(held, 0) == 0
    evs = events(b"".join(got))
    assert "".join((e["choices"][0]["delta"].get("content") or "") for e in evs if e["choices"]) == WORDS
    after = httpx.post(f"{gw.url}/v1/chat/completions", json=chat(stream=False), timeout=20, trust_env=False)
    assert after.status_code == 200 and after.json()["choices"][0]["message"]["content"] == "moved here"
