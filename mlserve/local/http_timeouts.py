"""Deadlines for HTTP requests on the gateway's listeners: for the head of each request, and
(:func:`read_body`, shared by the V2 and the OpenAI routes) for its body.

uvicorn bounds idle keep-alive connections and the gateway bounds request bodies, but
nothing bounds the request line and headers: a client that connects and sends nothing, or
sends its headers a byte at a time (slow loris), holds a connection and a slot of
``limit_concurrency`` for as long as it likes. This protocol closes such a connection with
a 408 once ``header_timeout`` seconds pass between the first byte of a request (or the
connection itself) and the end of its headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import Receive

HEADER_TIMEOUT = 10.0

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency of mlserve
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 29\r\nconnection: close\r\n\r\nrequest headers not received\n"


def header_timeout_protocol(seconds: float | Callable[[], float] = HEADER_TIMEOUT) -> Any:
    """The protocol class for ``uvicorn.Config(http=...)``; "auto" where httptools is missing.

    ``seconds`` may be a function, read at each request head, so a reloaded limit applies to
    the next request without restarting the listener.
    """
    if HttpToolsProtocol is None:  # pragma: no cover
        return "auto"
    limit: Callable[[], float] = seconds if callable(seconds) else (lambda: float(seconds))

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(limit(), self._head_expired)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_expired(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.write(_408)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadlineProtocol


class BodyTooLarge(Exception):
    """A request body longer than the gateway's ``max_body_bytes``."""


async def read_body(headers: list[tuple[bytes, bytes]], receive: Receive, limit: int, timeout: float) -> bytes:
    """The request body, at most ``limit`` bytes and within ``timeout`` (slow clients are cut off)."""
    for name, value in headers:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise BodyTooLarge
            break
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(timeout):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
