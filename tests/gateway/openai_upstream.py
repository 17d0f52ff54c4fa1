"""A tiny OpenAI-style streaming server (raw ASGI on uvicorn) standing in for an LLM server
in the gateway's unit tests: no model, no torch, every token under the test's control.

``python tests/gateway/openai_upstream.py --text "a b c"`` prints ``{"event": "ready", "port": N}``.
``POST /v1/chat/completions`` streams one SSE event per word of ``--text`` (then a usage
event) or answers the whole text. With ``--hold`` the stream stops after its first token
until ``POST /release`` is called: a gateway that buffered answers would never let the
client see that first token. ``GET /stats`` tells how many streams ended because the
client (the gateway) went away.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from typing import Any


def make_app(words: list[str], hold: bool) -> Any:
    released = asyncio.Event()
    stats = {"streams": 0, "disconnected": 0, "bodies": []}

    async def send_json(send: Any, status: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def chunk(delta: dict[str, Any], **extra: Any) -> bytes:
        obj = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}], **extra}
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/health":
            return await send_json(send, 200, {"status": "ok"})
        if method == "GET" and path == "/stats":
            return await send_json(send, 200, stats)
        if method == "POST" and path == "/release":
            released.set()
            return await send_json(send, 200, {"released": True})
        if method != "POST" or path != "/v1/chat/completions":
            return await send_json(send, 404, {"error": "not found"})
        raw = b""
        while True:
            msg = await receive()
            raw += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        body = json.loads(raw)
        stats["bodies"] = [*stats["bodies"][-4:], body]
        if not body.get("stream"):
            text = " ".join(words)
            usage = {"prompt_tokens": 3, "completion_tokens": len(words)}
            answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}], "usage": usage}
            return await send_json(send, 200, answer)
        stats["streams"] += 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await send({"type": "http.response.body", "body": chunk({"role": "assistant"}), "more_body": True})
            for i, word in enumerate(words):
                text = word if i == 0 else " " + word
                await send({"type": "http.response.body", "body": chunk({"content": text}), "more_body": True})
                if i == 0 and hold:
                    waits = [asyncio.ensure_future(released.wait()), asyncio.ensure_future(gone.wait())]
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    for w in waits:
                        w.cancel()
                await asyncio.sleep(0.005)
                if gone.is_set():  # the gateway closed the connection: stop generating
                    stats["disconnected"] += 1
                    return
            usage = {"prompt_tokens": 3, "completion_tokens": len(words), "total_tokens": 3 + len(words)}
            final = b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": final + b"data: [DONE]\n\n", "more_body": False})
        finally:
            watcher.cancel()

    return app, stats


def main() -> int:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--text", default="duplicate charge on one order")
    parser.add_argument("--hold", action="store_true")
    args = parser.parse_args()
    app, _ = make_app(args.text.split(), args.hold)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning")
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.get_running_loop().create_task(server.serve([sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        print(json.dumps({"event": "ready", "port": port, "pid": os.getpid()}), flush=True)
        await task

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
