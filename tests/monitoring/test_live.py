"""Monitoring on the real local target: MLServer model servers, the gateway with drift
summaries, a real Prometheus evaluating the rendered rules, `mlserve status`, `mlserve
monitor`, the prediction rollout gate and the dashboard page in headless Chromium.

One deployment for the module (the example project, alert windows compressed 60x with
``alert_speedup``, a 20 s drift window), a bounded background load from a few threads whose
inputs can be switched between rows of the reference distribution and shifted rows. The
measured figures (false alarms, times to fire) are printed and written to
``tests/monitoring/live-figures.json`` when ``MLSERVE_WRITE_FIGURES=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlserve.local.gateway_config import Fault
from mlserve.monitoring.view import prometheus_query
from mlserve.project import load_project
from mlserve.rollout.record import Run
from mlserve.rollout.store import RunDir
from mlserve.scaffold import HOLDOUT_ROWS, SEED, TRAIN_ROWS, VERSIONS, training_data
from mlserve.targets.local import LocalTarget
from tests.conftest import REPO, run_cli
from tests.support.deploy import deployed_project
from tests.support.load import Load
from tests.support.policy import set_policy

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]

LOAD_CAP_SECONDS = 900.0
FIGURES: dict[str, Any] = {}


def _request(row: np.ndarray) -> str:
    return json.dumps(
        {
            "inputs": [
                {"name": "input-0", "shape": [1, 8], "datatype": "FP32", "data": [round(float(v), 5) for v in row]}
            ]
        }
    )


def _twice_as_many_positives(root: Path, rows: np.ndarray) -> float:
    """Replace v2 by v1's model with its intercept moved until it flags twice v1's share of
    ``rows``; same features, same latency, no errors. Returns v1's share."""
    import joblib

    v1 = joblib.load(root / "models/fraud/v1/model.joblib")
    base = float(v1.predict(rows).mean())
    lo, hi = 0.0, 10.0
    model = joblib.load(root / "models/fraud/v1/model.joblib")
    for _ in range(60):
        mid = (lo + hi) / 2
        model.intercept_ = v1.intercept_ + mid
        if float(model.predict(rows).mean()) < 2 * base:
            lo = mid
        else:
            hi = mid
    model.intercept_ = v1.intercept_ + hi
    joblib.dump(model, root / "models/fraud/v2/model.joblib")
    FIGURES["positive_share"] = {"v1": base, "v2_twice": float(model.predict(rows).mean())}
    return base


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, scaffolded: Path) -> Iterator[dict[str, Any]]:
    """The deployed example project; the background load (the shared load threads,
    single-row requests, bounded by this module's cap) sends ``bodies``, swapped by the tests."""
    # init's own draw (the same call gives the same rows; another size shuffles the features
    # differently): the rows between v1's training rows and the holdout, which the profile never saw
    x, _ = training_data(TRAIN_ROWS + HOLDOUT_ROWS, SEED)
    held_out = np.asarray(x)[VERSIONS["v1"][0] : TRAIN_ROWS]
    gate_rows: list[np.ndarray] = []

    def edit(root: Path) -> None:
        import joblib
        import tomlkit

        # the canaries run on traffic richer in positives (v1 flags 1.7% of held-out rows): each
        # arm then sees enough positive predictions within a bounded run
        flagged = joblib.load(root / "models/fraud/v1/model.joblib").predict(held_out).astype(bool)
        rows = np.vstack([held_out[flagged], held_out[~flagged][: 4 * int(flagged.sum())]])
        rows = rows[np.random.default_rng(SEED).permutation(len(rows))]  # no runs of positives
        gate_rows.append(rows)
        _twice_as_many_positives(root, rows)
        v3 = root / "models/fraud/v3"
        v3.mkdir(parents=True)
        shutil.copy(root / "models/fraud/v1/model.joblib", v3 / "model.joblib")  # identical to v1
        doc = tomlkit.parse((root / "mlserve.toml").read_text())
        doc["environments"]["local"]["alert_speedup"] = 60  # type: ignore[index]
        fraud = doc["endpoints"]["fraud"]  # type: ignore[index]
        fraud["versions"]["v3"] = {"model_uri": "models/fraud/v3"}  # type: ignore[index]
        fraud["monitoring"]["window"] = "20s"  # type: ignore[index]
        fraud["monitoring"]["alert_for"] = "10s"  # type: ignore[index]  # (alert_speedup leaves drift alone)
        (root / "mlserve.toml").write_text(tomlkit.dumps(doc))

    load: Load | None = None
    try:
        with deployed_project(tmp_path_factory, scaffolded, "monitor-live", edit) as root:
            target = LocalTarget(load_project(root), "local")
            quiet = [_request(r) for r in held_out]
            shifted_rows = held_out.copy()
            shifted_rows[:, 0] += 1.5 * held_out[:, 0].std()  # one feature moves by 1.5 standard deviations
            load = Load(target.gateway_url(), quiet, cap_seconds=LOAD_CAP_SECONDS)
            try:
                yield {
                    "root": root,
                    "target": target,
                    "load": load,
                    "quiet": quiet,
                    "shifted": [_request(r) for r in shifted_rows],
                    "gate": [_request(r) for r in gate_rows[0]],
                    "query": prometheus_query(target.prometheus_url()),
                }
            finally:
                load.stop()
    finally:
        if os.environ.get("MLSERVE_WRITE_FIGURES") == "1":
            (REPO / "tests/monitoring/live-figures.json").write_text(
                json.dumps(FIGURES, indent=2, sort_keys=True) + "\n"
            )
        print("live figures:", json.dumps(FIGURES, sort_keys=True))


