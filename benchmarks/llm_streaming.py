"""What the gateway adds to a streamed LLM answer: time to first token, whole answer and
tokens per second at the client, direct to `transformers serve` and through mlserve's
gateway, interleaved request by request so that both see the same machine.

A proxy that buffered answers would show a first token only at the end (TTFT = e2e); the
gateway passes each event on as it arrives, so its TTFT should be the server's plus a
fraction of a millisecond.

    python benchmarks/llm_streaming.py [--requests 60] [--project DIR]

Without ``--project`` it creates a project with ``mlserve init`` in a temporary folder and
deploys only the chat endpoint (v1); it stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._report import write_section

PROMPT = "my card was charged twice for the same order"


def one(client: httpx.Client, url: str, model: str | None) -> tuple[float, float, int]:
    body: dict[str, object] = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 16,
        "temperature": 0,
        "stream": True,
    }
    if model:
        body["model"] = model
    t0 = time.perf_counter()
    first = None
    tokens = 0
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
        buf = b""
        for chunk in resp.iter_raw():
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if b'"content":"' in event:
                    tokens += 1
                    if first is None:
                        first = time.perf_counter()
    end = time.perf_counter()
    return ((first or end) - t0) * 1000, (end - t0) * 1000, tokens


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--project", type=Path)
    args = ap.parse_args()
    from mlserve.project import load_project
    from mlserve.targets.local import LocalTarget
    from tests.conftest import run_cli

    own = args.project is None
    root = args.project or Path(tempfile.mkdtemp(prefix="mlserve-llm-bench.")) / "bench"
    if own:
        assert run_cli("init", str(root)).exit_code == 0
        manifest = root / "mlserve.toml"
        manifest.write_text(manifest.read_text().replace('endpoints = ["fraud", "chat"]', 'endpoints = ["chat"]', 1))
        res = run_cli("deploy", "--env", "local", cwd=root)
        assert res.exit_code == 0, res.output
    try:
        target = LocalTarget(load_project(root), "local")
        gateway = target.gateway_url()
        server = target.traffic().endpoints["chat"].versions["v1"].url
        rows: dict[str, list[tuple[float, float, int]]] = {"direct": [], "gateway": []}
        with httpx.Client(timeout=60, trust_env=False) as client:
            for _ in range(3):  # warm both paths
                one(client, server, None)
                one(client, gateway, "chat:v1")
            for _ in range(args.requests):
                rows["direct"].append(one(client, server, None))
                rows["gateway"].append(one(client, gateway, "chat:v1"))
    finally:
        if own:
            run_cli("down", cwd=root)
    lines = [
        "| path | requests | TTFT p50 ms | TTFT p90 ms | e2e p50 ms | tokens/s p50 | TTFT / e2e (p50) |",
        "|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for name, got in rows.items():
        ttft = [r[0] for r in got]
        e2e = [r[1] for r in got]
        rate = [r[2] / (r[1] / 1000) for r in got if r[1] > 0]
        summary[name] = {"ttft_p50": statistics.median(ttft), "e2e_p50": statistics.median(e2e)}
        lines.append(
            f"| {name} | {len(got)} | {statistics.median(ttft):.1f} | {pct(ttft, 0.9):.1f} | "
            f"{statistics.median(e2e):.1f} | {statistics.median(rate):.0f} | "
            f"{statistics.median(ttft) / statistics.median(e2e):.2f} |"
        )
    added = summary["gateway"]["ttft_p50"] - summary["direct"]["ttft_p50"]
    body = (
        "16-token streamed chat answers of the tiny chat model (`transformers serve`, CPU, one thread), "
        "one request at a time, alternating between the server itself and mlserve's gateway "
        "(model `chat:v1`, pinned).\n\n"
        + "\n".join(lines)
        + f"\n\nThe gateway adds {added:+.1f} ms to the median time to first token; the first token reaches "
        "the client long before the answer ends (a buffering proxy would show TTFT / e2e = 1.00).\n"
    )
    print(body)
    print(json.dumps(summary))
    write_section("llm_streaming", "LLM streaming through the gateway", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
