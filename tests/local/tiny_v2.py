"""A minimal V2 inference server for the ``custom`` runtime tests (standard library only).

``python tiny_v2.py --port P --model NAME --value X``: every inference answers one output
``predict`` holding X once per row of the first input.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--value", type=float, default=1.0)
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *a: Any) -> None:
            return

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{args.model}/ready"):
                self._send(200, {"ready": True})
            elif self.path == f"/v2/models/{args.model}":
                self._send(200, {"name": args.model, "versions": [], "platform": "tiny", "inputs": [], "outputs": []})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            if self.path != f"/v2/models/{args.model}/infer":
                self._send(404, {"error": "not found"})
                return
            rows = (body["inputs"][0].get("shape") or [1])[0]
            self._send(
                200,
                {
                    "model_name": args.model,
                    "outputs": [{"name": "predict", "shape": [rows], "datatype": "FP64", "data": [args.value] * rows}],
                },
            )

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
