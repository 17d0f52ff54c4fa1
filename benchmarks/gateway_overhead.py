"""Gateway overhead on loopback: the same V2 requests sent straight to a model server, through the
mlserve gateway, and (where nginx is installed) through nginx with ``split_clients``.

Open-loop load at fixed rates (latency measured from each request's *scheduled* send time, so a
stalled server cannot hide its queue), then closed-loop maximum throughput against a trivial
upstream. Targets run in alternating short rounds so that drifting background load on the
machine falls on every target alike.

    .venv/bin/python benchmarks/gateway_overhead.py [--seconds 10] [--rounds 2] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._report import write_section  # noqa: E402
from mlserve.local.gateway_config import create_token_file  # noqa: E402

UPSTREAM = REPO / "tests" / "gateway" / "v2_upstream.py"
BODY = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP32", "data": [0.5] * 8}]}).encode()
HEADERS = {"content-type": "application/json"}


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


@dataclass
class Stack:
    tmp: Path
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self, argv: list[str], ready_line: bool = True) -> dict[str, Any]:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.procs.append(proc)
        if not ready_line:
            return {}
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=30):
            raise RuntimeError(f"{argv[:3]} did not start")
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{argv[:3]} exited: {proc.stderr.read() if proc.stderr else ''}")
        return json.loads(line)

    def upstream(self, value: float = 1.0) -> str:
        ready = self.start([sys.executable, str(UPSTREAM), "--model", "fraud", "--value", str(value)])
        return f"http://127.0.0.1:{ready['port']}"

    def gateway(
        self,
        name: str,
        versions: dict[str, str],
        traffic: dict[str, Any],
        client: str,
        monitoring: dict[str, Any] | None = None,
    ) -> tuple[str, str]:
        token = self.tmp / "admin-token"
        if not token.exists():
            create_token_file(token)
        cfg = {
            "format": "mlserve.gateway/v1",
            "port": 0,
            "admin_port": 0,
            "admin_token_file": str(token),
            "state_file": str(self.tmp / f"{name}-traffic.json"),
            "upstream_client": client,
            "shadow_max_inflight": 1024,
            "endpoints": {"fraud": {"versions": versions, "baseline": "v1", "traffic": traffic}},
        }
        if monitoring is not None:
            cfg["endpoints"]["fraud"]["monitoring"] = monitoring
        path = self.tmp / f"{name}.json"
        path.write_text(json.dumps(cfg))
        ready = self.start([sys.executable, "-m", "mlserve.local.gateway", "--config", str(path)])
        return f"http://127.0.0.1:{ready['port']}", f"http://127.0.0.1:{ready['admin_port']}"

    def nginx(self, v1: str, v2: str) -> str | None:
        binary = shutil.which("nginx")
        if binary is None:
            return None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        prefix = self.tmp / "nginx"
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        hostport = lambda url: url.removeprefix("http://")  # noqa: E731
        conf.write_text(
            f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream v1 {{ server {hostport(v1)}; keepalive 64; }}
    upstream v2 {{ server {hostport(v2)}; keepalive 64; }}
    split_clients "${{request_id}}" $variant {{ 90% v1; * v2; }}
    server {{
        listen 127.0.0.1:{port};
        location /v2/ {{
            proxy_pass http://$variant;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header x-mlserve-variant $variant;
        }}
    }}
}}
"""
        )
        self.start([binary, "-p", str(prefix), "-c", str(conf)], ready_line=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return f"http://127.0.0.1:{port}"
            time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


DRIFT = "mlserve gateway, drift summaries on"


def drift_profile(tmp: Path) -> Path:
    """A reference profile for the benchmark's 8-feature rows (deciles of normal draws), so the
    drift row bins every input and output the way an opted-in endpoint does."""
    import random

    from mlserve.monitoring.profile import Profile, summarise

    rng = random.Random(1)
    feats = tuple(summarise(f"input-0[{j}]", [rng.gauss(0.5, 1.0) for _ in range(2000)]) for j in range(8))
    pred = summarise("predict", [float(rng.random() < 0.1) for _ in range(2000)])
    path = tmp / "profile.json"
    path.write_text(json.dumps(Profile(feats, pred, 2000, "benchmark").to_dict()))
    return path


def summary_cost(profile: Path, n: int = 20000) -> tuple[float, float]:
    """CPU time in this process (no network, no other process in the figure): microseconds per
    answered request for the drift summaries (parse the rows, bin 8 features and the
    prediction), and milliseconds per Prometheus scrape for the statistics of 3 versions."""
    from prometheus_client import CollectorRegistry, generate_latest

    from mlserve.monitoring.profile import load_profile
    from mlserve.monitoring.summaries import DriftCollector, EndpointMonitor, MonitorConfig

    mon = EndpointMonitor("fraud", ["v1", "v2", "v3"], "v1", MonitorConfig(profile=profile), load_profile(profile))
    payload = json.loads(BODY)
    answer = json.dumps({"outputs": [{"name": "predict", "shape": [1, 1], "data": [1.0]}]}).encode()
    t0 = time.process_time()
    for i in range(n):
        mon.observe(("v1", "v2", "v3")[i % 3], payload, answer)
    per_request = (time.process_time() - t0) / n * 1e6
    reg = CollectorRegistry()
    reg.register(DriftCollector({"fraud": mon}))
    t0 = time.process_time()
    for _ in range(50):
        generate_latest(reg)
    per_scrape = (time.process_time() - t0) / 50 * 1e3
    return per_request, per_scrape


def histogram_cost(n: int = 200_000) -> dict[str, float]:
    """CPU microseconds per observation of one latency histogram child: the gateway's fine
    buckets (373 bounds 3% apart, one bisect) against the client library's Histogram with the
    same bounds (a linear scan) and with its former 13 coarse bounds."""
    import random

    from prometheus_client import CollectorRegistry, Histogram

    from mlserve.metrics.buckets import LATENCY_BUCKETS, FineHistogram

    rng = random.Random(1)
    xs = [rng.lognormvariate(-3.5, 0.6) for _ in range(n)]
    out: dict[str, float] = {}
    fine = FineHistogram("fine_seconds", "", ("endpoint", "variant"))
    key = ("fraud", "v1")
    t0 = time.process_time()
    for x in xs:
        fine.observe(key, x)
    out["fine buckets, bisect (373 bounds)"] = (time.process_time() - t0) / n * 1e6
    coarse = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    for label, bounds in (
        ("client Histogram, same 373 bounds", LATENCY_BUCKETS),
        ("client Histogram, 13 coarse bounds", coarse),
    ):
        child = Histogram(
            "h_seconds", "", ["endpoint", "variant"], buckets=bounds, registry=CollectorRegistry()
        ).labels(*key)
        t0 = time.process_time()
        for x in xs:
            child.observe(x)
        out[label] = (time.process_time() - t0) / n * 1e6
    return out


# ---------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    sent: int = 0
    seconds: float = 0.0

    def add(self, other: Run) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        self.sent += other.sent
        self.seconds += other.seconds

    def q(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else float("nan")


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=2000, keepalive_timeout=30),
        timeout=aiohttp.ClientTimeout(total=10),  # a request later than this counts as an error
    )


