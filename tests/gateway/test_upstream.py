"""The gateway's upstream clients against a scripted loopback HTTP server (framing, keep-alive, failures)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from mlserve.local.upstream import UpstreamDown, UpstreamTimeout, make_upstream

ANSWERS = {
    "/length": b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok": 1.0}',
    "/chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"ok"\r\n6\r\n: 2.0}\r\n0\r\n\r\n'
    ),
    "/close": b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
}


async def serve(closing_after_answer: bool) -> tuple[asyncio.Server, int, list[int]]:
    """Answers by path; ``/slow`` never answers; optionally closes every connection after one answer
    (a keep-alive connection the server drops while the client holds it idle)."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                path = head.split(b" ")[1].decode()
                if path == "/slow":
                    await asyncio.sleep(10)
                writer.write(ANSWERS[path])
                await writer.drain()
                if closing_after_answer or path == "/close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


@pytest.mark.parametrize("kind", ["raw", "aiohttp", "httpx"])
def test_framing_keepalive_and_failures(kind: str) -> None:
    async def main() -> None:
        server, port, connections = await serve(closing_after_answer=False)
        up = make_upstream(kind, timeout=0.3, connect_timeout=1.0, max_connections=8)
        base = f"http://127.0.0.1:{port}"
        try:
            a = await up.post(f"{base}/length", b"{}")
            assert (a.status, a.content, a.content_type) == (200, b'{"ok": 1.0}', "application/json")
            b = await up.post(f"{base}/chunked", b"{}")
            assert (b.status, b.content) == (200, b'{"ok": 2.0}')
            assert len(connections) == 1  # one keep-alive connection so far
            c = await up.get(f"{base}/close")
            assert c.status == 503
            d = await up.post(f"{base}/length", b"{}")
            assert d.status == 200 and len(connections) == 2  # a fresh one after Connection: close
            with pytest.raises(UpstreamTimeout):
                await up.post(f"{base}/slow", b"{}")
            assert (await up.post(f"{base}/length", b"{}")).status == 200
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                dead = s.getsockname()[1]
            with pytest.raises(UpstreamDown):
                await up.post(f"http://127.0.0.1:{dead}/length", b"{}")
        finally:
            await up.close()
            server.close()

    asyncio.run(main())


def test_raw_client_retries_a_keepalive_connection_the_server_dropped() -> None:
    async def main() -> None:
        server, port, connections = await serve(closing_after_answer=True)
        up = make_upstream("raw", timeout=2.0, connect_timeout=1.0, max_connections=8)
        try:
            for _ in range(5):
                a = await up.post(f"http://127.0.0.1:{port}/length", b"{}")
                assert a.status == 200
                await asyncio.sleep(0.05)  # the server closes the idle connection meanwhile
            assert len(connections) == 5
        finally:
            await up.close()
            server.close()

    asyncio.run(main())
