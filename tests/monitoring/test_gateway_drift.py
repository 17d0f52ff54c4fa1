"""Drift summaries in the gateway: the sliding window (in process, on a controlled clock) and
the real gateway process between real V2 upstreams, read through its /metrics page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mlserve.errors import TargetError
from mlserve.monitoring.profile import Profile, build_profile
from mlserve.monitoring.summaries import DriftCollector, EndpointMonitor, MonitorConfig
from tests.gateway.conftest import Procs, endpoint, gateway_config, procs, start_gateway  # noqa: F401

RNG = np.random.default_rng(5)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(rows: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}]
    }


def answer(values: list[float]) -> bytes:
    return json.dumps({"outputs": [{"name": "predict", "shape": [len(values), 1], "data": values}]}).encode()


def reference(tmp_path: Path, n: int = 3000) -> Path:
    x = RNG.normal(size=(n, 3))
    path = tmp_path / "ref.jsonl"
    path.write_text("\n".join(json.dumps(request(x[i : i + 10])) for i in range(0, n, 10)) + "\n")
    prof = build_profile(path)
    out = tmp_path / "profile.json"
    out.write_text(json.dumps(prof.to_dict()))
    return out


def monitor(profile: Profile | None, clock: Clock, **cfg: Any) -> EndpointMonitor:
    config = MonitorConfig(window=60.0, slots=6, min_samples=100, reference_size=500, **cfg)
    return EndpointMonitor("fraud", ["v1", "v2"], "v1", config, profile, clock=clock)


def feed(mon: EndpointMonitor, variant: str, n: int, shift: float = 0.0, positive: float = 0.1) -> None:
    for _ in range(n // 5):
        rows = RNG.normal(shift, 1.0, size=(5, 3))
        mon.observe(variant, request(rows), answer([float(RNG.random() < positive) for _ in range(5)]))


def test_shifted_inputs_raise_psi_and_the_window_slides(tmp_path: Path) -> None:
    from mlserve.monitoring.profile import load_profile

    clock = Clock()
    mon = monitor(load_profile(reference(tmp_path)), clock)
    feed(mon, "v1", 500)
    feed(mon, "v2", 500, shift=1.0)
    stats1, stats2 = mon.drift("v1"), mon.drift("v2")
    assert mon.samples("v1")["input"] == mon.samples("v2")["input"] == 500
    # the profile has no prediction section: its reference was learned from v1's 500 answers,
    # so v1's prediction window starts after them (v2's answers came later)
    assert (mon.samples("v1")["prediction"], mon.samples("v2")["prediction"]) == (5, 500)
    psi1 = {s.feature: s.psi for s in stats1 if s.kind == "input"}
    psi2 = {s.feature: s.psi for s in stats2 if s.kind == "input"}
    assert set(psi1) == {"input-0[0]", "input-0[1]", "input-0[2]"}
    assert max(psi1.values()) < 0.1 < 0.5 < min(psi2.values())
    assert all(s.p_value is not None and s.p_value < 1e-6 for s in stats2 if s.kind == "input")
    # half a window later the old rows are still there; a full window later they are gone
    clock.now += 30
    assert mon.samples("v2")["input"] == 500
    feed(mon, "v2", 200)  # unshifted
    clock.now += 35
    assert mon.samples("v2")["input"] == 200
    assert max(s.psi for s in mon.drift("v2") if s.kind == "input") < 0.15


def test_no_figures_below_min_samples_and_predictions_are_counted(tmp_path: Path) -> None:
    from mlserve.monitoring.profile import load_profile

    clock = Clock()
    mon = monitor(load_profile(reference(tmp_path)), clock)
    feed(mon, "v1", 50, positive=0.0)
    assert mon.drift("v1") == [] and mon.samples("v1")["input"] == 50
    feed(mon, "v2", 200, positive=1.0)
    assert (mon.positives, mon.negatives) == ({"v1": 0, "v2": 200}, {"v1": 50, "v2": 0})


def test_reference_learned_from_the_baseline_then_prediction_drift(tmp_path: Path) -> None:
    clock = Clock()
    mon = monitor(None, clock)
    assert not mon.ready
    feed(mon, "v2", 600, shift=3.0)  # the candidate's traffic never becomes the reference
    feed(mon, "v1", 500, positive=0.1)
    assert mon.ready and mon.inputs is not None and mon.prediction is not None
    assert mon.prediction.categorical and mon.prediction.centres == (0.0, 1.0)
    assert mon.drift("v2") == [] and mon.samples("v2") == {"input": 0, "prediction": 0}  # windows start now
    feed(mon, "v1", 300, positive=0.1)
    feed(mon, "v2", 300, positive=0.5)
    pred = {v: next(s for s in mon.drift(v) if s.kind == "prediction") for v in ("v1", "v2")}
    assert pred["v1"].psi < 0.1 < 0.3 < pred["v2"].psi
    assert pred["v2"].feature == "prediction"


def test_unusable_payloads_are_counted_not_summarised(tmp_path: Path) -> None:
    from mlserve.monitoring.profile import load_profile

    mon = monitor(load_profile(reference(tmp_path)), Clock())
    mon.observe("v1", {"inputs": [{"data": ["a", "b"], "shape": [1, 2]}]}, b"not json")
    mon.observe("v1", request(np.zeros((1, 5))), answer([1.0]))
    assert mon.skipped == {("v1", "input"): 1, ("v1", "output"): 1, ("v1", "width"): 1}
    assert mon.samples("v1") == {"input": 0, "prediction": 0}  # the profile has no prediction: learning
    assert mon.negatives["v1"] == 0 and mon.positives["v1"] == 1  # but the prediction is counted


def test_collector_exports_documented_series(tmp_path: Path) -> None:
    from mlserve.monitoring.profile import load_profile

    clock = Clock()
    mon = monitor(load_profile(reference(tmp_path)), clock)
    feed(mon, "v1", 200)
    reg = CollectorRegistry()
    reg.register(DriftCollector({"fraud": mon}))
    text = generate_latest(reg).decode()
    for name in ("mlserve_drift_psi", "mlserve_drift_jensen_shannon", "mlserve_drift_wasserstein"):
        assert f'{name}{{endpoint="fraud",feature="input-0[0]",kind="input",variant="v1"}}' in text
    assert 'mlserve_drift_window_samples{endpoint="fraud",kind="input",variant="v1"} 200.0' in text
    assert 'mlserve_drift_window_samples{endpoint="fraud",kind="input",variant="v2"} 0.0' in text
    assert 'mlserve_predictions_total{class="positive",endpoint="fraud",variant="v1"}' in text
    assert 'mlserve_drift_reference_ready{endpoint="fraud"} 0.0' in text  # the prediction's: 200 of 500
    feed(mon, "v1", 300)
    assert 'mlserve_drift_reference_ready{endpoint="fraud"} 1.0' in generate_latest(reg).decode()
    # v2 is below min_samples: its window size is exported, no statistic
    assert not [line for line in text.splitlines() if line.startswith("mlserve_drift_psi") and 'variant="v2"' in line]


def test_gateway_process_summarises_what_it_forwards(procs: Procs, tmp_path: Path) -> None:  # noqa: F811
    profile = reference(tmp_path)
    v1, v2 = procs.upstream(value=0.0), procs.upstream(value=1.0)
    mon = {"profile": str(profile), "window": 60, "slots": 6, "min_samples": 100}
    cfg = gateway_config(tmp_path, {"fraud": endpoint({"v1": v1, "v2": v2}, {"v1": 50, "v2": 50}, monitoring=mon)})
    gw = start_gateway(procs, cfg)
    with httpx.Client(timeout=10) as client:
        for _ in range(300):
            rows = RNG.normal(2.0, 1.0, size=(2, 3))
            r = client.post(f"{gw.url}/v2/models/fraud/infer", json=request(rows))
            assert r.status_code == 200
    pos = gw.count("mlserve_predictions_total", variant="v2", **{"class": "positive"})
    neg = gw.count("mlserve_predictions_total", variant="v1", **{"class": "negative"})
    assert pos + neg == 600 and pos > 150 and neg > 150  # v2 answers 1.0, v1 0.0: 2 rows per request
    assert gw.count("mlserve_predictions_total", variant="v1", **{"class": "positive"}) == 0
    assert gw.count("mlserve_drift_window_samples", kind="input") == 600
    psi = [v for (n, lbl), v in gw.metrics().items() if n == "mlserve_drift_psi" and dict(lbl)["kind"] == "input"]
    assert len(psi) == 6 and min(psi) > 1.0  # inputs shifted by 2 sd on both variants


def test_gateway_refuses_a_missing_profile(procs: Procs, tmp_path: Path) -> None:  # noqa: F811
    cfg = gateway_config(
        tmp_path,
        {"fraud": endpoint({"v1": "http://127.0.0.1:9"}, {"v1": 100}, monitoring={"profile": "nope.json"})},
    )
    proc = procs.popen([__import__("sys").executable, "-m", "mlserve.local.gateway", "--config", str(cfg)])
    assert proc.wait(30) == 2
    assert "nope.json: no such reference profile" in (proc.stderr.read() if proc.stderr else "")


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"window": 0}, "endpoints.fraud.monitoring.window: must be a number between 1 and"),
        ({"slots": 1.5}, "endpoints.fraud.monitoring.slots: must be an integer"),
        ({"colour": "red"}, "endpoints.fraud.monitoring.colour: unknown key"),
    ],
)
def test_bad_monitoring_config_names_the_key(tmp_path: Path, block: dict[str, Any], message: str) -> None:
    from mlserve.local.gateway_config import GatewayConfigError, load_gateway_config

    cfg = gateway_config(tmp_path, {"fraud": endpoint({"v1": "http://127.0.0.1:9"}, {"v1": 100}, monitoring=block)})
    with pytest.raises(GatewayConfigError) as err:
        load_gateway_config(cfg)
    assert message in str(err.value)


def test_a_reload_keeps_the_counts_adds_a_version_and_turns_monitoring_on(procs: Procs, tmp_path: Path) -> None:  # noqa: F811
    """Hot reconfiguration (POST /admin/reload): a new version is summarised and counted from
    the reload on while the others keep their counts (counters never go back); monitoring
    switched on for another endpoint exports its series; a broken profile changes nothing."""
    from tests.gateway.test_gateway_reload import _rewrite

    profile = reference(tmp_path)
    v1, v2, v3 = procs.upstream(value=0.0), procs.upstream(value=1.0), procs.upstream(value=1.0)
    other = procs.upstream(model="other", value=0.0)
    mon = {"profile": str(profile), "window": 60, "slots": 6, "min_samples": 100}
    cfg = gateway_config(
        tmp_path,
        {
            "fraud": endpoint({"v1": v1, "v2": v2}, {"v1": 50, "v2": 50}, monitoring=mon),
            "other": endpoint({"v1": other}, {"v1": 100}),
        },
    )
    gw = start_gateway(procs, cfg)

    def send(ep: str, n: int) -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(n):
                r = client.post(f"{gw.url}/v2/models/{ep}/infer", json=request(RNG.normal(size=(1, 3))))
                assert r.status_code == 200

    send("fraud", 200)
    pos_v2 = gw.count("mlserve_predictions_total", endpoint="fraud", variant="v2", **{"class": "positive"})
    assert pos_v2 > 50
    with gw.admin() as admin:
        pid = admin.health()["pid"]
        _rewrite(gw, lambda c: c["endpoints"]["fraud"]["versions"].__setitem__("v3", v3))
        _rewrite(gw, lambda c: c["endpoints"]["other"].__setitem__("monitoring", {"window": 60, "slots": 6}))
        admin.reload()
        admin.set_traffic("fraud", {"v1": 0, "v2": 50, "v3": 50})
        send("fraud", 200)
        send("other", 20)
        counted = lambda v: gw.count(  # noqa: E731
            "mlserve_predictions_total", endpoint="fraud", variant=v, **{"class": "positive"}
        )
        assert counted("v2") > pos_v2 and counted("v3") > 50  # v2 kept counting, v3 counted since the reload
        assert gw.count("mlserve_drift_window_samples", endpoint="fraud", variant="v3", kind="input") > 50
        assert gw.count("mlserve_predictions_total", endpoint="other", variant="v1") == 20
        before = counted("v2")
        _rewrite(
            gw, lambda c: c["endpoints"]["fraud"]["monitoring"].__setitem__("profile", str(tmp_path / "nope.json"))
        )
        with pytest.raises(TargetError, match=r"nope\.json"):
            admin.reload()
        send("fraud", 20)
        assert counted("v2") >= before and admin.health()["pid"] == pid  # the old monitors still count
