"""The shadow comparator's own logic: which answer a CloudEvent carries, pairing by request id,
bounded memory, and its exposition (served over loopback and read by Prometheus' parser)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mlserve.targets.comparator import Comparator, identify, serve

V2 = {"outputs": [{"name": "predict", "data": [0.25]}]}
V2_OTHER = {"outputs": [{"name": "predict", "data": [0.75]}]}


def kserve(isvc: str, rid: str) -> dict[str, str]:
    return {
        "ce-type": "org.kubeflow.serving.inference.response", "ce-id": "random-per-event",
        "ce-inferenceservicename": isvc, "ce-annotations": json.dumps({"mlserve.io/endpoint": "fraud"}),
        "ce-metadata": json.dumps({"X-Request-Id": [rid]}),
    }  # fmt: skip


def test_identify_reads_kserve_and_seldon_events() -> None:
    assert identify(kserve("fraud-v2", "r1")) == ("fraud", "fraud-v2", "r1")
    seldon = {"ce-type": "io.seldon.serving.inference.response", "ce-inferenceservicename": "fraud",
              "ce-endpoint": "v2", "ce-requestid": "r9"}  # fmt: skip
    assert identify(seldon) == ("fraud", "v2", "r9")
    assert identify({**seldon, "ce-type": "io.seldon.serving.inference.request"}) is None  # requests are ignored
    no_meta = {k: v for k, v in kserve("fraud-v1", "x").items() if k != "ce-metadata"}
    assert identify(no_meta) == ("fraud", "fraud-v1", "random-per-event")  # falls back to ce-id


def test_pairs_by_request_id_and_counts_agreement() -> None:
    c = Comparator(window=30)
    assert c.receive("fraud", "fraud-v1", "a", V2, now=0.0) is None
    assert c.receive("fraud", "fraud-v1", "b", V2, now=0.1) is None
    assert c.receive("fraud", "fraud-v2", "a", V2, now=0.2) is True
    assert c.receive("fraud", "fraud-v2", "b", V2_OTHER, now=0.3) is False
    assert c.receive("fraud", "fraud-v1", "c", V2, now=0.4) is None
    assert c.receive("fraud", "fraud-v1", "c", V2, now=0.5) is None  # the same arm twice is not a pair
    assert c.pairs == {("fraud", "fraud-v1", "fraud-v2", "true"): 1, ("fraud", "fraud-v1", "fraud-v2", "false"): 1}
    assert len(c.pending) == 1


def test_memory_is_bounded_by_window_and_size() -> None:
    c = Comparator(window=10, max_pending=100)
    for i in range(150):
        c.receive("fraud", "fraud-v1", f"r{i}", V2, now=float(i) * 0.01)
    assert len(c.pending) <= 101
    c.receive("fraud", "fraud-v1", "late", V2, now=100.0)  # everything older than the window expires
    assert len(c.pending) == 1
    assert c.unpaired[("fraud", "fraud-v1")] == 150


def test_served_exposition_parses() -> None:
    comp = Comparator()
    server = serve(comp, "127.0.0.1", 0)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        for arm, body in (("fraud-v1", V2), ("fraud-v2", V2_OTHER)):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=json.dumps(body).encode(),
                                         headers=kserve(arm, "r1"), method="POST")  # fmt: skip
            with urllib.request.urlopen(req, timeout=5) as r:
                assert r.status == 202
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        server.shutdown()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    sample = families["mlserve_shadow_agreement"].samples[0]
    assert sample.labels == {"endpoint": "fraud", "first": "fraud-v1", "second": "fraud-v2", "agree": "false"}
    assert sample.value == 1.0
    assert {s.labels["arm"] for s in families["mlserve_shadow_answers"].samples} == {"fraud-v1", "fraud-v2"}


def test_with_monitoring_on_the_comparator_passes_every_event_on_to_the_drift_collector(tmp_path: Path) -> None:
    """One payload logger per arm, two readers: the logger posts requests and responses to the
    comparator at /log/ENDPOINT/VERSION, which compares the answers and forwards every event
    unchanged to the endpoint's drift collector (both real processes here). A collector that is
    down loses its events (counted as failed); the comparison goes on."""
    import socket
    import subprocess
    import sys
    import time

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def up(url: str) -> None:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"{url} did not come up")

    def metrics(p: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=5) as r:
            text = r.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }

    repo = Path(__file__).resolve().parents[2]
    cfg = tmp_path / "collector.json"
    cfg.write_text(json.dumps({
        "endpoint": "fraud", "baseline": "v1", "versions": ["v1", "v2"],
        "monitoring": {"profile": str(repo / "profiles" / "fraud.json"), "window": 60, "slots": 6, "min_samples": 50},
    }))  # fmt: skip
    cport, kport = port(), port()
    collector = subprocess.Popen(
        [sys.executable, "-m", "mlserve.monitoring.collector", "--config", str(cfg), "--port", str(cport)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    comparator = subprocess.Popen(
        [sys.executable, "-m", "mlserve.targets.comparator", "--port", str(kport),
         "--forward", f"fraud=http://127.0.0.1:{cport}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        up(f"http://127.0.0.1:{cport}/healthz")
        up(f"http://127.0.0.1:{kport}/healthz")

        def log(version: str, ce_type: str, rid: str, body: dict[str, object]) -> None:
            headers = {**kserve(f"fraud-{version}", rid), "ce-type": ce_type, "ce-id": f"{version}-{rid}",
                       "content-type": "application/json"}  # fmt: skip
            req = urllib.request.Request(f"http://127.0.0.1:{kport}/log/fraud/{version}", data=json.dumps(body).encode(),
                                         headers=headers, method="POST")  # fmt: skip
            with urllib.request.urlopen(req, timeout=5) as r:
                assert r.status == 202

        def mirrored(n: int, start: int = 0) -> None:
            inputs = {"inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP32", "data": [0.1] * 8}]}
            for i in range(start, start + n):
                for version in ("v1", "v2"):
                    log(version, "org.kubeflow.serving.inference.request", f"r{i}", inputs)
                    log(version, "org.kubeflow.serving.inference.response", f"r{i}", V2)

        mirrored(60)
        pair = ("mlserve_shadow_agreement_total",
                (("agree", "true"), ("endpoint", "fraud"), ("first", "fraud-v1"), ("second", "fraud-v2")))  # fmt: skip
        sent = ("mlserve_shadow_forwarded_total", (("endpoint", "fraud"), ("outcome", "sent")))
        deadline = time.time() + 20
        while metrics(kport).get(sent, 0) < 240 and time.time() < deadline:
            time.sleep(0.2)
        assert metrics(kport)[pair] == 60 and metrics(kport)[sent] == 240
        seen = metrics(cport)
        for version in ("v1", "v2"):
            key = ("mlserve_predictions_total", (("class", "positive"), ("endpoint", "fraud"), ("variant", version)))
            neg = ("mlserve_predictions_total", (("class", "negative"), ("endpoint", "fraud"), ("variant", version)))
            assert seen.get(key, 0) + seen.get(neg, 0) == 60, sorted(
                k for k in seen if k[0] == "mlserve_predictions_total"
            )
        collector.terminate()
        collector.wait(10)
        mirrored(5, start=60)
        failed = ("mlserve_shadow_forwarded_total", (("endpoint", "fraud"), ("outcome", "failed")))
        deadline = time.time() + 20
        while metrics(kport).get(failed, 0) < 20 and time.time() < deadline:
            time.sleep(0.2)
        after = metrics(kport)
        assert after[pair] == 65 and after[failed] == 20 and after[sent] == 240
    finally:
        for proc in (comparator, collector):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
