"""The shadow comparator's own logic: which answer a CloudEvent carries, pairing by request id,
bounded memory, and its exposition (served over loopback and read by Prometheus' parser)."""

from __future__ import annotations

import json
import urllib.request

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
