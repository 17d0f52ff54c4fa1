"""`mlserve analyze --replay` and `--plan` through the CLI, in-process."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlserve.stats.simulate import Scenario, simulate
from tests.conftest import REPO, run_cli

LE = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, "+Inf"]


def example() -> dict[str, Any]:
    """The snapshot from the issue, with a second look (a fresh copy every time)."""
    return json.loads(json.dumps(_EXAMPLE))  # no shared lists between variants


_EXAMPLE: dict[str, Any] = {
    "format": "mlserve.snapshot/v1",
    "endpoint": "fraud",
    "baseline": "v1",
    "candidate": "v2",
    "strategy": "canary",
    "looks": [
        {
            "at": "2026-11-23T10:01:00Z",
            "weights": {"v1": 90, "v2": 10},
            "variants": {
                "v1": {
                    "requests": 5400,
                    "errors": 6,
                    "latency_seconds": {
                        "le": LE,
                        "counts": [120, 2100, 4300, 5100, 5300, 5390, 5398, 5400, 5400, 5400, 5400, 5400],
                        "sum": 48.1,
                    },
                    "custom": {"conversions": {"numerator": 310, "denominator": 5400}},
                },
                "v2": {
                    "requests": 600,
                    "errors": 1,
                    "latency_seconds": {
                        "le": LE,
                        "counts": [10, 230, 480, 566, 590, 599, 600, 600, 600, 600, 600, 600],
                        "sum": 5.3,
                    },
                },
            },
        },
        {
            "at": "2026-11-23T10:02:00Z",
            "weights": {"v1": 90, "v2": 10},
            "variants": {
                "v1": {
                    "requests": 10800,
                    "errors": 12,
                    "latency_seconds": {
                        "le": LE,
                        "counts": [240, 4200, 8600, 10200, 10600, 10780, 10796, 10800, 10800, 10800, 10800, 10800],
                        "sum": 96.2,
                    },
                },
                "v2": {
                    "requests": 1200,
                    "errors": 2,
                    "latency_seconds": {
                        "le": LE,
                        "counts": [20, 460, 960, 1132, 1180, 1198, 1200, 1200, 1200, 1200, 1200, 1200],
                        "sum": 10.6,
                    },
                },
            },
        },
    ],
}


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def sim_file(path: Path, seed: int, **kw: Any) -> Path:
    simulate(Scenario(**kw), np.random.default_rng(seed), name=str(path)).write(path)
    return path


RESULT_KEYS = {"snapshot", "verdict", "decided_at_look", "reason", "srm", "metrics"}
METRIC_KEYS = {"name", "verdict", "estimate", "ci", "p_value"}


def test_one_snapshot_continue_exit_4(tmp_path: Path) -> None:
    r = run_cli("analyze", "--replay", str(write(tmp_path / "s.json", example())), "--json", cwd=tmp_path)
    assert r.exit_code == 4, r.output
    res = r.json["result"]
    assert set(res) >= RESULT_KEYS
    assert res["verdict"] == "continue" and res["decided_at_look"] is None
    assert {"p_value", "ok"} <= set(res["srm"])
    assert [m["name"] for m in res["metrics"]] == ["error_rate", "latency_p99"]
    for m in res["metrics"]:
        assert set(m) >= METRIC_KEYS
    assert res["policy"] == "built-in defaults"


def test_rollback_exit_3_and_promote_exit_0(tmp_path: Path) -> None:
    bad = sim_file(tmp_path / "bad.json", 1, error_ratio=3.0, rps=50)
    r = run_cli("analyze", "--replay", str(bad), cwd=tmp_path)
    assert r.exit_code == 3, r.output
    assert "ROLLBACK" in r.stdout and "error_rate" in r.stdout
    good = sim_file(
        tmp_path / "good.json", 2, rps=200, weights=(50.0,), buckets=tuple(0.005 * 1.05**i for i in range(150))
    )
    r = run_cli("analyze", "--replay", str(good), "--json", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert r.json["result"]["verdict"] == "promote"
    assert isinstance(r.json["result"]["decided_at_look"], int)


def test_halt_is_exit_4_with_a_plain_reason(tmp_path: Path) -> None:
    broken = sim_file(tmp_path / "broken.json", 3, misroute=0.05)
    r = run_cli("analyze", "--replay", str(broken), cwd=tmp_path)
    assert r.exit_code == 4
    assert "HALT" in r.stdout and "traffic split" in r.stdout


def test_final_applies_on_inconclusive(tmp_path: Path) -> None:
    snap = write(tmp_path / "s.json", example())
    policy = tmp_path / "p.toml"
    policy.write_text('on_inconclusive = "rollback"\n', encoding="utf-8")
    r = run_cli("analyze", "--replay", str(snap), "--policy", str(policy), "--final", "--json", cwd=tmp_path)
    assert r.exit_code == 3
    assert r.json["result"]["decided_at_look"] == 2
    assert r.json["result"]["policy"].startswith("--policy")


def test_directory_gives_a_list_in_sorted_order(tmp_path: Path) -> None:
    d = tmp_path / "snaps"
    d.mkdir()
    sim_file(d / "b.json", 4, looks=5)
    sim_file(d / "a.json", 5, looks=5, error_ratio=5.0, rps=100)
    (d / "notes.txt").write_text("not a snapshot")
    r = run_cli("analyze", "--replay", str(d), "--json", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    res = r.json["result"]
    assert [Path(x["snapshot"]).name for x in res] == ["a.json", "b.json"]
    assert all(set(x) >= RESULT_KEYS for x in res)
    r = run_cli("analyze", "--replay", str(d), cwd=tmp_path)
    assert r.exit_code == 0 and "2 snapshots" in r.stdout


def test_several_files_keep_their_order_and_a_bad_one_gives_exit_2(tmp_path: Path) -> None:
    one = sim_file(tmp_path / "1.json", 6, looks=3)
    bad = write(tmp_path / "0.json", {"format": "nope"})
    r = run_cli("analyze", "--replay", str(one), str(bad), "--json", cwd=tmp_path)
    assert r.exit_code == 2
    res = r.json["result"]
    assert [Path(x["snapshot"]).name for x in res] == ["1.json", "0.json"]
    assert res[1]["verdict"] is None and "format" in res[1]["reason"]


def test_project_endpoint_policy_is_used(tmp_path: Path, scaffolded: Path) -> None:
    snap = write(tmp_path / "s.json", example())
    r = run_cli("-C", str(scaffolded), "analyze", "--replay", str(snap), "--json")
    assert r.exit_code == 4, r.output
    assert "endpoints.fraud.rollout" in r.json["result"]["policy"]


def test_usage_errors(tmp_path: Path) -> None:
    assert run_cli("analyze", cwd=tmp_path).exit_code == 2
    assert run_cli("analyze", "--replay", cwd=tmp_path).exit_code == 2
    r = run_cli("analyze", "--replay", str(tmp_path / "missing.json"), cwd=tmp_path)
    assert r.exit_code == 2 and "not found" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("analyze", "--replay", str(empty), cwd=tmp_path).exit_code == 2


def _mutate(path: str, value: Any) -> dict[str, Any]:
    data = example()
    node: Any = data
    keys = path.split("/")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


_DELETE = object()
L2 = "looks/1"

INVALID = [
    ("format", "mlserve.snapshot/v2", "format"),
    ("looks", [], "looks"),
    (f"{L2}/variants/v2/errors", 1, "looks[2].variants.v2.errors: decreased from 1 to 1"),
    (f"{L2}/variants/v1/errors", 5, "looks[2].variants.v1.errors: decreased from 6 to 5 (counts are cumulative)"),
    (f"{L2}/variants/v1/requests", 5000, "looks[2].variants.v1.requests: decreased"),
    (f"{L2}/variants/v2", _DELETE, "looks[2].variants.v2: variant is missing"),
    (f"{L2}/weights/v2", _DELETE, "looks[2].weights.v2"),
    (
        f"{L2}/variants/v2/latency_seconds/counts/3",
        100,
        "looks[2].variants.v2.latency_seconds.counts[4]: buckets are not cumulative (100 after 960)",
    ),
    (
        f"{L2}/variants/v2/requests",
        1300,
        'looks[2].variants.v2.latency_seconds.counts: the "+Inf" bucket (1200) must equal requests (1300)',
    ),
    (
        f"{L2}/variants/v2/latency_seconds/le",
        [0.1, "+Inf"],
        "looks[2].variants.v2.latency_seconds.counts: has 12 entries",
    ),
    (
        f"{L2}/variants/v2/latency_seconds/le/11",
        20.0,
        'looks[2].variants.v2.latency_seconds.le: the last bound must be "+Inf"',
    ),
    (f"{L2}/variants/v2/errors", 5000, "looks[2].variants.v2.errors: is larger than requests"),
    (f"{L2}/variants/v2/requests", -1, "looks[2].variants.v2.requests: must not be negative"),
    (f"{L2}/variants/v2/requests", 1.5, "looks[2].variants.v2.requests: must be a non-negative integer"),
    (f"{L2}/variants/v2/requests", True, "looks[2].variants.v2.requests: must be a non-negative integer"),
    (f"{L2}/variants/v2/requests", "1200", "looks[2].variants.v2.requests: must be a non-negative integer"),
    (f"{L2}/variants/v2/requests", 10**30, "looks[2].variants.v2.requests: is implausibly large"),
    (f"{L2}/weights/v2", -5, "looks[2].weights.v2: must not be negative"),
    (f"{L2}/variants", [], "looks[2].variants: must be an object"),
    ("candidate", "v1", "candidate: must differ from baseline"),
    ("looks/0/variants/v1/custom/conversions/numerator", "x", "looks[1].variants.v1.custom.conversions.numerator"),
    (f"{L2}/extra", 1, "looks[2]: unknown field"),
]


@pytest.mark.parametrize(("path", "value", "message"), INVALID, ids=[f"{i}-{c[0]}" for i, c in enumerate(INVALID)])
def test_invalid_snapshot_is_exit_2_naming_look_and_field(tmp_path: Path, path: str, value: Any, message: str) -> None:
    data = _mutate(path, value)
    snap = write(tmp_path / "snap.json", data)
    r = run_cli("analyze", "--replay", str(snap), cwd=tmp_path)
    if path.endswith("v2/errors") and value == 1:
        # an unchanged count is fine (cumulative counts may stay flat)
        assert r.exit_code == 4
        return
    assert r.exit_code == 2, r.output
    assert "snap.json" in r.stderr
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.output


@pytest.mark.parametrize(
    "text",
    ['{"format": "mlserve.snapshot/v1", "looks": [NaN]}', "[" * 100_000, '{"a": 1', "\xff\xfe", "12e999999"],
    ids=["nan", "deep", "truncated", "binary", "huge-float"],
)
def test_hostile_json_is_exit_2(tmp_path: Path, text: str) -> None:
    p = tmp_path / "snap.json"
    p.write_bytes(text.encode("latin-1"))
    r = run_cli("analyze", "--replay", str(p), cwd=tmp_path)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output


def test_huge_integer_literal_is_exit_2(tmp_path: Path) -> None:
    data = json.dumps(example()).replace('"requests": 600', '"requests": ' + "9" * 5000, 1)
    p = tmp_path / "snap.json"
    p.write_text(data)
    r = run_cli("analyze", "--replay", str(p), cwd=tmp_path)
    assert r.exit_code == 2 and "internal error" not in r.output


def test_round_trip_through_to_dict(tmp_path: Path) -> None:
    from mlserve.stats.snapshot import parse_snapshot, read_snapshot

    snap = read_snapshot(write(tmp_path / "s.json", example()))
    again = parse_snapshot(json.loads(json.dumps(snap.to_dict())), "again")
    assert again.to_dict() == snap.to_dict()
    out = tmp_path / "out" / "s.json"
    snap.write(out)
    assert read_snapshot(out).looks == snap.looks


def test_plan_prints_requests_and_time_per_step(tmp_path: Path) -> None:
    r = run_cli("analyze", "--plan", "--rps", "50", "--error-rate", "0.01", "--steps", "10,50", "--json", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    res = r.json["result"]
    assert [s["weight"] for s in res["steps"]] == [10.0, 50.0]
    err10 = res["steps"][0]["metrics"][0]
    err50 = res["steps"][1]["metrics"][0]
    assert err10["metric"] == "error_rate" and err10["total_requests"] > 0
    # a bigger canary share catches the same regression with fewer total requests
    assert err50["total_requests"] < err10["total_requests"]
    assert err10["seconds"] == pytest.approx(err10["total_requests"] / 50, rel=0.01)
    human = run_cli("analyze", "--plan", "--rps", "50", "--steps", "10", cwd=tmp_path)
    assert human.exit_code == 0 and "time to catch" in human.stdout


def test_plan_from_a_snapshot_and_bad_options(tmp_path: Path) -> None:
    snap = write(tmp_path / "s.json", example())
    r = run_cli("analyze", "--plan", "--snapshot", str(snap), "--steps", "10", "--json", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert r.json["result"]["rps"] == pytest.approx(6000 / 60)
    assert r.json["result"]["baseline_error_rate"] == pytest.approx(12 / 10800)
    assert run_cli("analyze", "--plan", cwd=tmp_path).exit_code == 2
    assert run_cli("analyze", "--plan", "--rps", "10", "--regression", "0.5x", cwd=tmp_path).exit_code == 2
    assert run_cli("analyze", "--plan", "--rps", "10", "--steps", "150", cwd=tmp_path).exit_code == 2
    assert run_cli("analyze", "--plan", "--replay", "x.json", cwd=tmp_path).exit_code == 2


def test_help_does_not_import_numpy_or_scipy() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from mlserve.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help']); main(['analyze', '--help'])\n"
        "print(sorted(m for m in ('numpy', 'scipy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_snapshot_mutation_helper_does_not_touch_the_example() -> None:
    before = copy.deepcopy(example())
    _mutate("looks/1/variants/v2/errors", 3)
    assert example() == before


def test_parallel_replay_matches_sequential_and_keeps_order(tmp_path: Path) -> None:
    from mlserve.manifest.analysis import Policies
    from mlserve.stats.replay import MIN_PARALLEL, replay_files

    paths = []
    for i in range(MIN_PARALLEL + 6):
        paths.append(sim_file(tmp_path / f"{i:03d}.json", 500 + i, looks=4, error_ratio=1.0 + (i % 3)))
    bad = write(tmp_path / "bad.json", {"format": "mlserve.snapshot/v1"})
    paths.insert(10, bad)
    policies = Policies(tmp_path, None)
    one = replay_files(paths, policies.spec_for, workers=1)
    two = replay_files(paths, policies.spec_for, workers=2)
    assert one == two
    assert [r["snapshot"] for r in two] == [str(p) for p in paths]
    assert two[10]["verdict"] is None and "baseline" in two[10]["reason"]


def test_plan_counts_the_control_s_traffic() -> None:
    """Against a control the compared requests are the candidate's and the control's, half
    each: at 50% that is the primary-free two-arm split; at 10% only a fifth of the traffic."""
    from mlserve.manifest.analysis import analysis_spec
    from mlserve.manifest.models import RolloutPolicy
    from mlserve.stats.power import plan

    spec = analysis_spec(RolloutPolicy())
    kw = {"rps": 100.0, "error_rate": 0.01}
    ctl = plan(spec, steps=[10, 50], control=True, **kw)
    pri = plan(spec, steps=[10, 50], control=False, **kw)
    e_ctl10, e_ctl50 = ctl.steps[0].metrics[0], ctl.steps[1].metrics[0]
    e_pri50 = pri.steps[1].metrics[0]
    assert e_ctl50.total_requests == e_pri50.total_requests  # 50/50 against either is the same split
    # at 10% the candidate and the control take 20% of the traffic, half of it the candidate's
    assert e_ctl10.candidate_requests == pytest.approx(e_ctl10.total_requests * 0.1, rel=0.01)
    assert e_ctl10.total_requests > pri.steps[0].metrics[0].total_requests
    assert any("control" in a for a in ctl.assumptions) and not any("control" in a for a in pri.assumptions)