def _value(live: dict[str, Any], expr: str) -> float | None:
    got = live["query"](expr)
    return max(v for _, v in got) if got else None


def _firing(live: dict[str, Any], alert: str, **labels: str) -> list[dict[str, str]]:
    sel = ",".join([f'alertname="{alert}"', 'alertstate="firing"', *(f'{k}="{v}"' for k, v in labels.items())])
    return [lbl for lbl, _ in live["query"](f"ALERTS{{{sel}}}")]


def _wait(cond: Any, timeout: float, step: float = 1.0) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(step)
    return None


def test_unshifted_inputs_stay_quiet_then_shifted_inputs_fire_the_drift_alert(live: dict[str, Any]) -> None:
    psi = 'max(mlserve_drift_psi{endpoint="fraud",variant="v1",kind="input"})'
    assert _wait(lambda: _value(live, psi) is not None, 60), "no drift figures: window below min_samples?"
    # 90 s of rows from the reference distribution: sample the largest PSI every 2 s
    quiet_seconds, values, over = 90.0, [], 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < quiet_seconds:
        v = _value(live, psi)
        if v is not None:
            values.append(v)
            over += v > 0.2
        time.sleep(2.0)
    fired = _value(
        live, f'max_over_time(ALERTS{{alertname="MlserveInputDrift",alertstate="firing"}}[{int(quiet_seconds)}s])'
    )
    samples = _value(live, 'mlserve_drift_window_samples{endpoint="fraud",variant="v1",kind="input"}')
    FIGURES["quiet"] = {
        "seconds": quiet_seconds,
        "psi_samples": len(values),
        "psi_max": max(values),
        "psi_median": float(np.median(values)),
        "samples_above_threshold": over,
        "alerts_fired": 0 if fired is None else int(fired),
        "window_rows": samples,
    }
    assert len(values) >= 30 and over == 0 and fired is None, FIGURES["quiet"]
    # shift one feature by 1.5 sd
    live["load"].bodies = live["shifted"]
    t_shift = time.monotonic()
    above = _wait(lambda: (_value(live, psi) or 0.0) > 0.2, 60, step=0.5)
    firing = _wait(lambda: bool(_firing(live, "MlserveInputDrift", endpoint="fraud", variant="v1")), 90, step=0.5)
    FIGURES["shifted"] = {
        "psi_above_threshold_after_s": None if above is None else round(above, 1),
        "alert_firing_after_s": None if firing is None else round(time.monotonic() - t_shift, 1),
        "psi_at_fire": _value(live, psi),
        "features_firing": sorted(a["feature"] for a in _firing(live, "MlserveInputDrift", endpoint="fraud")),
    }
    assert above is not None and firing is not None, FIGURES["shifted"]
    assert "input-0[0]" in FIGURES["shifted"]["features_firing"]
    res = run_cli("status", cwd=live["root"])
    assert "MlserveInputDrift" in res.stdout, res.stdout
    # and back: the window forgets the shifted rows and the alert resolves
    live["load"].bodies = live["quiet"]
    resolved = _wait(lambda: not _firing(live, "MlserveInputDrift", endpoint="fraud"), 90)
    FIGURES["shifted"]["resolved_after_unshift_s"] = None if resolved is None else round(resolved, 1)
    assert resolved is not None