async def open_loop(url: str, rate: float, seconds: float) -> Run:
    """Send at a fixed rate whatever the answers take; latency counted from the scheduled time."""
    run = Run()
    async with session() as s:
        for _ in range(20):  # warm the pool
            try:
                async with s.post(url, data=BODY, headers=HEADERS) as r:
                    await r.read()
            except (aiohttp.ClientError, TimeoutError):
                pass

        async def one(scheduled: float) -> None:
            try:
                async with s.post(url, data=BODY, headers=HEADERS) as r:
                    await r.read()
                    if r.status != 200:
                        run.errors += 1
                        return
            except (aiohttp.ClientError, TimeoutError):
                run.errors += 1
                return
            run.latencies.append(time.perf_counter() - scheduled)

        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        run.sent, run.seconds = n, time.perf_counter() - start
    return run


async def closed_loop(url: str, concurrency: int, seconds: float) -> Run:
    """As fast as the target answers with ``concurrency`` requests in flight."""
    run = Run()
    async with session() as s:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with s.post(url, data=BODY, headers=HEADERS) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                run.sent += 1
                if ok:
                    run.latencies.append(time.perf_counter() - t0)
                else:
                    run.errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.seconds = time.perf_counter() - start
    return run


def run_loop(coro: Any) -> Run:
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.run(coro)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one round at one rate")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per target and rate")
    parser.add_argument("--throughput-seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-write", action="store_true", help="print, do not touch docs/benchmarks.md")
    parser.add_argument("--histogram-only", action="store_true", help="print the histogram cost only (no load)")
    args = parser.parse_args()
    hist = histogram_cost()
    for label, us in hist.items():
        print(f"latency histogram: {label}: {us:.2f} us CPU per observation")
    if args.histogram_only:
        return

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="mlserve-gw-bench-"))
    stack = Stack(tmp)
    try:
        v1, v2 = stack.upstream(1.0), stack.upstream(1.0)
        path = "/v2/models/fraud/infer"
        split = {"mode": "split", "weights": {"v1": 90, "v2": 10}}
        gw, _ = stack.gateway("gw", {"v1": v1, "v2": v2}, split, "raw")
        gw_aiohttp, _ = stack.gateway("gw-aiohttp", {"v1": v1, "v2": v2}, split, "aiohttp")
        gw_httpx, _ = stack.gateway("gw-httpx", {"v1": v1, "v2": v2}, split, "httpx")
        gw_drift, _ = stack.gateway(
            "gw-drift", {"v1": v1, "v2": v2}, split, "raw", monitoring={"profile": str(drift_profile(tmp))}
        )
        shadow = {"mode": "split", "weights": {"v1": 100}, "shadow": {"version": "v2", "percent": 100}}
        gw_shadow, _ = stack.gateway("gw-shadow", {"v1": v1, "v2": v2}, shadow, "raw")
        ngx = stack.nginx(v1, v2)
        targets = {"direct (upstream)": v1 + path, "mlserve gateway": gw + path, DRIFT: gw_drift + path}
        if ngx:
            targets["nginx split_clients"] = ngx + path
        targets["mlserve gateway, 100% shadow"] = gw_shadow + path
        # Closed loop only: at a fixed rate it falls behind, and the backlog it leaves would land
        # on the next target's measurement.
        throughput_targets = {
            **targets,
            "mlserve gateway, aiohttp client": gw_aiohttp + path,
            "mlserve gateway, httpx client": gw_httpx + path,
        }

        rates = (100, 300)
        latency: dict[tuple[str, int], Run] = {}
        rounds_p99: dict[tuple[str, int], list[float]] = {}
        for rate in rates:
            for rnd in range(args.rounds):
                for name, url in targets.items():
                    r = run_loop(open_loop(url, rate, args.seconds))
                    latency.setdefault((name, rate), Run()).add(r)
                    rounds_p99.setdefault((name, rate), []).append(r.q(0.99))
                    time.sleep(1.0)  # let a target that fell behind drain before the next one
                    print(
                        f"rate {rate} round {rnd + 1} {name:32s} p50 {r.q(0.5):6.2f} ms  p99 {r.q(0.99):6.2f} ms"
                        f"  errors {r.errors}",
                        flush=True,
                    )
        throughput: dict[str, Run] = {}
        for rnd in range(args.rounds):
            for name, url in throughput_targets.items():
                r = run_loop(closed_loop(url, args.concurrency, args.throughput_seconds))
                throughput.setdefault(name, Run()).add(r)
                print(f"throughput round {rnd + 1} {name:32s} {r.sent / r.seconds:7.0f} req/s  errors {r.errors}")
    finally:
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)

    load = (load_before, os.getloadavg()[0])
    tmp2 = Path(tempfile.mkdtemp(prefix="mlserve-gw-bench-"))
    try:
        cost = summary_cost(drift_profile(tmp2))
    finally:
        shutil.rmtree(tmp2, ignore_errors=True)
    print(f"drift summaries: {cost[0]:.1f} us CPU per request, {cost[1]:.2f} ms CPU per scrape")
    body = report(
        targets, throughput_targets, rates, latency, rounds_p99, throughput, args, ngx is not None, load, cost
    )
    body += (
        "\n\nLatency histogram, CPU per observation (one child, 200,000 log-normal latencies): "
        + ", ".join(f"{label} {us:.2f} us" for label, us in hist.items())
        + ".\n"
    )
    print(body)
    if not args.no_write:
        write_section("gateway_overhead", "Gateway overhead (local target)", body)


