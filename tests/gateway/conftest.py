"""Real processes on loopback: fake V2 upstreams and the gateway, started and stopped per test."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlserve.local.admin_client import LocalGatewayClient
from mlserve.local.gateway_config import create_token_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
UPSTREAM = HERE / "v2_upstream.py"


def read_ready(proc: subprocess.Popen[str], timeout: float = 20.0) -> dict[str, Any]:
    """The child's first stdout line (its ``ready`` announcement), or fail with its stderr."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=0.1):
            line = proc.stdout.readline()
            if line:
                return json.loads(line)
        if proc.poll() is not None:
            break
    err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
    proc.kill()
    raise AssertionError(f"process did not become ready (rc={proc.poll()}): {err}")


def payload(rows: int = 1) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": [rows, 8], "datatype": "FP32", "data": [0.5] * (8 * rows)}]}


@dataclass
class Procs:
    """Everything a test started; stopped at teardown (SIGTERM, then SIGKILL)."""

    tmp: Path
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def popen(self, argv: list[str], cwd: Path | None = None, quiet: bool = False) -> subprocess.Popen[str]:
        """``quiet``: output goes to a log file in the test's folder (chatty servers would fill a pipe)."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        out: Any = subprocess.PIPE
        if quiet:
            out = open(self.tmp / f"proc-{len(self.procs)}.log", "wb")  # noqa: SIM115 - closed by the child's exit
        proc = subprocess.Popen(argv, stdout=out, stderr=out, text=True, env=env, stdin=subprocess.DEVNULL, cwd=cwd)
        if quiet:
            out.close()
        self.procs.append(proc)
        return proc

    def upstream(self, model: str = "fraud", value: float = 1.0, delay_ms: float = 0.0) -> str:
        proc = self.popen(
            [sys.executable, str(UPSTREAM), "--model", model, "--value", str(value), "--delay-ms", str(delay_ms)]
        )
        return f"http://127.0.0.1:{read_ready(proc)['port']}"

    def stop(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()


@dataclass
class GatewayProc:
    proc: subprocess.Popen[str]
    url: str
    admin_url: str
    token: str
    config_path: Path

    def admin(self) -> LocalGatewayClient:
        return LocalGatewayClient(self.admin_url, self.token)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics").text
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def count(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include ``labels``."""
        return sum(
            v
            for (n, lbl), v in self.metrics().items()
            if n == name and all(dict(lbl).get(k) == x for k, x in labels.items())
        )


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.close()


def gateway_config(tmp: Path, endpoints: dict[str, Any], **extra: Any) -> Path:
    token_file = tmp / ".mlserve" / "admin-token"
    if not token_file.exists():
        create_token_file(token_file)
    cfg = {
        "format": "mlserve.gateway/v1",
        "port": 0,
        "admin_port": 0,
        "admin_token_file": str(token_file),
        "state_file": str(tmp / ".mlserve" / "local" / "traffic.json"),
        "endpoints": endpoints,
        **extra,
    }
    path = tmp / ".mlserve" / "local" / "gateway.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


def start_gateway(procs: Procs, config_path: Path) -> GatewayProc:
    proc = procs.popen([sys.executable, "-m", "mlserve.local.gateway", "--config", str(config_path)])
    ready = read_ready(proc)
    cfg = json.loads(config_path.read_text())
    token = Path(cfg["admin_token_file"]).read_text().strip()
    return GatewayProc(
        proc, f"http://127.0.0.1:{ready['port']}", f"http://127.0.0.1:{ready['admin_port']}", token, config_path
    )


def endpoint(versions: dict[str, str], weights: dict[str, int], baseline: str = "v1", **extra: Any) -> dict[str, Any]:
    return {"versions": versions, "baseline": baseline, "traffic": {"mode": "split", "weights": weights}, **extra}
