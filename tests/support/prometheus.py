"""A real Prometheus on loopback, scraping one target every second, for the metrics tests."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from mlserve.tools import spawn, which


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def prometheus(tmp: Path, job: str, target_port: int, labels: Mapping[str, str] | None = None) -> Iterator[str]:
    """Prometheus scraping ``127.0.0.1:target_port`` (with ``labels`` on its series); yields its
    URL once it answers ready, and stops it afterwards."""
    extra = "".join(f"        labels: {{{k}: {v}}}\n" for k, v in (labels or {}).items())
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n" + extra
    )
    port = free_port()
    proc = spawn(
        [
            which("prometheus", env_override="MLSERVE_PROMETHEUS_BIN"),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log_path=tmp / "prometheus.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("prometheus did not become ready:\n" + (tmp / "prometheus.log").read_text()[-2000:])
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
