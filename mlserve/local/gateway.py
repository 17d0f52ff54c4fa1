"""The local traffic gateway: one ASGI process per project that routes V2 inference requests
to an endpoint's versions by weight, sticky key or shadow mirror, and exports the metrics
the rollout statistics read.

Started by deploy as ``python -m mlserve.local.gateway --config .mlserve/local/gateway.json``;
see :mod:`mlserve.local.gateway_config` for the config and :mod:`mlserve.local.admin_client`
for the admin API. Two listeners on 127.0.0.1 in one event loop: the data plane and the
admin API. When both are bound the process prints one JSON line
``{"event": "ready", "pid": N, "port": P, "admin_port": A}`` to stdout (ports resolved, so
``port: 0`` in the config works for tests).

Data plane routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` and ``GET /v1/models``
for endpoints with ``protocol = "openai"`` (see :mod:`mlserve.local.openai_proxy`),
``POST /v2/models/{ep}/infer``, ``POST /v2/models/{ep}/versions/{v}/infer``
(pinned version, no retry), ``GET /v2/models/{ep}[/ready]`` (forwarded to the baseline),
``GET /v2/models/{ep}/versions/{v}[/ready]``, ``GET /v2/health/live|ready``, ``GET /metrics``.

Metric semantics (names are a contract, DESIGN.md):

- ``mlserve_requests_total{endpoint,variant,code}`` counts *attempts* at a variant: ``code`` is
  the HTTP status (``"200"``, ``"500"`` for an injected or upstream error, ``"504"`` for an
  upstream timeout) or ``"connect_error"`` when the variant refused the connection or dropped
  it before answering (the request is then retried once on another variant and counted there
  too). A client-facing 503 after both attempts failed is not counted again.
- ``mlserve_request_duration_seconds{endpoint,variant}``: time at the gateway from the start
  of the attempt (injected latency included) to the upstream's full answer; not observed for
  connect errors.
- ``mlserve_shadow_requests_total{endpoint,variant,code}``: mirrors sent to the shadow
  ``variant``, by its answer's code; ``"dropped"`` when more than ``shadow_max_inflight``
  mirrors were pending.
- ``mlserve_shadow_agreement_total{endpoint,variant,agree="true"|"false"}``: mirrors where both
  the routed answer and the shadow answer were 200 V2 responses, compared on
  ``outputs[].data`` with the configured numeric tolerance.
- ``mlserve_shadow_duration_seconds{endpoint,variant}``: latency of mirrored requests at the
  shadow variant (a shadow rollout gates on it); not observed for connect errors.
- ``mlserve_feedback_total{endpoint,variant,outcome}`` and ``mlserve_feedback_reward_total``:
  A/B business outcomes posted to ``POST /v2/models/{ep}/feedback`` (see ``Gateway.feedback``).
- ``mlserve_traffic_weight{endpoint,variant}``: the current routing weight (percent).
- ``mlserve_drift_*`` and ``mlserve_predictions_total``: drift summaries of the endpoints whose
  config has ``monitoring`` (see :mod:`mlserve.monitoring.summaries`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import random
import re
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request, cookie_parser
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mlserve import fsutil
from mlserve.local.gateway_config import (
    EndpointConfig,
    EndpointStatus,
    Fault,
    GatewayConfig,
    GatewayConfigError,
    GatewayState,
    TrafficFile,
    TrafficState,
    VersionStatus,
    load_gateway_config,
    load_traffic_file,
    read_token_file,
    restart_fields,
)
from mlserve.local.http_timeouts import HEADER_TIMEOUT, BodyTooLarge, header_timeout_protocol, read_body
from mlserve.local.openai_proxy import ROUTES as OPENAI_ROUTES
from mlserve.local.openai_proxy import OpenAIProxy
from mlserve.local.routing import RouteTable, outputs_agree, sticky_bucket
from mlserve.local.upstream import Upstream, UpstreamDown, UpstreamTimeout, make_upstream
from mlserve.metrics.buckets import FineHistogram
from mlserve.metrics.queries import GATEWAY_LATENCY_BUCKETS
from mlserve.monitoring.summaries import DriftCollector, ProfileError, build_monitors, rebuild_monitors

log = logging.getLogger("mlserve.gateway")

ADMIN_MAX_BODY = 64 * 1024
VARIANT_HEADER = "x-mlserve-variant"
VARIANT_HEADER_B = VARIANT_HEADER.encode("ascii")


def _raw_error(status: int, message: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    return status, json.dumps({"error": message}).encode(), [(b"content-type", b"application/json")]


def _error(status: int, message: str, variant: str | None = None) -> JSONResponse:
    headers = {VARIANT_HEADER: variant} if variant else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


FEEDBACK_MAX_BODY = 4096
FEEDBACK_MAX_OUTCOMES = 16
FEEDBACK_OUTCOME = re.compile(r"[a-z0-9_-]{1,32}")


class RestartNeeded(GatewayConfigError):
    """A reload asked for something only a new gateway process can do (a new listening address)."""


@dataclass(frozen=True)
class Attempt:
    """What one try at one variant produced."""

    variant: str
    status: int  # 0: no HTTP answer (connect error / disconnect)
    content: bytes
    content_type: str
    code: str


class Metrics:
    """prometheus-client objects in the gateway's own registry, with label children cached."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "mlserve_requests_total",
            "Inference attempts per endpoint, variant and status code",
            ["endpoint", "variant", "code"],
            registry=self.registry,
        )
        # fine buckets (3% apart, mlserve.metrics.buckets) so that a p99 within 10% can be compared
        self.duration = FineHistogram(
            "mlserve_request_duration_seconds",
            "Inference latency at the gateway per endpoint and variant (injected latency included)",
            ("endpoint", "variant"),
            GATEWAY_LATENCY_BUCKETS,
        )
        self.registry.register(self.duration)
        self.shadow_requests = Counter(
            "mlserve_shadow_requests_total",
            "Mirrored requests per endpoint, shadow variant and status code",
            ["endpoint", "variant", "code"],
            registry=self.registry,
        )
        self.shadow_agreement = Counter(
            "mlserve_shadow_agreement_total",
            "Mirrored requests whose outputs agree (or not) with the routed variant's",
            ["endpoint", "variant", "agree"],
            registry=self.registry,
        )
        self.shadow_duration = FineHistogram(
            "mlserve_shadow_duration_seconds",
            "Latency of mirrored requests at the shadow variant (injected latency included)",
            ("endpoint", "variant"),
            GATEWAY_LATENCY_BUCKETS,
        )
        self.registry.register(self.shadow_duration)
        self.feedback = Counter(
            "mlserve_feedback_total",
            "A/B feedback (business outcomes) per endpoint, variant and outcome",
            ["endpoint", "variant", "outcome"],
            registry=self.registry,
        )
        self.feedback_reward = Counter(
            "mlserve_feedback_reward_total",
            "Sum of the rewards reported with A/B feedback per endpoint and variant",
            ["endpoint", "variant"],
            registry=self.registry,
        )
        self.weight = Gauge(
            "mlserve_traffic_weight",
            "Current routing weight (percent) per endpoint and variant",
            ["endpoint", "variant"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, ...], Any] = {}

    def count(self, endpoint: str, variant: str, code: str, seconds: float | None) -> None:
        key = ("r", endpoint, variant, code)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(endpoint, variant, code)
        child.inc()
        if seconds is not None:
            self.duration.observe((endpoint, variant), seconds)

    def init_series(self, endpoint: str, variants: list[str]) -> None:
        """Zero-valued series exist from the start, so PromQL sees a variant before its first request."""
        for v in variants:
            for code in ("200", "500", "connect_error"):  # error series exist before the first error
                self.requests.labels(endpoint, v, code)
            self.duration.labels(endpoint, v)