def test_injected_errors_fire_the_fast_burn_alert_and_status_shows_it(live: dict[str, Any]) -> None:
    target: LocalTarget = live["target"]
    assert not _firing(live, "MlserveErrorBudgetBurn")
    target.set_fault("fraud", "v1", Fault(error_rate=0.5))
    t0 = time.monotonic()
    try:
        fast = _wait(
            lambda: bool(_firing(live, "MlserveErrorBudgetBurn", variant="v1", long_window="1h", severity="page")),
            120,
            step=0.5,
        )
        FIGURES["burn"] = {
            "fault": "error_rate 0.5 on v1",
            "fast_page_after_s": None if fast is None else round(fast, 1),
        }
        assert fast is not None, "the 1h/5m page (compressed to 60s/5s) did not fire"
        res = run_cli("status", cwd=live["root"])
        assert res.exit_code == 0
        assert "Firing alerts" in res.stdout and "MlserveErrorBudgetBurn" in res.stdout, res.stdout
        assert " page " in res.stdout
        js = run_cli("status", "--json", cwd=live["root"]).json["result"]["alerts"]
        burn = [a for a in js if a["name"] == "MlserveErrorBudgetBurn" and a["state"] == "firing"]
        assert {a["labels"]["long_window"] for a in burn} >= {"1h"} and all(a["variant"] == "v1" for a in burn)
        FIGURES["burn"]["tiers_firing"] = sorted(a["labels"]["long_window"] for a in burn)
        FIGURES["burn"]["status_line"] = next(
            line for line in res.stdout.splitlines() if "MlserveErrorBudgetBurn" in line
        ).strip()
    finally:
        target.set_fault("fraud", "v1", Fault())
    reset = _wait(lambda: not _firing(live, "MlserveErrorBudgetBurn", long_window="1h"), 60)
    FIGURES["burn"]["fast_page_reset_after_s"] = None if reset is None else round(reset, 1)
    assert reset is not None and time.monotonic() - t0 < 240


def test_monitor_shows_each_version(live: dict[str, Any]) -> None:
    res = run_cli("monitor", "fraud", "--json", "--window", "30s", cwd=live["root"])
    assert res.exit_code == 0, res.output
    rows = {r["version"]: r for r in res.json["result"]["versions"]}
    assert set(rows) == {"v1", "v2", "v3"}
    v1 = rows["v1"]
    assert v1["weight"] == 100 and v1["requests_per_second"] > 5 and v1["p99_seconds"] > v1["p50_seconds"] > 0
    assert v1["input_drift_psi"] is not None and v1["input_drift_feature"].startswith("input-0[")
    assert 0 < v1["positive_share"] < 0.5
    FIGURES["monitor_v1"] = {k: v1[k] for k in ("requests_per_second", "p50_seconds", "p99_seconds", "input_drift_psi")}
    human = run_cli("monitor", "fraud", "--count", "2", "--interval", "1s", cwd=live["root"])
    assert human.exit_code == 0 and human.stdout.count("fraud at ") == 2 and "req/s" in human.stdout


GATE = [
    {"name": "error_rate", "kind": "error_rate", "margin": 0.01, "critical": True},
    {"name": "latency_p95", "kind": "latency", "quantile": 0.95, "margin": "50%"},
    {"name": "positives", "kind": "prediction", "margin": "50%", "critical": True},
]


def _canary(live: dict[str, Any], candidate: str) -> tuple[int, dict[str, Any], Run]:
    root = live["root"]
    live["load"].bodies = live["gate"]
    set_policy(
        root,
        strategy="canary",
        interval="3s",
        max_duration="3m",
        min_requests=500,
        steps=[50, 100],
        on_inconclusive="rollback",
        metrics=GATE,
    )
    res = run_cli("rollout", "start", "fraud", "--candidate", candidate, cwd=root)
    assert res.exit_code == 0, res.output
    res = run_cli("rollout", "run", "fraud", "--json", cwd=root)
    result = res.json["result"]
    return res.exit_code, result, RunDir(Path(result["run_dir"])).read_state()


def test_a_candidate_flagging_twice_as_often_is_rolled_back_on_the_prediction_gate(live: dict[str, Any]) -> None:
    code, result, state = _canary(live, "v2")
    assert state.decision is not None
    metrics = {m.name: m for m in state.decision.metrics}
    pos = metrics["positives"]
    FIGURES["gate_twice"] = {
        "exit_code": code,
        "status": result["status"],
        "looks": sum(len(s.looks) for s in state.steps),
        "positives": {k: getattr(pos, k) for k in ("baseline", "candidate", "estimate", "p_value_holm")},
        "error_rate": metrics["error_rate"].verdict,
        "latency_p95": metrics["latency_p95"].verdict,
    }
    assert code == 3, result
    assert pos.verdict == "fail"
    assert metrics["error_rate"].verdict != "fail" and metrics["latency_p95"].verdict != "fail"
    assert pos.estimate is not None and pos.estimate > 0.5  # about +100%
    assert 'baseline = "v1"' in (live["root"] / "mlserve.toml").read_text()


