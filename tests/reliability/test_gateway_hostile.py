"""Hostile clients against the real gateway process (one gateway for the whole module).

tests/gateway/ covers the limits one by one (413, 400, 404, a slow body, the admin token);
here they are tried as an attacker would, with raw sockets where a polite client library
refuses to send the bytes, and each case is recorded in docs/reliability.md.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.gateway.conftest import GatewayProc, Procs, endpoint, gateway_config, payload, start_gateway
from tests.gateway.load import fire
from tests.reliability.conftest import Recorder

BODY_TIMEOUT = 1.0  # the gateway's bound on a slow client (request head, then body)
MAX_BODY = 64 * 1024


@dataclass
class Setup:
    gw: GatewayProc
    port: int
    admin_port: int


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    procs = Procs(tmp_path_factory.mktemp("gw"))
    try:
        v1, v2 = procs.upstream(value=1.0), procs.upstream(value=2.0)
        a1, a2 = procs.upstream(model="ab", value=1.0), procs.upstream(model="ab", value=2.0)
        sticky = endpoint({"v1": a1, "v2": a2}, {"v1": 50, "v2": 50})
        sticky["traffic"]["mode"] = "sticky"
        cfg = gateway_config(
            procs.tmp,
            {"fraud": endpoint({"v1": v1, "v2": v2}, {"v1": 90, "v2": 10}), "ab": sticky},
            body_timeout=BODY_TIMEOUT,
            max_body_bytes=MAX_BODY,
        )
        gw = start_gateway(procs, cfg)
        yield Setup(gw, int(gw.url.rsplit(":", 1)[1]), int(gw.admin_url.rsplit(":", 1)[1]))
    finally:
        procs.close()


def raw(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send bytes as they are and read the answer until the server closes or stops sending."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out:
                    head, _, body = out.partition(b"\r\n\r\n")
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:") and len(body) >= int(line.split(b":")[1]):
                            return out
        except TimeoutError:
            pass
        return out


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_bad_requests_get_clear_status_codes(setup: Setup, reliability: Recorder) -> None:
    url = f"{setup.gw.url}/v2/models/fraud/infer"
    cases = [
        ("oversized body (Content-Length)", lambda c: c.post(url, content=b"[" * (MAX_BODY + 1)), 413),
        (
            "oversized body, chunked (no Content-Length)",
            lambda c: c.post(url, content=iter([b"{" + b" " * 32768] * 4)),
            413,
        ),
        ("malformed JSON", lambda c: c.post(url, content=b'{"inputs": ['), 400),
        ("body not UTF-8", lambda c: c.post(url, content=b"\xff\xfe{}"), 400),
        ("JSON that is not an object", lambda c: c.post(url, json=[1, 2, 3]), 400),
        ("deeply nested JSON", lambda c: c.post(url, content=b"[" * 30000 + b"]" * 30000), 400),
        ("unknown endpoint", lambda c: c.post(f"{setup.gw.url}/v2/models/nope/infer", json=payload()), 404),
        (
            "unknown version (pinned)",
            lambda c: c.post(f"{setup.gw.url}/v2/models/fraud/versions/v9/infer", json=payload()),
            404,
        ),
        ("unknown path", lambda c: c.get(f"{setup.gw.url}/etc/passwd"), 404),
        (
            "path traversal in endpoint",
            lambda c: c.post(f"{setup.gw.url}/v2/models/..%2f..%2fadmin/infer", json={}),
            404,
        ),
        ("admin route on the data port", lambda c: c.get(f"{setup.gw.url}/admin/state"), 404),
    ]
    with httpx.Client(timeout=10) as c:
        for name, call, expected in cases:
            r = call(c)
            reliability.case(
                "gateway",
                name,
                expected=f"HTTP {expected}, gateway keeps serving",
                measured=f"HTTP {r.status_code}",
                sent=1,
                failed=0 if r.status_code == expected else 1,
            )
            assert r.status_code == expected, (name, r.status_code, r.text[:200])
            if r.headers.get("content-type", "").startswith("application/json"):
                assert "error" in r.json()
        assert c.post(url, json=payload()).status_code == 200


def test_slow_loris_headers_are_cut_off_and_others_served(setup: Setup, reliability: Recorder) -> None:
    """20 raw sockets send a request head one byte every 100 ms (and one sends nothing at all);
    each must be closed within the bound while ordinary clients keep getting answers."""
    head = b"POST /v2/models/fraud/infer HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200 + b"\r\n"
    closed_after: list[float] = []
    answers: list[bytes] = []

    def loris(send_nothing: bool) -> None:
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", setup.port), timeout=0.1) as s:
            data = b"" if send_nothing else head
            i = 0
            got = b""
            while time.monotonic() - t0 < 15:
                if i < len(data):
                    try:
                        s.send(data[i : i + 1])
                    except OSError:
                        break
                    i += 1
                try:
                    chunk = s.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                got += chunk
                if not chunk:
                    break
            closed_after.append(time.monotonic() - t0)
            answers.append(got)

    threads = [threading.Thread(target=loris, args=(i == 0,)) for i in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    results = fire(f"{setup.gw.url}/v2/models/fraud/infer", 200, 8)
    for t in threads:
        t.join()
    ok = sum(1 for s, _, _ in results if s == 200)
    worst = max(closed_after)
    reliability.case(
        "gateway",
        "slow loris: 20 connections send headers 1 byte/100 ms (one sends nothing), 200 normal requests meanwhile",
        expected=f"slow connections closed within {BODY_TIMEOUT:g} s (+ slack); normal requests all answered",
        measured=f"slow connections closed after {min(closed_after):.2f}-{worst:.2f} s with "
        f"{Counter(status_of(a) for a in answers)}; normal requests: {ok}/200 answered 200",
        sent=200,
        failed=200 - ok,
        lost=0,
    )
    assert ok == 200
    assert len(closed_after) == 20 and worst < BODY_TIMEOUT + 3.0, closed_after
    assert all(status_of(a) in (408, 0) for a in answers), answers


def test_sticky_key_injection_changes_nothing(setup: Setup, reliability: Recorder) -> None:
    """CR/LF, header-looking text, huge and non-ASCII keys: refused or hashed as opaque bytes,
    never reflected, and the variants of ordinary users stay where they were."""
    url = f"{setup.gw.url}/v2/models/ab/infer"
    users = [f"user-{i}" for i in range(200)]

    def assignment() -> dict[str, str]:
        out = {}
        with httpx.Client(timeout=10) as c:
            for u in users:
                r = c.post(url, json=payload(), headers={"x-user-id": u})
                assert r.status_code == 200, r.text
                out[u] = r.headers["x-mlserve-variant"]
        return out

    before = assignment()
    body = json.dumps(payload()).encode()

    def request(key: bytes) -> bytes:
        head = (
            b"POST /v2/models/ab/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"x-user-id: " + key + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        return raw(setup.port, head + body)

    hostile = {
        "CR LF then a forged header": b"evil\r\nx-mlserve-variant: v2",
        "bare LF inside the value": b"evil\nx-mlserve-variant: v2",
        "bare CR inside the value": b"evil\rset-cookie: a=b",
        "NUL byte": b"ev\x00il",
        "non-ASCII (UTF-8)": "utilisateur-é-€-😀".encode(),
        "non-ASCII (Latin-1 bytes)": b"\xe9\xff\xfe",
        "huge value (8 KiB)": b"k" * 8192,
        "huge value (64 KiB)": b"k" * 65536,
        "header-like text": b"v2; x-mlserve-variant=v2, Set-Cookie: s=1",
    }
    for name, key in hostile.items():
        answer = request(key)
        status = status_of(answer)
        head = answer.partition(b"\r\n\r\n")[0].lower()
        reflected = key.lower() in answer.lower() and len(key) > 3
        forged = b"set-cookie" in head or head.count(b"x-mlserve-variant") > 1
        reliability.case(
            "gateway",
            f"sticky key injection: {name}",
            expected="refused (400/431) or routed as an opaque key; never reflected, no forged header",
            measured=f"HTTP {status or 'connection closed'}; reflected: {reflected}; forged header: {forged}",
            sent=1,
            failed=0,
        )
        assert status in (200, 400, 431, 0), (name, answer[:300])
        assert not reflected, (name, answer[:300])
        assert not forged, (name, head)
    # a flood of hostile keys does not move anyone
    for i in range(100):
        request(f"flood-{i}\xe9".encode("latin-1") + b"\r\nx-user-id: user-1")
    after = assignment()
    moved = sum(before[u] != after[u] for u in users)
    reliability.case(
        "gateway",
        "sticky routing of 200 ordinary users before/after 100 injection attempts",
        expected="every user keeps the variant it had",
        measured=f"{moved} of 200 users moved",
        sent=400,
        failed=moved,
    )
    assert moved == 0


def test_admin_api_refuses_without_the_right_token(setup: Setup, reliability: Recorder) -> None:
    token = setup.gw.token
    attempts: dict[str, dict[str, str | bytes]] = {
        "no Authorization header": {},
        "wrong token": {"Authorization": "Bearer " + "0" * len(token)},
        "token without 'Bearer'": {"Authorization": token},
        "token with a suffix": {"Authorization": f"Bearer {token}x"},
        "token prefix only": {"Authorization": f"Bearer {token[:-1]}"},
        "Basic scheme": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "lower-case scheme, extra space": {"Authorization": f"bearer  {token}"},
        "non-ASCII token": {"Authorization": "Bearer tökén".encode()},
    }
    with httpx.Client(base_url=setup.gw.admin_url, timeout=10) as c:
        for name, headers in attempts.items():
            codes = {
                c.get("/admin/state", headers=headers).status_code,
                c.put(
                    "/admin/endpoints/fraud/traffic", json={"weights": {"v1": 0, "v2": 100}}, headers=headers
                ).status_code,
            }
            reliability.case(
                "gateway",
                f"admin API: {name}",
                expected="401 on read and on write; traffic unchanged",
                measured=f"HTTP {sorted(codes)}",
                sent=2,
                failed=0,
            )
            assert codes == {401}, (name, codes)
        r = c.get(f"/admin/state?token={token}")
        assert r.status_code == 401  # a token in the URL is not accepted either
    with setup.gw.admin() as admin:
        weights = dict(admin.state().endpoints["fraud"].traffic.weights)
    reliability.case(
        "gateway",
        "admin API: weights after all refused writes",
        expected="still 90/10",
        measured=f"{weights}",
    )
    assert weights == {"v1": 90, "v2": 10}


def _listening(pid: int) -> list[tuple[str, int]]:
    proc = psutil.Process(pid)
    return [(c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]


def _proc_net_tcp_listeners(ports: set[int]) -> list[str]:
    """Local addresses of LISTEN sockets on these ports, straight from /proc/net/tcp{,6}."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            addr, port = f[1].rsplit(":", 1)
            if f[3] == "0A" and int(port, 16) in ports:
                out.append(addr)
    return out


def test_both_listeners_bind_loopback_only(setup: Setup, reliability: Recorder) -> None:
    pid = setup.gw.proc.pid
    listeners = _listening(pid)
    ports = {setup.port, setup.admin_port}
    raw_addrs = _proc_net_tcp_listeners(ports)
    reliability.case(
        "gateway",
        "listening addresses of the gateway process (data plane and admin API)",
        expected="127.0.0.1 only, both ports",
        measured=f"psutil: {sorted(listeners)}; /proc/net/tcp: {sorted(set(raw_addrs))}",
    )
    assert {p for _, p in listeners} == ports
    assert all(ip == "127.0.0.1" for ip, _ in listeners), listeners
    assert raw_addrs and all(a == "0100007F" for a in raw_addrs), raw_addrs
