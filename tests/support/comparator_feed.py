"""The shadow comparator of a rehearsal: mlserve's real comparator process, fed the CloudEvents
that KServe's and Seldon's payload loggers send for a mirrored request's two answers."""

from __future__ import annotations

import http.client
import json
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.exposition import ArmInfo, Behaviour


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cloudevent(serving: str, endpoint: str, arm: ArmInfo, rid: str) -> dict[str, str]:
    """The ce-* headers of one logged answer, as each serving layer's logger writes them."""
    if serving == "seldon":
        return {
            "ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-type": "io.seldon.serving.inference.response",
            "ce-source": f"http://{endpoint}-{arm.predictor}:8000/", "ce-inferenceservicename": endpoint,
            "ce-endpoint": arm.predictor, "ce-modelid": "model", "ce-requestid": rid, "ce-namespace": "ns",
            "content-type": "application/json",
        }  # fmt: skip
    return {
        "ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-type": "org.kubeflow.serving.inference.response",
        "ce-source": "http://localhost:9081/", "ce-inferenceservicename": arm.name, "ce-component": "predictor",
        "ce-endpoint": "", "ce-namespace": "ns", "ce-metadata": json.dumps({"X-Request-Id": [rid]}),
        "ce-annotations": json.dumps({"mlserve.io/endpoint": endpoint}), "content-type": "application/json",
    }  # fmt: skip


@dataclass
class Feed:
    """Posts both answers of each mirrored request to the comparator (keep-alive connection)."""

    port: int
    serving: str
    endpoint: str
    versions: dict[str, Behaviour]
    seed: int = 11

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.conn: http.client.HTTPConnection | None = None
        self.sent = 0

    def _post(self, headers: dict[str, str], body: bytes) -> None:
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                self.conn.request("POST", "/", body=body, headers=headers)
                self.conn.getresponse().read()
                self.sent += 1
                return
            except OSError:
                self.conn = None  # the comparator is down (or restarting): the answer is lost
                return
            except http.client.HTTPException:
                self.conn = None

    def __call__(self, primary: ArmInfo, shadow: ArmInfo, n: int) -> None:
        agree = self.versions.get(shadow.version, Behaviour()).agree
        for _ in range(n):
            rid = str(uuid.uuid4())
            score = float(self.rng.random())
            other = score if self.rng.random() < agree else 1.0 - score
            for arm, value in ((primary, score), (shadow, other)):
                body = json.dumps({"model_name": self.endpoint, "outputs": [
                    {"name": "predict", "datatype": "FP64", "shape": [1, 1], "data": [round(value, 6)]}]}).encode()  # fmt: skip
                self._post(cloudevent(self.serving, self.endpoint, arm, rid), body)


@contextmanager
def comparator_process(tmp: Path) -> Iterator[tuple[int, object]]:
    """``python -m mlserve.targets.comparator`` on loopback; yields (port, process)."""
    import sys
    import urllib.request

    from mlserve.tools import spawn

    port = free_port()
    proc = spawn(
        [sys.executable, "-m", "mlserve.targets.comparator", "--port", str(port), "--window", "10"],
        log_path=tmp / "comparator.log",
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    try:
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
