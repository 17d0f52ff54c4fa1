"""V2 inference protocol in front of ``seldon-core-microservice`` (Seldon Core v1 protocol).

Seldon Core 1.18's Python wrapper speaks only its own protocol
(``POST /api/v1.0/predictions`` with ``{"data": {"ndarray": ...}}``); on a cluster
the V2 protocol comes from MLServer instead. mlserve's gateway speaks V2 to every
upstream, so the local ``seldon`` runtime runs the user's class unchanged inside
``seldon-core-microservice`` and puts this thin translator in front:

- ``POST /v2/models/{name}/infer``: the first input tensor becomes ``data.ndarray``
  (reshaped to its V2 shape), the reply's ``data.ndarray`` (or ``tensor``) becomes
  one output tensor named ``predict``;
- ``GET /v2/health/live|ready``, ``/v2/models/{name}/ready``: the wrapper's
  ``/health/status``; ``GET /v2/models/{name}``: minimal metadata.

It starts the microservice itself, as a child in the same process group, so that
stopping the group stops both. Seldon Core binds ``0.0.0.0`` unconditionally; the
child runs the microservice's own ``main()`` with binds rewritten to 127.0.0.1
(``--run-microservice``), because nothing mlserve starts may listen beyond loopback. Standard library only: it runs on the isolated
seldon virtual environment's interpreter. Not part of mlserve's import graph.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STATE: dict[str, Any] = {}


def _reshape(flat: list[Any], shape: list[int]) -> Any:
    if len(shape) <= 1:
        return list(flat)
    step = 1
    for d in shape[1:]:
        step *= d
    return [_reshape(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _flatten(value: Any) -> tuple[list[Any], list[int]]:
    if not isinstance(value, list):
        return [value], []
    if not value:
        return [], [0]
    parts = [_flatten(v) for v in value]
    flat = [x for p in parts for x in p[0]]
    return flat, [len(value), *parts[0][1]]


def _datatype(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"


def _post(url: str, body: dict[str, Any], timeout: float) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {"error": str(exc)}


def _ready() -> bool:
    try:
        with urllib.request.urlopen(STATE["upstream"] + "/health/status", timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        name = STATE["name"]
        if self.path in ("/v2/health/live",):
            self._send(200, {"live": True})
        elif self.path in ("/v2/health/ready", f"/v2/models/{name}/ready"):
            ok = _ready()
            self._send(200 if ok else 503, {"ready": ok})
        elif self.path in (f"/v2/models/{name}", "/v2"):
            self._send(
                200,
                {
                    "name": name,
                    "versions": [STATE["version"]],
                    "platform": "seldon-core-v1",
                    "inputs": [],
                    "outputs": [],
                },
            )
        else:
            self._send(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        name = STATE["name"]
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path not in (f"/v2/models/{name}/infer", f"/v2/models/{name}/versions/{STATE['version']}/infer"):
            self._send(404, {"error": f"no route {self.path}"})
            return
        try:
            request = json.loads(raw or b"{}")
            tensor = request["inputs"][0]
            data = tensor["data"]
            flat = data if not any(isinstance(x, list) for x in data) else _flatten(data)[0]
            ndarray = _reshape(flat, list(tensor.get("shape") or [len(flat)]))
            if not isinstance(ndarray, list) or not ndarray or not isinstance(ndarray[0], list):
                ndarray = [ndarray]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self._send(400, {"error": f"bad V2 request: {exc}"})
            return
        body: dict[str, Any] = {"data": {"ndarray": ndarray}}
        if tensor.get("name"):
            body["data"]["names"] = []
        status, reply = _post(STATE["upstream"] + "/api/v1.0/predictions", body, STATE["timeout"])
        if status != 200:
            self._send(status if status >= 400 else 502, {"error": reply.get("status", reply)})
            return
        out = reply.get("data", {})
        values = out.get("ndarray")
        if values is None and "tensor" in out:
            flat, shape = out["tensor"]["values"], out["tensor"]["shape"]
        else:
            flat, shape = _flatten(values if values is not None else [])
        self._send(
            200,
            {
                "model_name": name,
                "model_version": STATE["version"],
                "id": request.get("id", ""),
                "outputs": [{"name": "predict", "shape": shape, "datatype": _datatype(flat), "data": flat}],
            },
        )


def run_microservice(args: list[str]) -> int:
    """``seldon-core-microservice ARGS`` with every listening socket kept on loopback."""
    import socket

    # Running this file put mlserve/local/ first on sys.path; the user's modules must
    # not be shadowed by ours, so the model directory (cwd) takes its place.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.getcwd(), *(p for p in sys.path if os.path.abspath(p or ".") != here)]
    real_bind = socket.socket.bind

    def bind(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address and address[0] in ("0.0.0.0", "", "::"):
            address = ("127.0.0.1", *address[1:2])
        real_bind(self, address)

    socket.socket.bind = bind  # type: ignore[method-assign,assignment]
    try:
        import grpc

        server_cls = type(grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(1)))
        real_add = server_cls.add_insecure_port

        def add_insecure_port(self: Any, address: str) -> int:
            return real_add(self, address.replace("0.0.0.0", "127.0.0.1").replace("[::]", "127.0.0.1"))

        server_cls.add_insecure_port = add_insecure_port
    except Exception as exc:
        sys.stderr.write(f"warning: could not keep the gRPC port on loopback: {exc}\n")
    from seldon_core.microservice import main as microservice_main

    sys.argv = ["seldon-core-microservice", *args]
    microservice_main()
    return 0


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["--run-microservice"]:
        return run_microservice(raw[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--seldon-port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("microservice_args", nargs=argparse.REMAINDER, help="-- seldon-core-microservice arguments")
    args = parser.parse_args(raw)
    rest = args.microservice_args[1:] if args.microservice_args[:1] == ["--"] else args.microservice_args
    command = [sys.executable, os.path.abspath(__file__), "--run-microservice", *rest]
    STATE.update(
        name=args.name,
        version=args.version,
        upstream=f"http://127.0.0.1:{args.seldon_port}",
        timeout=args.timeout,
    )
    child = subprocess.Popen(command)  # same process group: stopping the group stops both

    def _stop(_signum: int, _frame: Any) -> None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
        os._exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    def _watch() -> None:
        code = child.wait()
        sys.stderr.write(f"seldon-core-microservice exited with {code}\n")
        sys.stderr.flush()
        os._exit(code or 1)

    threading.Thread(target=_watch, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    sys.stderr.write(f"V2 adapter on 127.0.0.1:{args.port} -> seldon protocol on {args.seldon_port}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    finally:
        time.sleep(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
