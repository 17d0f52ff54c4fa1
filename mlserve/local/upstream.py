"""Pooled HTTP clients the gateway uses to reach model servers, behind one small interface.

Three implementations, chosen by ``upstream_client`` in the gateway config:

- ``raw`` (default): a keep-alive pool of asyncio protocols with the httptools parser, for
  loopback HTTP/1.1 model servers that frame answers with Content-Length or chunked encoding
  (MLServer, seldon-core, any uvicorn/Flask server). About 0.07 ms of CPU per request on the
  project's 2-core machine.
- ``aiohttp``: about 0.3 ms of CPU per request.
- ``httpx``: about 1.3-1.5 ms of CPU per request, more than the gateway's whole latency budget.

``benchmarks/gateway_overhead.py`` compares them; the gateway's own logic costs ~0.03 ms.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol


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

    def set_timeouts(self, timeout: float, connect_timeout: float) -> None:
        """New limits for the calls that start from now on (a config reload); calls in flight keep theirs."""
        ...


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

    def set_timeouts(self, timeout: float, connect_timeout: float) -> None:
        self._timeout = self._aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)

    async def _call(self, method: str, url: str, body: bytes | None, timeout: Any) -> Answer:
        try:
            headers = JSON_HEADERS if body is not None else None
            request = self._session.request(method, url, data=body, headers=headers, timeout=timeout or self._timeout)
            async with request as resp:
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

    def set_timeouts(self, timeout: float, connect_timeout: float) -> None:
        self._client.timeout = self._httpx.Timeout(timeout, connect=connect_timeout)

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
    classes: dict[str, type[RawUpstream] | type[AiohttpUpstream] | type[HttpxUpstream]] = {
        "raw": RawUpstream,
        "aiohttp": AiohttpUpstream,
        "httpx": HttpxUpstream,
    }
    return classes[kind](timeout=timeout, connect_timeout=connect_timeout, max_connections=max_connections)


# ---------------------------------------------------------------------------
# A minimal HTTP/1.1 client for loopback model servers
# ---------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive connection; httptools parses the answers (Content-Length or chunked)."""

    def __init__(self) -> None:
        import httptools

        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.last_used = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._body: list[bytes] = []
        self._content_type = b""
        self._got_bytes = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # a malformed answer: this connection is done
            self._fail(UpstreamDown(f"bad HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(UpstreamDown("connection closed before the answer" + (f": {exc}" if exc else "")))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self._content_type = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            answer = Answer(self._parser.get_status_code(), b"".join(self._body), self._content_type.decode("latin-1"))
            if not self._parser.should_keep_alive():
                self.close()
            waiter.set_result(answer)

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def request(self, data: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._body = []
        self._content_type = b""
        self._got_bytes = False
        self.transport.write(data)
        return self._waiter

    @property
    def answered_anything(self) -> bool:
        return self._got_bytes

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class RawUpstream:
    """Keep-alive pool per upstream, one write per request, no per-request objects beyond the
    answer: about a quarter of aiohttp's CPU per request (``benchmarks/gateway_overhead.py``).
    Loopback model servers only (no TLS, no proxies, no redirects)."""

    def __init__(self, *, timeout: float, connect_timeout: float, max_connections: int) -> None:
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._max_idle = max_connections
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._keepalive = 4.0  # below uvicorn's 5 s on the model-server side

    def set_timeouts(self, timeout: float, connect_timeout: float) -> None:
        self._timeout = timeout
        self._connect_timeout = connect_timeout

    @staticmethod
    def _split(url: str) -> tuple[str, int, str]:
        rest = url.removeprefix("http://")
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.rpartition(":")
        return host.strip("[]"), int(port), "/" + path

    async def _connect(self, host: str, port: int) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(_Conn, host, port)
        except (OSError, TimeoutError) as exc:
            raise UpstreamDown(f"cannot connect to {host}:{port}: {exc}") from None
        return conn

    def _take(self, key: tuple[str, int], now: float) -> _Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.last_used < self._keepalive:
                return conn
            conn.close()
        return None

    async def _call(self, method: str, url: str, body: bytes | None, timeout: float) -> Answer:
        host, port, path = self._split(url)
        key = (host, port)
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = f"{method} {path} HTTP/1.1\r\nHost: {authority}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        data = (head + "\r\n").encode("latin-1") + (body or b"")
        loop = asyncio.get_running_loop()
        conn = self._take(key, loop.time())
        reused = conn is not None
        for _ in range(2):
            if conn is None:
                conn = await self._connect(host, port)
            try:
                async with asyncio.timeout(timeout):
                    answer = await conn.request(data)
            except TimeoutError:
                conn.close()
                raise UpstreamTimeout(f"{url}: no answer within {timeout:g} s") from None
            except UpstreamDown:
                conn.close()
                # A reused keep-alive connection the server had just closed: try once on a fresh one.
                if reused and not conn.answered_anything:
                    conn, reused = None, False
                    continue
                raise
            except BaseException:
                conn.close()  # cancelled mid-request: the connection's state is unknown
                raise
            if not conn.closed:
                conn.last_used = loop.time()
                idle = self._idle.setdefault(key, [])
                if len(idle) < self._max_idle:
                    idle.append(conn)
                else:
                    conn.close()
            return answer
        raise UpstreamDown(f"{url}: connection closed before the answer")

    async def post(self, url: str, body: bytes) -> Answer:
        return await self._call("POST", url, body, self._timeout)

    async def get(self, url: str, timeout: float | None = None) -> Answer:
        return await self._call("GET", url, None, self._timeout if timeout is None else timeout)

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
