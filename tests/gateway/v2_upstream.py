"""A tiny V2 inference server (raw ASGI on uvicorn) standing in for a model server.

Run as a script: ``python tests/gateway/v2_upstream.py --port 0 --model fraud --value 1.0``.
It prints ``{"event": "ready", "port": N}`` once listening. Every inference answers one
output ``predict`` whose data are ``value`` repeated once per row of the first input, so two
upstreams with equal values agree and with different values disagree. Used by the gateway
tests and by ``benchmarks/gateway_overhead.py`` (the "trivial upstream").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from typing import Any


def make_app(model: str, value: float, delay_ms: float) -> Any:
    meta = json.dumps({"name": model, "platform": "test", "versions": [], "inputs": [], "outputs": []}).encode()
    ok = json.dumps({"live": True}).encode()
    infer_path = f"/v2/models/{model}/infer"

    async def send_json(send: Any, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "POST" and path == infer_path:
            chunks = []
            while True:
                msg = await receive()
                chunks.append(msg.get("body", b""))
                if not msg.get("more_body"):
                    break
            try:
                req = json.loads(b"".join(chunks))
                rows = int(req["inputs"][0]["shape"][0])
            except (ValueError, KeyError, IndexError, TypeError):
                await send_json(send, 400, b'{"error": "bad V2 request"}')
                return
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000.0)
            out = {
                "model_name": model,
                "id": req.get("id", ""),
                "outputs": [{"name": "predict", "datatype": "FP64", "shape": [rows], "data": [value] * rows}],
            }
            await send_json(send, 200, json.dumps(out).encode())
        elif method == "GET" and path in ("/v2/health/ready", "/v2/health/live", f"/v2/models/{model}/ready"):
            await send_json(send, 200, ok)
        elif method == "GET" and path == f"/v2/models/{model}":
            await send_json(send, 200, meta)
        else:
            await send_json(send, 404, b'{"error": "not found"}')

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default="fraud")
    parser.add_argument("--value", type=float, default=1.0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    config = uvicorn.Config(
        make_app(args.model, args.value, args.delay_ms), lifespan="off", access_log=False, log_level="warning"
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.ensure_future(server.serve([sock]))
        while not server.started:
            if task.done():
                break
            await asyncio.sleep(0.01)
        print(json.dumps({"event": "ready", "pid": os.getpid(), "port": sock.getsockname()[1]}), flush=True)
        await task

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())
    sys.exit(0)


if __name__ == "__main__":
    main()
