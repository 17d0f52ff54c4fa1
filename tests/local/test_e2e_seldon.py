"""The seldon runtime: a Seldon Core v1 class in an isolated venv, behind the V2 adapter.

Slow: the first run creates the seldon-core environment with pip (a minute or more).
MLSERVE_SELDON_VENV points it at one folder for the whole session.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from mlserve.local.state import pid_alive
from tests.conftest import run_cli
from tests.local.netcheck import is_loopback, listening_addresses

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

SCORER = '''
import numpy as np


class Scorer:
    """A Seldon Core v1 Python model: the sum of each row, times a factor."""

    def __init__(self, factor=1.0):
        self.factor = float(factor)

    def predict(self, X, features_names=None):
        return np.asarray(X, dtype=float).sum(axis=1, keepdims=True) * self.factor
'''

MANIFEST = """
[project]
name = "seldon-proj"

[environments.dev]
target = "local"
scrape_interval = "1s"

[endpoints.score]
runtime = "seldon"
baseline = "v1"

[endpoints.score.versions.v1]
model_uri = "models/score"
model_class = "Scorer.Scorer"

[endpoints.score.versions.v2]
model_uri = "models/score"
model_class = "Scorer.Scorer"
args = ["--parameters", '[{"name": "factor", "value": "2", "type": "FLOAT"}]']
"""


def test_seldon_class_served_through_the_gateway(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSERVE_SELDON_VENV", str(tmp_path_factory.getbasetemp() / "seldon-venv"))
    root = tmp_path / "proj"
    (root / "models/score").mkdir(parents=True)
    (root / "models/score/Scorer.py").write_text(SCORER)
    (root / "mlserve.toml").write_text(MANIFEST)
    try:
        res = run_cli("deploy", cwd=root)
        assert res.exit_code == 0, res.output
        desired = json.loads((root / ".mlserve/local/desired.json").read_text())
        state = json.loads((root / ".mlserve/local/state.json").read_text())
        gw = desired["gateway_url"]
        body = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}
        r = httpx.post(f"{gw}/v2/models/score/infer", json=body, trust_env=False, timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers["x-mlserve-variant"] == "v1"
        out = r.json()["outputs"][0]
        assert out["shape"] == [2, 1] and out["data"] == [6.0, 15.0]
        r = httpx.post(f"{gw}/v2/models/score/versions/v2/infer", json=body, trust_env=False, timeout=10)
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [12.0, 30.0]
        # seldon-core's own servers bind 0.0.0.0; mlserve keeps them on loopback.
        groups = {rec["pid"] for rec in state["processes"].values()}
        addrs = [a for v in listening_addresses(groups).values() for a in v]
        assert addrs and [a for a in addrs if not is_loopback(a)] == []
        # seldon-core never enters mlserve's own environment.
        import importlib.util

        assert importlib.util.find_spec("seldon_core") is None
        pids = [(rec["pid"], rec["start_time"]) for rec in state["processes"].values()]
    finally:
        res = run_cli("down", cwd=root)
    assert res.exit_code == 0
    assert all(not pid_alive(p, s) for p, s in pids)
    assert not any(os.path.exists(f"/proc/{p}") and pid_alive(p) for p, _ in pids)
