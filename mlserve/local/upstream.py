"""Pooled HTTP clients the gateway uses to reach model servers, behind one small interface.

Two implementations: aiohttp (the default) and httpx. On this project's reference machine
(2 shared cores) httpx's AsyncClient spends about 1.3-1.5 ms of CPU per request against
0.3-0.4 ms for aiohttp (``benchmarks/gateway_overhead.py`` measures both), which alone is
more than the gateway's whole latency budget; httpx stays selectable (``upstream_client``
in the gateway config) for comparison and as a fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

UPSTREAM_CLIENTS = ("aiohttp", "httpx")


class UpstreamDown(Exception):
    """No HTTP answer: connection refused, reset, or closed before the response."""


class UpstreamTimeout(Exception):
    """The upstream accepted the request but did not answer within the timeout."""


@dataclass(frozen=True)
class Answer:
    status: int
    content: bytes
    content_type: str


class Upstream(Protocol):
    async def post(self, url: str, body: bytes) -> Answer: ...

    async def get(self, url: str, timeout: float | None = None) -> Answer: ...

    async def close(self) -> None: ...


JSON_HEADERS = {"content-type": "application/json"}


class AiohttpUpstream:
    def __init__(self, *, timeout: float, connect_timeout: float, max_connections: int) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        # Keep-alive shorter than uvicorn's 5 s on the model-server side, so a pooled connection
        # is never reused just as the server closes it.
        connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=4.0, use_dns_cache=True)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, auto_decompress=False, trust_env=False
        )
        self._down: tuple[type[BaseException], ...] = (
            aiohttp.ClientConnectorError,
            aiohttp.ConnectionTimeoutError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
            aiohttp.ClientPayloadError,
        )

    async def _call(self, method: str, url: str, body: bytes | None, timeout: Any) -> Answer:
        try:
            # timeout=None would mean "no timeout" to aiohttp: pass one only to override the session's
            extra = {"timeout": timeout} if timeout is not None else {}
            headers = JSON_HEADERS if body is not None else None
            async with self._session.request(method, url, data=body, headers=headers, **extra) as resp:
                content = await resp.read()
                return Answer(resp.status, content, resp.headers.get("content-type", ""))
        except self._down as exc:
            raise UpstreamDown(str(exc)) from None
        except TimeoutError as exc:
            raise UpstreamTimeout(str(exc)) from None
        except self._aiohttp.ClientError as exc:
            raise UpstreamDown(str(exc)) from None

    async def post(self, url: str, body: bytes) -> Answer:
        return await self._call("POST", url, body, None)

    async def get(self, url: str, timeout: float | None = None) -> Answer:
        t = None if timeout is None else self._aiohttp.ClientTimeout(total=timeout, connect=timeout)
        return await self._call("GET", url, None, t)

    async def close(self) -> None:
        await self._session.close()


class HttpxUpstream:
    def __init__(self, *, timeout: float, connect_timeout: float, max_connections: int) -> None:
        import httpx

        self._httpx = httpx
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=4.0
            ),
            trust_env=False,
        )
        self._down: tuple[type[BaseException], ...] = (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.RemoteProtocolError,
            httpx.ReadError,
            httpx.WriteError,
        )

    async def _call(self, method: str, url: str, body: bytes | None, timeout: float | None) -> Answer:
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs.update(content=body, headers=JSON_HEADERS)
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            resp = await self._client.request(method, url, **kwargs)
        except self._down as exc:
            raise UpstreamDown(str(exc)) from None
        except self._httpx.TimeoutException as exc:
            raise UpstreamTimeout(str(exc)) from None
        except self._httpx.HTTPError as exc:
            raise UpstreamDown(str(exc)) from None
        return Answer(resp.status_code, resp.content, resp.headers.get("content-type", ""))

    async def post(self, url: str, body: bytes) -> Answer:
        return await self._call("POST", url, body, None)

    async def get(self, url: str, timeout: float | None = None) -> Answer:
        return await self._call("GET", url, None, timeout)

    async def close(self) -> None:
        await self._client.aclose()


def make_upstream(kind: str, *, timeout: float, connect_timeout: float, max_connections: int) -> Upstream:
    """Must be called inside the running event loop (aiohttp binds its session to it)."""
    cls: type[AiohttpUpstream] | type[HttpxUpstream] = AiohttpUpstream if kind == "aiohttp" else HttpxUpstream
    return cls(timeout=timeout, connect_timeout=connect_timeout, max_connections=max_connections)
