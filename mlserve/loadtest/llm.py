"""Load tests of LLM endpoints (``protocol = "openai"``): prompts in, per-request token-stream
figures out.

Prompts come from a file (JSONL, one chat request ``{"messages": [...]}`` or text request
``{"prompt": ...}`` per line, or plain text with one prompt per line) or are synthesised. The
rendered locustfile (``loadtest/locustfile_llm.py.j2``) streams chat completions and writes
one line per finished request to ``llm_requests.jsonl``: the variant, time to first token,
the request's mean inter-token gap, generated tokens and tokens per second. The worker turns
that file into the ``llm`` section of ``summary.json`` (percentiles per variant).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlserve.errors import UsageError
from mlserve.loadtest.payloads import MAX_PAYLOAD_BYTES, MAX_PAYLOADS

REQUESTS_FILE = "llm_requests.jsonl"
TEMPLATE = "loadtest/locustfile_llm.py.j2"
MAX_TOKENS = 16
SYNTH_COUNT = 32
_WORDS = [
    "order",
    "refund",
    "card",
    "charge",
    "account",
    "password",
    "delivery",
    "parcel",
    "invoice",
    "app",
    "login",
    "subscription",
    "price",
    "discount",
    "return",
    "label",
    "address",
    "payment",
    "support",
    "chat",
    "tracking",
    "plan",
    "upgrade",
    "gift",
    "balance",
]


def check_prompt(req: Any) -> None:
    if not isinstance(req, dict):
        raise ValueError(f"must be a JSON object (a chat or completion request), got {type(req).__name__}")
    messages = req.get("messages")
    if messages is not None:
        if not isinstance(messages, list) or not messages:
            raise ValueError('"messages" must be a non-empty list')
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str) or not isinstance(m.get("role"), str):
                raise ValueError(f'messages[{i}] must be {{"role": "...", "content": "..."}}')
        return
    if not isinstance(req.get("prompt"), str):
        raise ValueError('needs "messages" (chat) or "prompt" (text)')


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """Requests from a prompt file; UsageError (exit 2) naming ``FILE:LINE`` on the first bad one."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_PAYLOAD_BYTES:
            raise UsageError(f"{path}: prompt file is larger than {MAX_PAYLOAD_BYTES >> 20} MiB")
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise UsageError(f"{path}: cannot read the prompt file: it is a directory") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the prompt file: {exc.strerror or exc}") from None
    out: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                req = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
            try:
                check_prompt(req)
            except ValueError as exc:
                raise UsageError(f"{path}:{lineno}: not a chat or completion request: {exc}") from None
        else:
            req = {"messages": [{"role": "user", "content": line.strip()}]}
        req.pop("stream", None)
        req.pop("model", None)
        req.setdefault("max_tokens", MAX_TOKENS)
        out.append(req)
        if len(out) > MAX_PAYLOADS:
            raise UsageError(f"{path}: more than {MAX_PAYLOADS} prompts; a sample is enough for a load test")
    if not out:
        raise UsageError(f"{path}: no prompts (the file is empty)")
    return out


def synthesize_prompts(count: int = SYNTH_COUNT, seed: int = 20261123) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "messages": [{"role": "user", "content": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 12)))}],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
        }
        for _ in range(count)
    ]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return round(float(np.percentile(np.asarray(values, dtype=float), q * 100)), 3)


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per variant (and ``all``): requests, failed streams, and percentiles of TTFT (ms), the
    request's mean inter-token gap (ms) and tokens per second."""
    by: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by.setdefault(str(r.get("variant") or "unrouted"), []).append(r)
    by_all = [r for rs in by.values() for r in rs]

    def one(rs: list[Mapping[str, Any]]) -> dict[str, Any]:
        ok = [r for r in rs if r.get("ok")]
        ttft = [float(r["ttft_ms"]) for r in ok if r.get("ttft_ms") is not None]
        itl = [float(r["itl_ms"]) for r in ok if r.get("itl_ms") is not None]
        rate = [float(r["tokens_per_second"]) for r in ok if r.get("tokens_per_second")]
        return {
            "requests": len(rs),
            "failed_streams": len(rs) - len(ok),
            "generated_tokens": int(sum(int(r.get("tokens") or 0) for r in ok)),
            "ttft_ms": {"p50": _pct(ttft, 0.5), "p95": _pct(ttft, 0.95), "p99": _pct(ttft, 0.99)},
            "itl_ms": {"p50": _pct(itl, 0.5), "p95": _pct(itl, 0.95), "p99": _pct(itl, 0.99)},
            "tokens_per_second": {"p10": _pct(rate, 0.1), "p50": _pct(rate, 0.5), "p90": _pct(rate, 0.9)},
        }

    out = {name: one(rs) for name, rs in sorted(by.items())}
    out["all"] = one(by_all)
    return out


def read_records(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off when the test stopped
        if isinstance(rec, dict):
            out.append(rec)
    return out
