"""`mlserve profile`: reference profiles from CSV and JSONL files, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlserve.monitoring.profile import Profile, ProfileError, build_profile, load_profile
from tests.conftest import run_cli


def _csv(path: Path, rows: int = 500) -> Path:
    rng = np.random.default_rng(3)
    lines = ["amount,country,label,score"]
    for _ in range(rows):
        lines.append(f"{rng.lognormal(3, 1):.3f},{rng.integers(0, 3)},{rng.integers(0, 2)},{rng.random():.4f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_profile_with_a_prediction_column(tmp_path: Path) -> None:
    data = _csv(tmp_path / "train.csv")
    out = tmp_path / "profiles" / "fraud.json"
    res = run_cli("profile", str(data), "-o", str(out), "--prediction-column", "score", "--ignore", "label")
    assert res.exit_code == 0, res.output
    assert "profile of 500 rows" in res.stdout and "categorical" in res.stdout
    prof = load_profile(out)
    assert [f.name for f in prof.features] == ["amount", "country"]
    amount, country = prof.features
    assert amount.size == 10 and sum(amount.counts) == 500 and max(amount.counts) - min(amount.counts) <= 1
    assert country.categorical and country.centres == (0.0, 1.0, 2.0)
    assert prof.prediction is not None and prof.prediction.name == "score" and sum(prof.prediction.counts) == 500
    text = out.read_text()
    assert "lognormal" not in text and len(json.loads(text)["features"]) == 2  # summaries only


def test_jsonl_of_v2_requests_as_the_gateway_sees_them(tmp_path: Path) -> None:
    data = tmp_path / "requests.jsonl"
    rows = [[float(i), float(i % 7), 1.5] for i in range(300)]
    lines = []
    for i in range(0, 300, 3):  # batches of 3 rows
        flat = [v for r in rows[i : i + 3] for v in r]
        lines.append(json.dumps({"inputs": [{"name": "x", "shape": [3, 3], "datatype": "FP32", "data": flat}]}))
    data.write_text("\n".join(lines) + "\n\n")
    prof = build_profile(data)
    assert prof.rows == 300 and [f.name for f in prof.features] == ["x[0]", "x[1]", "x[2]"]
    assert prof.features[1].categorical and prof.features[2].size == 1  # a constant feature: one bin
    named = build_profile(data, feature_names=["amount", "hour", "one"])
    assert [f.name for f in named.features] == ["amount", "hour", "one"]


def test_profile_round_trips_through_its_validation(tmp_path: Path) -> None:
    prof = build_profile(_csv(tmp_path / "t.csv"))
    assert Profile.from_dict(json.loads(json.dumps(prof.to_dict()))) == prof


@pytest.mark.parametrize(
    ("content", "suffix", "args", "message"),
    [
        ("a,b\n1,2\n3\n", ".csv", {}, "t.csv:3: 1 fields, the header has 2"),
        ("a,b\n1,x\n", ".csv", {}, "t.csv:2: column 'b': not a number ('x')"),
        ("a,b\n1,2\n", ".csv", {"prediction_column": "p"}, "no column 'p'"),
        ('{"a": 1}\n{"b": 2}\n', ".jsonl", {}, "t.jsonl:2: features ['b'] differ"),
        ('{"a": 1}\nnot json\n', ".jsonl", {}, "t.jsonl:2: not valid JSON"),
        ('{"a": "x"}\n', ".jsonl", {}, "t.jsonl:1: key 'a': not a number"),
        ("", ".jsonl", {}, "no records"),
        ("a\n1\n", ".txt", {}, "unknown file type"),
        ("a,b\n1,2\n", ".csv", {"feature_names": ["x"]}, "gives 1 names for 2 features"),
        ("a,b\n1,2\n", ".csv", {"bins": 1}, "--bins must be between 2"),
    ],
)
def test_bad_reference_files_are_named_with_the_line(
    tmp_path: Path, content: str, suffix: str, args: dict[str, object], message: str
) -> None:
    path = tmp_path / f"t{suffix}"
    path.write_text(content)
    with pytest.raises(ProfileError) as err:
        build_profile(path, **args)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_cli_errors_exit_2_without_a_traceback(tmp_path: Path) -> None:
    res = run_cli("profile", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "p.json"))
    assert res.exit_code == 2 and "missing.csv: no such file" in res.stderr and "Traceback" not in res.output
    res = run_cli("--json", "profile", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "p.json"))
    assert res.json["error"]["type"] == "usage"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"format": "x"}, "format must be 'mlserve.profile/v1'"),
        ({"features": []}, "features must be a non-empty list"),
        (
            {
                "features": [
                    {"name": "a", "edges": [2, 1], "centres": [0, 1, 2], "counts": [1, 1, 1], "mean": 0, "std": 1}
                ]
            },
            "features[0].edges: must be strictly increasing",
        ),
        (
            {"features": [{"name": "a", "edges": [1], "centres": [0, 1], "counts": [1], "mean": 0, "std": 1}]},
            "features[0].counts: must be 2 non-negative integers",
        ),
    ],
)
def test_invalid_profiles_name_the_key(tmp_path: Path, patch: dict[str, object], message: str) -> None:
    good = build_profile(_csv(tmp_path / "t.csv")).to_dict()
    path = tmp_path / "p.json"
    path.write_text(json.dumps({**good, **patch}))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert message in str(err.value) and str(path) in str(err.value)
