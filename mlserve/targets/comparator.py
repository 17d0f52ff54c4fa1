"""The shadow comparator a cluster stack runs: it pairs the answers of a primary and its shadow
by request id and counts whether they agree, for Prometheus.

Istio's mirror (and HTTPRoute's RequestMirror) discards the shadow's answers, so the answers
are taken where the serving layer already offers them: its payload logger, which sends each
answer as a CloudEvent (binary mode: attributes in ``ce-*`` headers, the payload as the body):

- KServe (``spec.predictor.logger: {mode: response, url, metadataHeaders: [X-Request-Id],
  metadataAnnotations: [mlserve.io/endpoint]}``): ``ce-inferenceservicename`` names the arm's
  InferenceService, ``ce-annotations`` its endpoint, and ``ce-metadata`` the ``X-Request-Id``
  the mesh gave the request, which a mirrored copy keeps;
- Seldon Core v1 (``graph.logger: {mode: response, url}``): ``ce-inferenceservicename`` is the
  SeldonDeployment (the endpoint), ``ce-endpoint`` the predictor (the arm), ``ce-requestid`` the
  ``Seldon-Puid`` header, which mlserve's mirroring route sets from ``x-request-id`` so that
  both predictors log one id.

Two answers with one id from two different arms are a pair, compared with
:func:`mlserve.answers.outputs_agree` (the local gateway's rule). Exported on ``/metrics``:

- ``mlserve_shadow_agreement_total{endpoint,first,second,agree}``: pairs, ``first`` < ``second``
  being the two arms' object names (InferenceService, or predictor);
- ``mlserve_shadow_answers_total{endpoint,arm}``: answers received;
- ``mlserve_shadow_unpaired_total{endpoint,arm}``: answers whose partner did not come within
  the window (or that were evicted to keep memory bounded); ``mlserve_shadow_pending``.

Memory is bounded: at most ``--max-pending`` unpaired answers are kept, each at most
``--window`` seconds. Standard library only (plus :mod:`mlserve.answers`, shipped beside it):
the rendered stack runs this file in a stock Python image from a ConfigMap. A comparator that
is down exports nothing, and a rollout's shadow look is then held, never passed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

try:  # in the package, or beside answers.py in the comparator's ConfigMap
    from mlserve.answers import outputs_agree
except ImportError:  # pragma: no cover - the cluster's layout
    from answers import outputs_agree  # type: ignore[no-redef]

PAIR = "mlserve_shadow_agreement_total"


def _header(headers: Any, name: str) -> str:
    return str(headers.get(name) or headers.get(name.lower()) or "")


def identify(headers: Any) -> tuple[str, str, str] | None:
    """(endpoint, arm, request id) of one logged answer, or None when it is not one."""
    kind = _header(headers, "ce-type")
    if not kind.endswith(".response"):
        return None
    service = _header(headers, "ce-inferenceservicename")
    if kind.startswith("io.seldon."):
        endpoint, arm, rid = service, _header(headers, "ce-endpoint"), _header(headers, "ce-requestid")
    else:
        endpoint, arm = service, service
        try:
            annotations = json.loads(_header(headers, "ce-annotations") or "{}")
            endpoint = str(annotations.get("mlserve.io/endpoint") or service)
        except ValueError:
            pass
        rid = ""
        try:
            meta = json.loads(_header(headers, "ce-metadata") or "{}")
            for key, values in meta.items():
                if key.lower() == "x-request-id" and values:
                    rid = str(values[0] if isinstance(values, list) else values)
        except ValueError:
            pass
        rid = rid or _header(headers, "ce-id")
    if not (endpoint and arm and rid):
        return None
    return endpoint, arm, rid


class Comparator:
    def __init__(self, *, window: float = 30.0, max_pending: int = 50_000) -> None:
        self.window = window
        self.max_pending = max_pending
        self.lock = threading.Lock()
        self.pending: OrderedDict[tuple[str, str], tuple[str, Any, float]] = OrderedDict()
        self.pairs: dict[tuple[str, str, str, str], int] = {}
        self.answers: dict[tuple[str, str], int] = {}
        self.unpaired: dict[tuple[str, str], int] = {}

    def _expire(self, now: float) -> None:
        while self.pending:
            key, (arm, _body, t) = next(iter(self.pending.items()))
            if now - t <= self.window and len(self.pending) <= self.max_pending:
                break
            self.pending.popitem(last=False)
            k = (key[0], arm)
            self.unpaired[k] = self.unpaired.get(k, 0) + 1

    def receive(self, endpoint: str, arm: str, rid: str, body: Any, now: float | None = None) -> bool | None:
        """Record one answer; the agreement when it completes a pair, else None."""
        now = time.monotonic() if now is None else now
        with self.lock:
            self.answers[(endpoint, arm)] = self.answers.get((endpoint, arm), 0) + 1
            self._expire(now)
            key = (endpoint, rid)
            other = self.pending.get(key)
            if other is None or other[0] == arm:
                self.pending[key] = (arm, body, now)
                return None
            del self.pending[key]
            other_arm, other_body, _t = other
            agree = outputs_agree(other_body, body)
            first, second = sorted((arm, other_arm))
            if agree is None:
                for a in (arm, other_arm):
                    self.unpaired[(endpoint, a)] = self.unpaired.get((endpoint, a), 0) + 1
                return None
            k = (endpoint, first, second, "true" if agree else "false")
            self.pairs[k] = self.pairs.get(k, 0) + 1
            return agree

    def exposition(self) -> str:
        def lab(**kv: str) -> str:
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in kv.items())
            return "{" + inner + "}"

        with self.lock:
            lines = [
                f"# HELP {PAIR} Pairs of a primary's and a shadow's answers to one request, by agreement.",
                f"# TYPE {PAIR} counter",
            ]
            lines += [
                f"{PAIR}{lab(endpoint=e, first=a, second=b, agree=g)} {n}"
                for (e, a, b, g), n in sorted(self.pairs.items())
            ]
            lines += ["# HELP mlserve_shadow_answers_total Logged answers received.",
                      "# TYPE mlserve_shadow_answers_total counter"]  # fmt: skip
            lines += [
                f"mlserve_shadow_answers_total{lab(endpoint=e, arm=a)} {n}"
                for (e, a), n in sorted(self.answers.items())
            ]
            lines += ["# HELP mlserve_shadow_unpaired_total Answers whose partner did not arrive in the window.",
                      "# TYPE mlserve_shadow_unpaired_total counter"]  # fmt: skip
            lines += [
                f"mlserve_shadow_unpaired_total{lab(endpoint=e, arm=a)} {n}"
                for (e, a), n in sorted(self.unpaired.items())
            ]
            lines += ["# HELP mlserve_shadow_pending Answers waiting for their partner.",
                      "# TYPE mlserve_shadow_pending gauge", f"mlserve_shadow_pending {len(self.pending)}"]  # fmt: skip
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def serve(comparator: Comparator, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _reply(self, code: int, body: bytes = b"", ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._reply(200, comparator.exposition().encode(), "text/plain; version=0.0.4")
            elif self.path.startswith("/healthz"):
                self._reply(200, b"ok\n")
            else:
                self._reply(404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0) or 0)
            raw = self.rfile.read(length) if length else b""
            found = identify(self.headers)
            if found is None:
                self._reply(202)  # not an answer (a request event, another type): accepted, ignored
                return
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            comparator.receive(*found, body)
            self._reply(202)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pair and compare a primary's and its shadow's logged answers.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (the stack sets 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--window", type=float, default=30.0, help="seconds an answer waits for its partner")
    parser.add_argument("--max-pending", type=int, default=50_000, help="most unpaired answers kept")
    args = parser.parse_args(argv)
    server = serve(Comparator(window=args.window, max_pending=args.max_pending), args.host, args.port)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