def test_an_identical_candidate_is_not_rolled_back(live: dict[str, Any]) -> None:
    code, result, state = _canary(live, "v3")
    assert state.decision is not None
    pos = next(m for m in state.decision.metrics if m.name == "positives")
    FIGURES["gate_identical"] = {
        "exit_code": code,
        "status": result["status"],
        "looks": sum(len(s.looks) for s in state.steps),
        "positives": {k: getattr(pos, k) for k in ("baseline", "candidate", "estimate", "verdict")},
    }
    assert code == 0 and result["status"] == "promoted", result
    assert pos.verdict == "pass"


def test_dashboard_page_renders_every_panel_with_data_in_chromium(live: dict[str, Any], tmp_path: Path) -> None:
    import re

    import matplotlib.image

    from mlserve.monitoring import dashboard_server as ds
    from mlserve.monitoring.rules import endpoint_rules_from_manifest

    project = load_project(live["root"])
    rules = [endpoint_rules_from_manifest("fraud", project.manifest.endpoints["fraud"])]
    server = ds.start(0, live["target"].prometheus_url(), ds.boards_for(rules), "mlserve / acme-ml (local)", 900)
    try:
        dom = ""
        for _ in range(3):  # the first paint may race the first refresh on a busy machine
            dom = browse_url(server.url, tmp_path, "--dump-dom", "--virtual-time-budget=15000")
            loaded = re.search(r'data-loaded="(\d+)"', dom)
            if loaded and int(loaded.group(1)) == 9:
                break
        points = [int(p or 0) for p in re.findall(r'class="panel"[^>]*data-points="(\d*)"', dom)]
        titles = re.findall(r"<figcaption>([^<]+)</figcaption>", dom)
        FIGURES["dashboard"] = {"panels": len(points), "points_per_panel": dict(zip(titles, points, strict=False))}
        assert len(points) == 9 and min(points) > 0, FIGURES["dashboard"]
        shot = tmp_path / "dashboard.png"
        browse_url(
            server.url, tmp_path, f"--screenshot={shot}", "--window-size=1280,1900", "--virtual-time-budget=15000"
        )
        pixels = matplotlib.image.imread(shot)
        assert pixels.shape[0] >= 1800 and float(pixels[..., :3].std()) > 0.05
        if os.environ.get("MLSERVE_UPDATE_SCREENSHOTS") == "1":
            shutil.copy(shot, REPO / "docs/img/dashboard.png")
    finally:
        server.shutdown()
        server.server_close()


def browse_url(url: str, tmp: Path, *extra: str) -> str:
    from mlserve.tools import run
    from tests.report.test_report_in_browser import CHROMIUM_FLAGS, chromium

    flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--virtual-time-budget")]
    return run([chromium(), *flags, f"--user-data-dir={tmp / 'profile'}", *extra, url], timeout=120).stdout


def test_a_changed_rule_is_loaded_by_a_deploy_without_restarting_prometheus(live: dict[str, Any]) -> None:
    """Last in the module: a new drift threshold reaches the running Prometheus through a
    deploy that reloads it in place (same pid), and its rules say the new threshold."""
    import tomlkit

    from mlserve.monitoring.prom_api import api_get
    from tests.support.nodrop import pid

    root: Path = live["root"]
    before = pid(root, "prometheus")
    path = root / "mlserve.toml"
    doc = tomlkit.parse(path.read_text())
    doc["endpoints"]["fraud"]["monitoring"]["psi_threshold"] = 0.35  # type: ignore[index]
    path.write_text(tomlkit.dumps(doc))
    res = run_cli("deploy", "--env", "local", cwd=root)
    assert res.exit_code == 0, res.output

    def drift_exprs() -> list[str]:
        groups = api_get(live["target"].prometheus_url(), "rules")["groups"]
        return [r["query"] for g in groups for r in g["rules"] if r.get("name") == "MlserveInputDrift"]

    loaded = _wait(lambda: any("> 0.35" in e for e in drift_exprs()), 30)
    FIGURES["rules_reload"] = {"loaded_after_s": None if loaded is None else round(loaded, 1)}
    assert loaded is not None, drift_exprs()
    assert pid(root, "prometheus") == before
