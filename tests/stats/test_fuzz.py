"""Hostile snapshots: the reader answers with exit 0/2/3/4, never a traceback."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.stats.test_cli import example
from tests.support.fuzz import tree_paths

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["+Inf", "v1", "v2", "mlserve.snapshot/v1", "", "\x00"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


@st.composite
def mutated_snapshots(draw: st.DrawFn) -> Any:
    """A valid snapshot with a few nodes replaced, deleted or numerically nudged."""
    data = example()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in tree_paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = data
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "nudge"]))
        if action == "delete":
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif action == "nudge" and isinstance(parent[key], int | float) and not isinstance(parent[key], bool):
            parent[key] = parent[key] + draw(st.sampled_from([-1, 1, -1000, 10**6, 0.5]))
        else:
            parent[key] = draw(json_values)
    return data


def _encode(data: Any) -> str:
    return json.dumps(data, allow_nan=True)


def _exit_code_in_process(text: str) -> int:
    """What `mlserve analyze --replay` would exit with, without the CLI's start-up cost:
    any exception other than an MlserveError (exit 2 for snapshots) fails the test."""
    from mlserve.errors import MlserveError
    from mlserve.manifest.analysis import analysis_spec
    from mlserve.manifest.models import RolloutPolicy
    from mlserve.stats.engine import analyze
    from mlserve.stats.snapshot import loads_snapshot

    try:
        snap = loads_snapshot(text, "snap.json")
    except MlserveError as err:
        assert "snap.json" in err.message
        return err.exit_code
    verdict = analyze(snap, analysis_spec(RolloutPolicy()))
    json.dumps(verdict.to_dict(), allow_nan=False)  # the JSON output must be valid JSON
    return verdict.exit_code


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated_snapshots(), json_values))
def test_snapshot_reader_never_crashes(data: Any) -> None:
    assert _exit_code_in_process(_encode(data)) in (0, 2, 3, 4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated_snapshots(), json_values))
def test_snapshot_reader_never_crashes_through_the_cli(data: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snap.json"
        path.write_text(_encode(data), encoding="utf-8", errors="surrogatepass")
        r = run_cli("analyze", "--replay", str(path), "--json")
    assert r.exit_code in (0, 2, 3, 4), r.output
    assert "Traceback" not in r.output
    envelope = json.loads(r.stdout)
    if r.exit_code == 2:
        assert envelope["ok"] is False
        assert "snap.json" in envelope["error"]["message"]
    else:
        result = envelope["result"]
        assert result["verdict"] in ("promote", "rollback", "halt", "continue")
        for m in result["metrics"]:
            for key in ("estimate", "p_value"):
                assert m[key] is None or math.isfinite(m[key])
