"""The V2 client's retries and bisection against a misbehaving test server, and the journal.

The server here is a test double for our own retry logic (the end-to-end tests use real
MLServer): it answers 503, drops connections, stalls past the timeout, and refuses rows
holding the value 666 with a 400.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlserve.batch.client import ClientSettings, EndpointUnavailable, V2Client
from mlserve.batch.journal import ChunkResult, Job
from mlserve.batch.rows import InputTensor
from mlserve.errors import StateError
from mlserve.targets.base import Pin

T2 = InputTensor("input-0", "FP32", (2,))


class Script:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.plan: list[str] = []  # what the next requests get: "503", "drop", "stall", then normal
        self.requests = 0
        self.bodies: list[int] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_a: Any) -> None:
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            with script.lock:
                script.requests += 1
                action = script.plan.pop(0) if script.plan else "ok"
            data = body["inputs"][0]["data"]
            n = body["inputs"][0]["shape"][0]
            if action == "drop":
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if action == "stall":
                time.sleep(1.5)
            if action == "503":
                return self._send(503, {"error": "overloaded"})
            if 666 in data:
                return self._send(400, {"error": "value 666 is not allowed"})
            with script.lock:
                script.bodies.append(n)
            out = [sum(data[i * 2 : i * 2 + 2]) for i in range(n)]
            self._send(200, {"outputs": [{"name": "predict", "shape": [n], "datatype": "FP64", "data": out}]})

        def _send(self, code: int, payload: dict[str, Any]) -> None:
            raw = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def _settings(url: str, **kw: Any) -> ClientSettings:
    base = {"batch_size": 4, "concurrency": 2, "timeout": 0.5, "retries": 4}
    base.update(kw)
    return ClientSettings(url=url, endpoint="e", version="v1", pin=Pin.PATH, tensor=T2, backoff=0.01, **base)


def _score(settings: ClientSettings, rows: list[list[float]]) -> Any:
    async def go() -> Any:
        client = V2Client(settings)
        try:
            return await client.score(rows)
        finally:
            await client.close()

    return asyncio.run(go())


def test_retries_5xx_dropped_connections_and_timeouts(server: tuple[str, Script]) -> None:
    url, script = server
    script.plan = ["503", "drop", "stall", "503"]
    rows = [[float(i), 1.0] for i in range(10)]
    out = _score(_settings(url), rows)
    assert [p["predict"] for p in out.predictions] == [i + 1.0 for i in range(10)]
    assert out.retries == 4 and out.rejected == {}
    assert sorted(script.bodies) == [2, 4, 4]  # three batches of at most 4 rows


def test_rows_the_endpoint_refuses_are_found_by_halving(server: tuple[str, Script]) -> None:
    url, _ = server
    rows = [[float(i), 1.0] for i in range(16)]
    rows[5] = [666.0, 0.0]
    rows[11] = [1.0, 666.0]
    out = _score(_settings(url, batch_size=8), rows)
    assert set(out.rejected) == {5, 11}
    assert out.rejected[5] == "rejected by the endpoint (HTTP 400): value 666 is not allowed"
    assert [i for i, p in enumerate(out.predictions) if p is None] == [5, 11]
    assert out.predictions[6] == {"predict": 7.0}


def test_gives_up_after_the_retries_with_an_error_that_says_how_to_resume(server: tuple[str, Script]) -> None:
    url, script = server
    script.plan = ["503"] * 10
    with pytest.raises(EndpointUnavailable, match=r"gave up after 3 attempts; last: HTTP 503: overloaded") as err:
        _score(_settings(url, retries=2, batch_size=100), [[1.0, 2.0]])
    assert "run the same command again to resume" in str(err.value)
    with pytest.raises(EndpointUnavailable, match="connection failed"):
        _score(_settings("http://127.0.0.1:9", retries=1), [[1.0, 2.0]])


def _result(i: int, text: str) -> ChunkResult:
    return ChunkResult(i, text.encode(), b"", {"rows": 1, "scored": 1, "failed": 0})


def test_journal_resume_ignores_torn_lines_and_missing_parts(tmp_path: Path) -> None:
    job = Job(tmp_path / "job", {"input_sha256": "abc"})
    assert job.open() == {}
    for i in range(4):
        job.commit(_result(i, f"line {i}\n"))
    job.close()
    with open(tmp_path / "job" / "journal.jsonl", "ab") as fh:
        fh.write(b'{"chunk": 4, "byt')  # a kill in the middle of an append
    job.part(2).unlink()  # a part lost: chunk 2 is scored again
    again = Job(tmp_path / "job", {"input_sha256": "abc"})
    assert sorted(again.open()) == [0, 1, 3]
    with pytest.raises(StateError, match="another mlserve batch runs this job"):
        Job(tmp_path / "job", {"input_sha256": "abc"}).open()
    again.close()
    other = Job(tmp_path / "job", {"input_sha256": "changed"})  # same folder, other job: start afresh
    assert other.open() == {}
    other.remove()
    assert not (tmp_path / "job").exists()