class Gateway:
    """Shared state of both listeners. Routing tables are swapped whole, never mutated."""

    def __init__(
        self,
        config: GatewayConfig,
        token: str,
        *,
        rng: random.Random | None = None,
        config_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.token = token
        self.rand = (rng or random.Random()).random
        self.metrics = Metrics()
        self.tables: dict[str, RouteTable] = {}
        self.started_at = time.time()
        self.admin_lock = asyncio.Lock()
        self.shadow_tasks: set[asyncio.Task[None]] = set()
        self.feedback_outcomes: dict[str, set[str]] = {}
        self.client: Upstream | None = None
        self.shadow_client: Upstream | None = None
        self.bound_port = config.port
        self.bound_admin_port = config.admin_port
        self.reloads = 0
        self.draining = False  # set when this process hands its listeners over: answers close connections
        # id(table) -> [table, requests holding it]: what a removed upstream still owes (see inflight)
        self._holds: dict[int, list[Any]] = {}
        self.drift = build_monitors(config.endpoints)  # endpoints that opt in to drift summaries
        self._drift_export: DriftCollector | None = None
        self._export_drift()
        restored = self._restore()
        for name, ep in config.endpoints.items():
            traffic = restored.get(name, ep.traffic)
            self.tables[name] = self._table(name, ep, traffic, dict(ep.faults))
            self.metrics.init_series(name, list(ep.versions))
            self._export_weights(name)
        self.llm = OpenAIProxy(self)  # /v1/* routes of protocol = "openai" endpoints

    @staticmethod
    def _table(
        name: str, ep: EndpointConfig, traffic: TrafficState, faults: dict[str, Fault], gen: int = 0
    ) -> RouteTable:
        return RouteTable.build(
            name, ep.baseline, list(ep.versions), traffic, faults, gen,
            urls=ep.versions, sticky_header=ep.sticky_header, sticky_cookie=ep.sticky_cookie,
        )  # fmt: skip

    @staticmethod
    def _with(old: RouteTable, *, traffic: TrafficState | None = None, faults: dict[str, Fault] | None = None,
              generation: int | None = None) -> RouteTable:  # fmt: skip
        """The same endpoint and arms with new traffic or faults."""
        return RouteTable.build(
            old.endpoint, old.baseline, list(old.urls), traffic or old.traffic,
            old.faults if faults is None else faults, old.generation if generation is None else generation,
            urls=old.urls, sticky_header=old.sticky_header, sticky_cookie=old.sticky_cookie,
        )  # fmt: skip

    # -- requests in flight, by route table ---------------------------------------

    def hold(self, table: RouteTable) -> None:
        entry = self._holds.get(id(table))
        if entry is None:
            self._holds[id(table)] = [table, 1]
        else:
            entry[1] += 1

    def release(self, table: RouteTable) -> None:
        entry = self._holds[id(table)]
        entry[1] -= 1
        if entry[1] <= 0:
            del self._holds[id(table)]

    def inflight(self) -> dict[str, int]:
        """Requests (and mirrors) in flight per upstream URL, counted on every route table that
        names the URL: a removed upstream is drained when no request holds a table naming it.
        A request is held from the moment it takes its table, before its body is read, so one
        that took the old table just before a reload is counted too."""
        out: dict[str, int] = {}
        for table, n in self._holds.values():
            for url in set(table.urls.values()):
                out[url] = out.get(url, 0) + n
        return out

    def routed_urls(self) -> set[str]:
        return {u for t in self.tables.values() for u in t.urls.values()}

    # -- state file ------------------------------------------------------------

    def _restore(self) -> dict[str, TrafficState]:
        """Traffic from the state file, endpoint by endpoint, carried over to the config's arms
        as a reload would (an arm that is gone gives its weight to the baseline); an entry that
        is broken falls back to the config's initial traffic."""
        saved = load_traffic_file(self.config.state_file)
        if saved is None:
            return {}
        restored: dict[str, TrafficState] = {}
        for name, traffic in saved.endpoints.items():
            ep = self.config.endpoints.get(name)
            if ep is None:
                continue
            try:
                moved = traffic.carried_over(list(ep.versions), ep.baseline)
                restored[name] = moved.validated(ep.versions, f"{self.config.state_file}: endpoints.{name}")
            except GatewayConfigError as exc:
                log.warning("ignoring saved traffic of %s: %s", name, exc)
        return restored

    def _persist(self, tables: dict[str, RouteTable]) -> None:
        data = TrafficFile({k: t.traffic for k, t in tables.items()}, updated_at=time.time())
        fsutil.atomic_write_json(self.config.state_file, data.to_dict())

    def _export_weights(self, endpoint: str) -> None:
        table = self.tables[endpoint]
        for v in table.urls:
            self.metrics.weight.labels(endpoint, v).set(table.traffic.weights.get(v, 0))

    # -- reload ----------------------------------------------------------------

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file and apply it (``POST /admin/reload``, SIGHUP)."""
        if self.config_path is None:
            raise GatewayConfigError("this gateway was started without a config file to reload")
        new = await asyncio.to_thread(load_gateway_config, Path(self.config_path))
        return await self.apply_config(new)

    async def apply_config(self, new: GatewayConfig) -> dict[str, Any]:
        """Swap in the route tables of ``new`` at once; requests in flight keep their tables.

        Per endpoint: arms that stay keep their live weights (a rollout's split survives),
        the weight of a removed arm goes to the baseline, a new arm starts at 0. A fault that
        the new config changes is taken from it; one it leaves alone keeps its live value
        (set through the admin API). Limits apply to requests that start from now on.
        """
        async with self.admin_lock:
            fixed = restart_fields(self.config, new)
            if fixed:
                raise RestartNeeded(
                    f"{', '.join(fixed)}: changing {'it' if len(fixed) == 1 else 'these'} needs a new gateway "
                    "process (the supervisor hands the listening sockets over); nothing was changed"
                )
            old_cfg, old_tables = self.config, self.tables
            tables: dict[str, RouteTable] = {}
            changes: list[str] = []
            for name, ep in new.endpoints.items():
                old = old_tables.get(name)
                old_ep = old_cfg.endpoints.get(name)
                if old is None or old_ep is None:
                    tables[name] = self._table(name, ep, ep.traffic, dict(ep.faults))
                    changes.append(f"{name}: added")
                    continue
                traffic = old.traffic.carried_over(list(ep.versions), ep.baseline)
                faults: dict[str, Fault] = {}
                for arm in ep.versions:
                    wanted, before = ep.faults.get(arm), old_ep.faults.get(arm)
                    fault = wanted if wanted != before else old.faults.get(arm)
                    if fault is not None and fault.active:
                        faults[arm] = fault
                gen = old.generation + (1 if traffic != old.traffic else 0)
                tables[name] = self._table(name, ep, traffic, faults, gen)
                changes += _describe_change(name, old, tables[name])
            changes += [f"{name}: removed" for name in old_tables if name not in new.endpoints]
            try:
                drift = rebuild_monitors(self.drift, new.endpoints)
            except ProfileError as exc:
                raise GatewayConfigError(f"{exc}; nothing was changed") from None
            if {k: t.traffic for k, t in tables.items()} != {k: t.traffic for k, t in old_tables.items()}:
                try:
                    await asyncio.to_thread(self._persist, tables)
                except OSError as exc:
                    raise GatewayConfigError(
                        f"cannot save traffic state to {new.state_file}: {exc.strerror or exc}; nothing was changed"
                    ) from None
            self.config = new
            self.tables = tables  # one reference swap: requests in flight keep their tables
            self.drift = drift
            self._export_drift()
            for client in (self.client, self.shadow_client):
                if client is not None:
                    client.set_timeouts(new.upstream_timeout, new.connect_timeout)
            for name, table in tables.items():
                self.metrics.init_series(name, list(table.urls))
                self._export_weights(name)
                old = old_tables.get(name)
                for arm in old.urls if old is not None else ():
                    if arm not in table.urls:
                        with contextlib.suppress(KeyError):
                            self.metrics.weight.remove(name, arm)
            self.reloads += 1
        log.info("config generation %d applied: %s", new.generation, "; ".join(changes) or "no route changes")
        return {"generation": new.generation, "changes": changes, "inflight": self.inflight(), "pid": os.getpid()}

    def _export_drift(self) -> None:
        """Drift summaries on /metrics once an endpoint opts in; the collector reads the current
        monitors, which a reload swaps as one reference."""
        if self._drift_export is None and self.drift:
            self._drift_export = DriftCollector(self.drift)
            self.metrics.registry.register(self._drift_export)
        elif self._drift_export is not None:
            self._drift_export.monitors = self.drift

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        timeouts = {"timeout": cfg.upstream_timeout, "connect_timeout": cfg.connect_timeout}
        self.client = make_upstream(cfg.upstream_client, max_connections=1024, **timeouts)
        # Mirrors get their own pool: a slow shadow can never hold the connections users need.
        self.shadow_client = make_upstream(cfg.upstream_client, max_connections=cfg.shadow_max_inflight, **timeouts)
        await self.llm.start()

    async def stop(self) -> None:
        for task in list(self.shadow_tasks):
            task.cancel()
        if self.shadow_tasks:
            await asyncio.gather(*self.shadow_tasks, return_exceptions=True)
        for client in (self.client, self.shadow_client):
            if client is not None:
                await client.close()
        await self.llm.stop()

    # -- forwarding ------------------------------------------------------------

    async def attempt(self, client: Upstream, table: RouteTable, variant: str, body: bytes) -> Attempt:
        """One try at one variant, faults applied first (they behave like a slow or failing server)."""
        endpoint = table.endpoint
        fault = table.faults.get(variant)
        if fault is not None:
            if fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000.0)
            if fault.error_rate and self.rand() < fault.error_rate:
                msg = json.dumps({"error": f"injected fault: error_rate={fault.error_rate:g} on {variant}"}).encode()
                return Attempt(variant, 500, msg, "application/json", "500")
        url = f"{table.urls[variant]}/v2/models/{endpoint}/infer"
        try:
            answer = await client.post(url, body)
        except UpstreamDown:
            return Attempt(variant, 0, b"", "", "connect_error")
        except UpstreamTimeout:
            msg = json.dumps({"error": f"version {variant} of {endpoint} did not answer in time"}).encode()
            return Attempt(variant, 504, msg, "application/json", "504")
        return Attempt(variant, answer.status, answer.content, answer.content_type, str(answer.status))

    async def route(self, table: RouteTable, variant: str, body: bytes, *, retry: bool) -> Attempt:
        assert self.client is not None
        endpoint = table.endpoint
        t0 = time.perf_counter()
        result = await self.attempt(self.client, table, variant, body)
        if result.status == 0:
            self.metrics.count(endpoint, variant, "connect_error", None)
            other = table.fallback(variant, self.rand) if retry else None
            if other is None:
                return result
            t0 = time.perf_counter()
            result = await self.attempt(self.client, table, other, body)
            if result.status == 0:
                self.metrics.count(endpoint, other, "connect_error", None)
                return result
        self.metrics.count(endpoint, result.variant, result.code, time.perf_counter() - t0)
        return result

    def mirror(self, table: RouteTable, target: str, body: bytes, primary: asyncio.Future[Attempt]) -> None:
        if len(self.shadow_tasks) >= self.config.shadow_max_inflight:
            self.metrics.shadow_requests.labels(table.endpoint, target, "dropped").inc()
            return
        self.hold(table)
        task = asyncio.get_running_loop().create_task(self._shadow(table, target, body, primary))
        self.shadow_tasks.add(task)
        task.add_done_callback(self.shadow_tasks.discard)
        task.add_done_callback(lambda _t: self.release(table))  # also when cancelled before it ran

    async def _shadow(self, table: RouteTable, target: str, body: bytes, primary: asyncio.Future[Attempt]) -> None:
        assert self.shadow_client is not None
        endpoint = table.endpoint
        t0 = time.perf_counter()
        result = await self.attempt(self.shadow_client, table, target, body)
        self.metrics.shadow_requests.labels(endpoint, target, result.code).inc()
        if result.status:  # the shadow's latency gates a shadow rollout like the routed one's
            self.metrics.shadow_duration.observe((endpoint, target), time.perf_counter() - t0)
        try:
            routed = await primary
        except (asyncio.CancelledError, Exception):
            return
        if result.status != 200 or routed.status != 200:
            return
        try:
            agree = outputs_agree(
                json.loads(routed.content), json.loads(result.content), self.config.shadow_rtol, self.config.shadow_atol
            )
        except ValueError:
            agree = None
        if agree is not None:
            self.metrics.shadow_agreement.labels(endpoint, target, "true" if agree else "false").inc()

    def sticky_key(self, headers: list[tuple[bytes, bytes]], table: RouteTable) -> bytes | None:
        """The user key as opaque bytes (header first, then cookie); never echoed or logged."""
        wanted = table.sticky_header.encode("ascii")
        cookie_header: bytes | None = None
        for name, value in headers:
            if name == wanted:
                return value
            if name == b"cookie":
                cookie_header = value
        if table.sticky_cookie and cookie_header:
            cookie = cookie_parser(cookie_header.decode("latin-1")).get(table.sticky_cookie)
            if cookie:
                return cookie.encode("latin-1", "replace")
        return None

    # -- data plane handlers ------------------------------------------------------

    async def infer_asgi(self, scope: Scope, receive: Receive, send: Send, endpoint: str, pinned: str | None) -> None:
        """The hot path as a plain ASGI handler: Starlette's Request/Response and middleware cost
        more CPU per request than the rest of the gateway together on a small machine."""
        status, body, headers = await self.infer(scope, receive, endpoint, pinned)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def infer(
        self, scope: Scope, receive: Receive, endpoint: str, pinned: str | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        table = self.tables.get(endpoint)
        if table is None:
            return _raw_error(404, f"unknown endpoint {endpoint!r} (endpoints: {', '.join(self.tables)})")
        if pinned is not None and pinned not in table.order:
            return _raw_error(
                404, f"unknown version {pinned!r} of endpoint {endpoint!r} (versions: {', '.join(table.order)})"
            )
        self.hold(table)
        try:
            return await self._infer(scope, receive, table, pinned)
        finally:
            self.release(table)

    async def _infer(
        self, scope: Scope, receive: Receive, table: RouteTable, pinned: str | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        endpoint = table.endpoint
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        try:
            body = await read_body(headers, receive, self.config.max_body_bytes, self.config.body_timeout)
        except BodyTooLarge:
            return _raw_error(413, f"request body exceeds {self.config.max_body_bytes} bytes")
        except TimeoutError:
            return _raw_error(408, f"request body not received within {self.config.body_timeout:g} s")
        except ClientDisconnect:
            return _raw_error(400, "client disconnected")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return _raw_error(400, f"request body is not valid JSON: {exc}")
        if not isinstance(payload, dict):
            return _raw_error(400, "request body must be a JSON object (a V2 inference request)")

        if pinned is not None:
            variant, shadow_to = pinned, None
        else:
            key = self.sticky_key(headers, table) if table.traffic.mode == "sticky" else None
            if key is not None and len(key) > self.config.sticky_key_max_bytes:
                return _raw_error(400, f"sticky key longer than {self.config.sticky_key_max_bytes} bytes")
            variant = table.choose(key, self.rand)
            shadow_to = table.shadow_target(variant, self.rand)

        primary: asyncio.Future[Attempt] | None = None
        if shadow_to is not None:
            primary = asyncio.get_running_loop().create_future()
            self.mirror(table, shadow_to, body, primary)
        try:
            result = await self.route(table, variant, body, retry=pinned is None)
        except BaseException:
            if primary is not None:
                primary.cancel()
            raise
        if primary is not None and not primary.done():
            primary.set_result(result)
        if result.status == 200 and endpoint in self.drift:
            self.drift[endpoint].observe(result.variant, payload, result.content)
        if result.status == 0:
            tried = variant if pinned is not None else f"{variant} and a fallback"
            return _raw_error(503, f"no version of endpoint {endpoint!r} could answer ({tried} refused the connection)")
        out = [(VARIANT_HEADER_B, result.variant.encode("ascii"))]
        if result.content_type:
            out.append((b"content-type", result.content_type.encode("latin-1")))
        return result.status, result.content, out

    async def feedback(self, request: Request) -> Response:
        """A/B business outcomes: ``{"outcome": "purchase", "variant": "v2"?, "reward": 12.5?}``.

        The variant is the explicit field, else the one the user's sticky key routes to (the
        variant that answered that user's inference requests under a sticky split). Counted in
        ``mlserve_feedback_total{endpoint,variant,outcome}`` (and the reward, when given, in
        ``mlserve_feedback_reward_total``); at most FEEDBACK_MAX_OUTCOMES distinct outcomes per
        endpoint, so a client cannot blow up the metric's cardinality.
        """
        endpoint = request.path_params["endpoint"]
        table = self.tables.get(endpoint)
        if table is None:
            return _error(404, f"unknown endpoint {endpoint!r}")
        try:
            raw = await read_body(
                request.scope["headers"], request.receive, FEEDBACK_MAX_BODY, self.config.body_timeout
            )
            data = json.loads(raw)
        except BodyTooLarge:
            return _error(413, f"feedback body exceeds {FEEDBACK_MAX_BODY} bytes")
        except TimeoutError:
            return _error(408, f"request body not received within {self.config.body_timeout:g} s")
        except ClientDisconnect:
            return Response(status_code=400)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _error(400, "feedback body is not valid JSON")
        if not isinstance(data, dict):
            return _error(400, 'feedback body must be a JSON object like {"outcome": "purchase"}')
        outcome = data.get("outcome")
        if not isinstance(outcome, str) or not FEEDBACK_OUTCOME.fullmatch(outcome):
            return _error(400, "outcome must be 1-32 characters of a-z, 0-9, '_' or '-'")
        reward = data.get("reward")
        if reward is not None and (
            isinstance(reward, bool) or not isinstance(reward, int | float) or not 0 <= reward < 1e12
        ):
            return _error(400, "reward must be a number >= 0")
        variant = data.get("variant")
        if variant is None:
            key = self.sticky_key(request.scope["headers"], table)
            if key is None or table.traffic.mode != "sticky":
                return _error(
                    400, 'no variant: send "variant", or the sticky key while the endpoint runs a sticky split'
                )
            variant = table.by_bucket(sticky_bucket(key))
        elif variant not in table.order:
            return _error(400, f"unknown version {variant!r} of endpoint {endpoint!r}")
        seen = self.feedback_outcomes.setdefault(endpoint, set())
        if outcome not in seen:
            if len(seen) >= FEEDBACK_MAX_OUTCOMES:
                return _error(400, f"at most {FEEDBACK_MAX_OUTCOMES} distinct outcomes per endpoint")
            seen.add(outcome)
        self.metrics.feedback.labels(endpoint, variant, outcome).inc()
        if reward:
            self.metrics.feedback_reward.labels(endpoint, variant).inc(float(reward))
        return JSONResponse(
            {"endpoint": endpoint, "variant": variant, "outcome": outcome}, headers={VARIANT_HEADER: variant}
        )

    async def metadata(self, request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        table = self.tables.get(endpoint)
        if table is None:
            return _error(404, f"unknown endpoint {endpoint!r}")
        version = request.path_params.get("version", table.baseline)
        if version not in table.order:
            return _error(404, f"unknown version {version!r} of endpoint {endpoint!r}")
        suffix = "/ready" if request.url.path.endswith("/ready") else ""
        url = f"{table.urls[version]}/v2/models/{endpoint}{suffix}"
        assert self.client is not None
        self.hold(table)
        try:
            answer = await self.client.get(url)
        except UpstreamTimeout:
            return _error(504, f"version {version} of {endpoint} did not answer in time", version)
        except UpstreamDown:
            return _error(503, f"version {version} of endpoint {endpoint!r} is down", version)
        finally:
            self.release(table)
        return Response(
            answer.content,
            status_code=answer.status,
            headers={VARIANT_HEADER: version},
            media_type=answer.content_type or None,
        )

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        return JSONResponse({"ready": self.client is not None}, status_code=200 if self.client else 503)

    async def metrics_page(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- admin API -------------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        given = request.headers.get("authorization", "")
        expected = f"Bearer {self.token}"
        return hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode("latin-1"))

    async def _admin_json(self, request: Request) -> Any:
        try:
            body = await read_body(request.scope["headers"], request.receive, ADMIN_MAX_BODY, 5.0)
        except (TimeoutError, ClientDisconnect):
            raise GatewayConfigError("body not received") from None
        except BodyTooLarge:
            raise GatewayConfigError(f"body exceeds {ADMIN_MAX_BODY} bytes") from None
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise GatewayConfigError(f"body is not valid JSON: {exc}") from None

    async def _probe(self, url: str, path: str = "/v2/health/ready") -> bool:
        assert self.client is not None
        try:
            answer = await self.client.get(f"{url}{path}", timeout=1.0)
        except (UpstreamDown, UpstreamTimeout):
            return False
        return answer.status == 200

    async def endpoint_status(self, endpoint: str, probe: bool) -> EndpointStatus:
        table = self.tables[endpoint]
        names = list(table.urls)
        ep = self.config.endpoints.get(endpoint)
        path = "/health" if ep is not None and ep.protocol == "openai" else "/v2/health/ready"  # OpenAI servers' own
        health: list[bool | None] = (
            list(await asyncio.gather(*(self._probe(table.urls[v], path) for v in names)))
            if probe
            else [None] * len(names)
        )
        return EndpointStatus(
            baseline=table.baseline,
            traffic=table.traffic,
            sticky_header=table.sticky_header,
            sticky_cookie=table.sticky_cookie,
            generation=table.generation,
            versions={
                v: VersionStatus(
                    url=table.urls[v],
                    weight=int(table.traffic.weights.get(v, 0)),
                    fault=table.faults.get(v, Fault()),
                    healthy=h,
                )
                for v, h in zip(names, health, strict=True)
            },
        )

    async def admin_health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "pid": os.getpid(), "endpoints": list(self.tables)})

    async def admin_state(self, request: Request) -> Response:
        probe = request.query_params.get("probe", "1") not in ("0", "false", "no")
        names = list(self.tables)
        statuses = await asyncio.gather(*(self.endpoint_status(ep, probe) for ep in names))
        state = GatewayState(
            endpoints=dict(zip(names, statuses, strict=True)),
            pid=os.getpid(),
            port=self.bound_port,
            admin_port=self.bound_admin_port,
            started_at=self.started_at,
            config_generation=self.config.generation,
            reloads=self.reloads,
        )
        return JSONResponse(state.to_dict())

    async def admin_reload(self, request: Request) -> Response:
        try:
            result = await self.reload()
        except RestartNeeded as exc:
            return _error(409, str(exc))
        except GatewayConfigError as exc:
            return _error(400, f"config not applied: {exc}")
        return JSONResponse(result)

    async def admin_upstreams(self, request: Request) -> Response:
        """What the supervisor asks before it stops a removed model server."""
        return JSONResponse(
            {
                "pid": os.getpid(),
                "config_generation": self.config.generation,
                "routed": sorted(self.routed_urls()),
                "inflight": self.inflight(),
                "draining": self.draining,
            }
        )

    async def admin_traffic(self, request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        if endpoint not in self.tables:
            return _error(404, f"unknown endpoint {endpoint!r} (endpoints: {', '.join(self.tables)})")
        try:
            wanted = TrafficState.from_dict(await self._admin_json(request))
        except GatewayConfigError as exc:
            return _error(400, str(exc))
        async with self.admin_lock:
            old = self.tables.get(endpoint)
            if old is None:  # removed by a reload while the body was read
                return _error(404, f"unknown endpoint {endpoint!r} (endpoints: {', '.join(self.tables)})")
            try:
                traffic = wanted.validated(list(old.urls))
            except GatewayConfigError as exc:
                return _error(400, str(exc))
            new = self._with(old, traffic=traffic, generation=old.generation + 1)
            tables = {**self.tables, endpoint: new}
            try:
                await asyncio.to_thread(self._persist, tables)
            except OSError as exc:
                return _error(500, f"cannot save traffic state to {self.config.state_file}: {exc.strerror or exc}")
            self.tables = tables  # one reference swap: requests in flight keep their table
            self._export_weights(endpoint)
        log.info("traffic of %s: %s", endpoint, traffic.to_dict())
        return JSONResponse((await self.endpoint_status(endpoint, probe=False)).to_dict())

    async def admin_fault(self, request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        version = request.path_params["version"]
        if endpoint not in self.tables:
            return _error(404, f"unknown endpoint {endpoint!r} (endpoints: {', '.join(self.tables)})")
        if version not in self.tables[endpoint].urls:
            return _error(404, f"unknown version {version!r} of endpoint {endpoint!r}")
        try:
            fault = Fault.from_dict(await self._admin_json(request))
        except GatewayConfigError as exc:
            return _error(400, str(exc))
        async with self.admin_lock:
            old = self.tables.get(endpoint)
            if old is None or version not in old.urls:  # removed by a reload meanwhile
                return _error(404, f"unknown version {version!r} of endpoint {endpoint!r}")
            faults = {**old.faults, version: fault}
            if not fault.active:
                faults.pop(version)
            self.tables = {**self.tables, endpoint: self._with(old, faults=faults)}
        log.info("fault on %s/%s: %s", endpoint, version, fault.to_dict())
        return JSONResponse((await self.endpoint_status(endpoint, probe=False)).to_dict())


def _describe_change(name: str, old: RouteTable, new: RouteTable) -> list[str]:
    """What a reload changed on one endpoint, for the log and the admin answer."""
    out = [f"{name}/{a}: added" for a in new.urls if a not in old.urls]
    out += [f"{name}/{a}: removed (drained)" for a in old.urls if a not in new.urls]
    out += [
        f"{name}/{a}: upstream {old.urls[a]} -> {new.urls[a]}"
        for a in new.urls
        if a in old.urls and old.urls[a] != new.urls[a]
    ]
    if old.traffic != new.traffic:
        out.append(f"{name}: weights {dict(old.traffic.weights)} -> {dict(new.traffic.weights)}")
    if dict(old.faults) != dict(new.faults):
        out.append(f"{name}: faults {sorted(old.faults)} -> {sorted(new.faults)}")
    if old.baseline != new.baseline:
        out.append(f"{name}: baseline {old.baseline} -> {new.baseline}")
    return out


def _guard(gw: Gateway, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def guarded(request: Request) -> Response:
        if not gw.authorized(request):
            return JSONResponse(
                {"error": "missing or wrong admin token (Authorization: Bearer TOKEN)"},
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        return await handler(request)

    return guarded


def data_app(gw: Gateway) -> ASGIApp:
    """Inference requests take the plain-ASGI fast path; everything else goes through Starlette."""
    app = Starlette(
        routes=[
            Route("/v2/models/{endpoint}/feedback", gw.feedback, methods=["POST"]),
            Route("/v2/models/{endpoint}", gw.metadata, methods=["GET"]),
            Route("/v2/models/{endpoint}/ready", gw.metadata, methods=["GET"]),
            Route("/v2/models/{endpoint}/versions/{version}", gw.metadata, methods=["GET"]),
            Route("/v2/models/{endpoint}/versions/{version}/ready", gw.metadata, methods=["GET"]),
            Route("/v2/health/live", gw.live, methods=["GET"]),
            Route("/v2/health/ready", gw.ready, methods=["GET"]),
            Route("/metrics", gw.metrics_page, methods=["GET"]),
        ]
    )

    async def fast(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/")
            # /v2/models/{ep}/infer and /v2/models/{ep}/versions/{v}/infer
            if len(parts) == 5 and parts[1] == "v2" and parts[2] == "models" and parts[4] == "infer":
                return await gw.infer_asgi(scope, receive, send, parts[3], None)
            if len(parts) == 7 and parts[1:3] == ["v2", "models"] and parts[4] == "versions" and parts[6] == "infer":
                return await gw.infer_asgi(scope, receive, send, parts[3], parts[5])
            if scope["path"] in OPENAI_ROUTES:
                return await gw.llm.completions(scope, receive, send)
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/v1/models":
            return await gw.llm.models(scope, receive, send)
        await app(scope, receive, send)

    return drain_aware(gw, fast)


def drain_aware(gw: Gateway, app: ASGIApp) -> ASGIApp:
    """While the process drains, every answer says ``connection: close``: the client's next
    request opens a new connection, which the listening socket hands to the next process.
    (Closing idle keep-alive connections instead races with a client that is just sending.)"""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if not gw.draining:
            return await app(scope, receive, send)

        async def send_closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await app(scope, receive, send_closing)

    return wrapped


def admin_app(gw: Gateway) -> ASGIApp:
    return drain_aware(gw, _admin_routes(gw))


def _admin_routes(gw: Gateway) -> Starlette:
    return Starlette(
        routes=[
            Route("/admin/health", _guard(gw, gw.admin_health), methods=["GET"]),
            Route("/admin/state", _guard(gw, gw.admin_state), methods=["GET"]),
            Route("/admin/endpoints/{endpoint}/traffic", _guard(gw, gw.admin_traffic), methods=["PUT"]),
            Route("/admin/endpoints/{endpoint}/faults/{version}", _guard(gw, gw.admin_fault), methods=["PUT"]),
            Route("/admin/reload", _guard(gw, gw.admin_reload), methods=["POST"]),
            Route("/admin/upstreams", _guard(gw, gw.admin_upstreams), methods=["GET"]),
        ]
    )


# ---------------------------------------------------------------------------
# Process
# ---------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """Two servers share one loop; the process installs its own signal handlers for both."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


LISTEN_FDS_ENV = "MLSERVE_LISTEN_FDS"  # "http=5,admin=6": listening sockets handed down by the supervisor
READY_FILE_ENV = "MLSERVE_READY_FILE"  # written ({"pid": N, ...}) once both listeners serve
DRAIN_SECONDS = 10.0  # a handed-over process waits this long at most for its connections to close


def inherited_sockets(value: str) -> dict[str, socket.socket]:
    """The listening sockets named by ``MLSERVE_LISTEN_FDS`` (role=fd, comma separated)."""
    out: dict[str, socket.socket] = {}
    for part in filter(None, value.split(",")):
        role, _, fd = part.partition("=")
        try:
            sock = socket.socket(fileno=int(fd))
        except (ValueError, OSError) as exc:
            raise GatewayConfigError(f"{LISTEN_FDS_ENV}: {part!r} is not an open socket ({exc})") from None
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise GatewayConfigError(f"{LISTEN_FDS_ENV}: fd {fd} ({role}) is not a listening socket")
        out[role] = sock
    return out


def bind(host: str, port: int, what: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GatewayConfigError(f"cannot listen on {host}:{port} for the {what}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _uvicorn_config(app: ASGIApp, head_timeout: float | Callable[[], float] = HEADER_TIMEOUT) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=5,  # idle keep-alive connections are closed
        timeout_graceful_shutdown=5,
        limit_concurrency=4096,  # beyond this uvicorn answers 503 instead of queueing forever
        h11_max_incomplete_event_size=16 * 1024,  # bounds request line + headers
        server_header=False,
        proxy_headers=False,  # loopback only: no proxy in front, and one middleware less per request
        http=header_timeout_protocol(head_timeout),  # slow-loris request heads are cut off
    )


async def serve(config: GatewayConfig, token: str, config_path: str | None = None) -> None:
    """Both listeners in one loop. Signals: SIGTERM/SIGINT stop (in-flight requests finish);
    SIGHUP reloads the config file; SIGUSR2 hands over: stop accepting at once (a successor
    accepts on the same inherited sockets), answer what is open with ``connection: close``,
    exit when the last connection is gone (at most DRAIN_SECONDS)."""
    gw = Gateway(config, token, config_path=config_path)
    inherited = inherited_sockets(os.environ.get(LISTEN_FDS_ENV, ""))
    data_sock = inherited.get("http") or bind(config.host, config.port, "gateway")
    admin_sock = inherited.get("admin") or bind(config.admin_host, config.admin_port, "admin API")
    gw.bound_port = data_sock.getsockname()[1]
    gw.bound_admin_port = admin_sock.getsockname()[1]
    await gw.start()
    # a slow client gets body_timeout for its request head, then body_timeout for its body
    head = lambda: gw.config.body_timeout  # noqa: E731 - read per request, so a reload applies
    servers = [_Server(_uvicorn_config(data_app(gw), head)), _Server(_uvicorn_config(admin_app(gw), head))]
    loop = asyncio.get_running_loop()
    background: set[asyncio.Task[None]] = set()

    def stop() -> None:
        for s in servers:
            s.should_exit = True

    def spawn(coro: Any) -> None:
        task = loop.create_task(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    async def reload() -> None:
        try:
            await gw.reload()
        except GatewayConfigError as exc:
            log.error("SIGHUP: config not applied: %s", exc)

    async def hand_over() -> None:
        if gw.draining:
            return
        gw.draining = True
        for s in servers:
            for listener in getattr(s, "servers", []):
                listener.close()  # stops accepting; connections already open stay open
        log.info("handing over: not accepting any more; draining open connections")
        deadline = loop.time() + DRAIN_SECONDS
        while loop.time() < deadline and any(s.server_state.connections for s in servers):
            await asyncio.sleep(0.05)
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    loop.add_signal_handler(signal.SIGHUP, lambda: spawn(reload()))
    loop.add_signal_handler(signal.SIGUSR2, lambda: spawn(hand_over()))

    async def announce() -> None:
        while not all(s.started for s in servers):
            await asyncio.sleep(0.01)
        ready = {"event": "ready", "pid": os.getpid(), "port": gw.bound_port, "admin_port": gw.bound_admin_port}
        ready_file = os.environ.get(READY_FILE_ENV)
        if ready_file:
            with contextlib.suppress(OSError):
                fsutil.atomic_write_json(Path(ready_file), {**ready, "config_generation": gw.config.generation})
        print(json.dumps(ready), flush=True)

    announcer = loop.create_task(announce())
    try:
        await asyncio.gather(servers[0].serve([data_sock]), servers[1].serve([admin_sock]))
    finally:
        announcer.cancel()
        for task in list(background):
            task.cancel()
        await gw.stop()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlserve.local.gateway", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="gateway config JSON (mlserve.gateway/v1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("httpx", "httpcore", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # one line per request would cost latency
    disable_created_metrics()  # *_created series are noise for PromQL rate() queries
    try:
        config = load_gateway_config(args.config)
        token = read_token_file(config.admin_token_file)
        load_traffic_file(config.state_file)  # fail early on a corrupt state file
        build_monitors(config.endpoints)  # and on a missing or invalid drift profile
    except (GatewayConfigError, ProfileError) as exc:
        print(f"mlserve gateway: {exc}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(config, token, args.config))
    except GatewayConfigError as exc:
        print(f"mlserve gateway: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