def report(
    targets: dict[str, str],
    throughput_targets: dict[str, str],
    rates: tuple[int, ...],
    latency: dict[tuple[str, int], Run],
    rounds_p99: dict[tuple[str, int], list[float]],
    throughput: dict[str, Run],
    args: argparse.Namespace,
    with_nginx: bool,
    load: tuple[float, float],
    cost: tuple[float, float],
) -> str:
    direct = "direct (upstream)"
    lines = [
        "The same V2 inference request (one row of 8 floats) sent to a trivial V2 upstream "
        "(`tests/gateway/v2_upstream.py`, uvicorn) directly and through each data plane. Open-loop load: "
        "requests leave on a fixed schedule and latency counts from the scheduled time. Targets alternate "
        f"in rounds ({args.rounds} x {args.seconds:g} s per target and rate, 1 s pause between targets). "
        "Gateway and nginx split 90/10 "
        "across two identical upstreams; the shadow row routes 100% to v1 and mirrors every request to v2; "
        "the drift row is the same gateway with drift summaries on for the endpoint. "
        "Load generator: aiohttp on uvloop, in the same machine.",
        "",
        "| target | rate (req/s) | p50 (ms) | p99 (ms) | added p50 (ms) | added p99 (ms) | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in rates:
        base = latency[(direct, rate)]
        for name in targets:
            r = latency[(name, rate)]
            added = (
                ("", "") if name == direct else (f"{r.q(0.5) - base.q(0.5):+.2f}", f"{r.q(0.99) - base.q(0.99):+.2f}")
            )
            lines.append(
                f"| {name} | {rate} | {r.q(0.5):.2f} | {r.q(0.99):.2f} | {added[0]} | {added[1]} | {r.errors} |"
            )
    gw300, base300 = latency[("mlserve gateway", 300)], latency[(direct, 300)]
    add50, add99 = gw300.q(0.5) - base300.q(0.5), gw300.q(0.99) - base300.q(0.99)
    drift300 = latency[(DRIFT, 300)]
    d50, d99 = drift300.q(0.5) - base300.q(0.5), drift300.q(0.99) - base300.q(0.99)
    rps = {n: throughput[n].sent / throughput[n].seconds for n in (DRIFT, "mlserve gateway")}
    lines += [
        "",
        f"Targets at 300 req/s: added p50 <= 1 ms: **{'met' if add50 <= 1 else 'not met'}** ({add50:+.2f} ms); "
        f"added p99 <= 5 ms: **{'met' if add99 <= 5 else 'not met'}** ({add99:+.2f} ms). "
        "The p99 comparison is weak evidence on a shared machine: stalls caused by other processes "
        "dominate the tail, so p99 moves between rounds far more than any data plane adds. "
        "Per-round p99 at 300 req/s (ms): "
        + "; ".join(
            f"{name} " + ", ".join(f"{v:.1f}" for v in rounds_p99[(name, 300)])
            for name in targets
            if (name, 300) in rounds_p99
        )
        + ".",
        "",
        f"Drift summaries on (`[endpoints.NAME.monitoring]`: every forwarded row binned into 8 features, every "
        f"prediction counted and binned, a 30-slot sliding window; statistics computed per scrape, not per "
        f"request): added p50 {d50:+.2f} ms and p99 {d99:+.2f} ms at 300 req/s, against {add50:+.2f} / "
        f"{add99:+.2f} ms with them off, in the same rounds; closed-loop throughput {rps[DRIFT]:.0f} vs "
        f"{rps['mlserve gateway']:.0f} req/s ({rps[DRIFT] / rps['mlserve gateway']:.2f}x). "
        f"The same work measured alone, as CPU time in one process (no network, no other process): "
        f"**{cost[0]:.1f} us per answered request** (parse the rows, bin 8 features and the prediction), "
        f"that is {cost[0] * 300 / 1e4:.2f}% of one core at 300 req/s, and **{cost[1]:.2f} ms per Prometheus "
        f"scrape** for the statistics of 3 versions x 9 series.",
        "",
        f"Maximum throughput, closed loop with {args.concurrency} requests in flight "
        f"({args.rounds} x {args.throughput_seconds:g} s per target):",
        "",
        "| target | req/s | p50 (ms) | p99 (ms) | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in throughput_targets:
        r = throughput[name]
        lines.append(f"| {name} | {r.sent / r.seconds:.0f} | {r.q(0.5):.2f} | {r.q(0.99):.2f} | {r.errors} |")
    gw_rps = throughput["mlserve gateway"].sent / throughput["mlserve gateway"].seconds
    if with_nginx:
        ngx_rps = throughput["nginx split_clients"].sent / throughput["nginx split_clients"].seconds
        lines += ["", f"Throughput ratio mlserve gateway / nginx (1 worker each): **{gw_rps / ngx_rps:.2f}**."]
    else:
        lines += ["", "nginx is not installed on this machine: no peer row (install `nginx` and re-run)."]
    lines += [
        "",
        f"Machine: {os.cpu_count()} cores, shared by the load generator, the upstreams and the data plane "
        f"under test, and by whatever else ran at the time: the 1-minute load average was {load[0]:.1f} at the "
        f"start of the run and {load[1]:.1f} at the end. The figures are therefore upper bounds on the data "
        "plane's own cost. The gateway is one Python process "
        "(uvicorn with httptools, uvloop, and its own keep-alive upstream client, "
        "`upstream_client = 'raw'`); nginx runs one worker. The aiohttp and httpx rows are the same "
        "gateway with `upstream_client = 'aiohttp'` / `'httpx'`. When every process gets a fair share of "
        "oversubscribed cores, throughput follows CPU per request, which is where a Python data plane "
        "loses to nginx.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
