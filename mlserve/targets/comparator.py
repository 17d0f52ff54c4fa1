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

An endpoint whose monitoring is on has one payload logger per arm for two readers: its
drift collector and this comparator. The logger then posts every request and response
(``mode: all``) to ``/log/ENDPOINT/VERSION`` here, and ``--forward ENDPOINT=URL`` passes each
event on, unchanged (body, ``ce-*`` headers and path), to ``URL/log/ENDPOINT/VERSION``, the
drift collector, from a bounded queue (``--forward-queue``, 10,000 events; a full queue
drops, a collector that does not answer within 5 s loses that event):
``mlserve_shadow_forwarded_total{endpoint,outcome="sent"|"failed"|"dropped"}`` counts them.
Forwarding never delays an answer's comparison, and a collector that is down costs only
its own summaries.

Memory is bounded: at most ``--max-pending`` unpaired answers are kept, each at most
``--window`` seconds. Standard library only (plus :mod:`mlserve.answers`, shipped beside it):
the rendered stack runs this file in a stock Python image from a ConfigMap. A comparator that
is down exports nothing, and a rollout's shadow look is then held, never passed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping
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


class Forwarder:
    """Pass logged events on to each endpoint's drift collector (``targets``: endpoint -> base
    URL), from a bounded queue drained by one thread; ``counts`` feed ``/metrics``."""

    def __init__(self, targets: Mapping[str, str], *, capacity: int = 10_000, timeout: float = 5.0) -> None:
        self.targets = {k: v.rstrip("/") for k, v in targets.items()}
        self.timeout = timeout
        self.queue: queue.Queue[tuple[str, str, dict[str, str], bytes]] = queue.Queue(maxsize=capacity)
        self.counts: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._drain, name="forward", daemon=True)
        self.thread.start()

    def _count(self, endpoint: str, outcome: str) -> None:
        with self.lock:
            self.counts[(endpoint, outcome)] = self.counts.get((endpoint, outcome), 0) + 1

    def offer(self, path: str, headers: Any, body: bytes) -> None:
        """Queue one event posted to ``path`` (``/log/ENDPOINT/VERSION``) for its endpoint's collector."""
        parts = path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 3 or parts[0] != "log" or parts[1] not in self.targets:
            return
        endpoint = parts[1]
        keep = {k: str(v) for k, v in headers.items() if k.lower().startswith("ce-") or k.lower() == "content-type"}
        try:
            self.queue.put_nowait((endpoint, f"{self.targets[endpoint]}/{'/'.join(parts)}", keep, body))
        except queue.Full:
            self._count(endpoint, "dropped")

    def _drain(self) -> None:
        while True:
            endpoint, url, headers, body = self.queue.get()
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    answer.read()
                self._count(endpoint, "sent")
            except (urllib.error.URLError, OSError, ValueError):
                self._count(endpoint, "failed")

    def exposition(self) -> str:
        with self.lock:
            items = sorted(self.counts.items())
        lines = [
            "# HELP mlserve_shadow_forwarded_total Logged events passed on to the endpoint's drift collector.",
            "# TYPE mlserve_shadow_forwarded_total counter",
        ]
        lines += [
            f'mlserve_shadow_forwarded_total{{endpoint="{_escape(ep)}",outcome="{outcome}"}} {n}'
            for (ep, outcome), n in items
        ]
        return "\n".join(lines) + "\n"


def serve(comparator: Comparator, host: str, port: int, forwarder: Forwarder | None = None) -> ThreadingHTTPServer:
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
                text = comparator.exposition() + (forwarder.exposition() if forwarder is not None else "")
                self._reply(200, text.encode(), "text/plain; version=0.0.4")
            elif self.path.startswith("/healthz"):
                self._reply(200, b"ok\n")
            else:
                self._reply(404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0) or 0)
            raw = self.rfile.read(length) if length else b""
            if forwarder is not None:
                forwarder.offer(self.path, self.headers, raw)  # every event, requests included
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
    parser.add_argument(
        "--forward",
        action="append",
        default=[],
        metavar="ENDPOINT=URL",
        help="pass every event logged for ENDPOINT on to URL/log/ENDPOINT/VERSION (its drift collector)",
    )
    parser.add_argument("--forward-queue", type=int, default=10_000, help="most events waiting to be passed on")
    args = parser.parse_args(argv)
    targets = {}
    for item in args.forward:
        endpoint, sep, url = item.partition("=")
        if not sep or not endpoint or not url.startswith(("http://", "https://")):
            parser.error(f"--forward {item!r}: expected ENDPOINT=http://HOST[:PORT]")
        targets[endpoint] = url
    forwarder = Forwarder(targets, capacity=args.forward_queue) if targets else None
    server = serve(Comparator(window=args.window, max_pending=args.max_pending), args.host, args.port, forwarder)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
