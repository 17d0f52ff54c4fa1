"""The comparison's analysis and gate on made-up scored rows (no server): classification with
probabilities, regression with a numeric tolerance, and each gate both ways."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlserve.batch.compare import CompareOptions, _analyse, _Merged, parse_min_delta
from mlserve.batch.core import BatchOptions, BatchSummary
from mlserve.errors import UsageError


def _summary(version: str) -> BatchSummary:
    return BatchSummary(
        endpoint="e", version=version, env="local", url="u", engine="local", input="in", output="out",
        errors_file=None, rows=1000, scored=1000, failed=0, chunks=1, chunks_resumed=0, requests=1, retries=0,
        seconds=1.0, scan_seconds=0.1, rows_per_second=1000.0,
        latency_ms={"p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 3.0, "mean": 1.0},
        engine_start_seconds=None, job_id="j", outputs=[],
    )  # fmt: skip


def _opts(**kw: object) -> CompareOptions:
    base: dict[str, object] = {"batch": BatchOptions(endpoint="e"), "baseline": "v1", "candidate": "v2"}
    base.update(kw)
    return CompareOptions(**base)  # type: ignore[arg-type]


def _classified(n: int = 1000, seed: int = 4) -> _Merged:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    m = _Merged()
    for i in range(n):
        p1 = float(np.clip(0.5 + (y[i] - 0.5) * 0.5 + rng.normal(0, 0.25), 0.01, 0.99))
        p2 = float(np.clip(p1 + (y[i] - 0.5) * 0.2 + rng.normal(0, 0.05), 0.01, 0.99))
        m.rows.append(i + 1)
        m.base.append(
            {"id": f"r{i}", "row": i + 1, "label": str(y[i]), "predict": int(p1 > 0.5), "predict_proba": [1 - p1, p1]}
        )
        m.cand.append(
            {"id": f"r{i}", "row": i + 1, "label": str(y[i]), "predict": int(p2 > 0.5), "predict_proba": [1 - p2, p2]}
        )
    return m


def test_classifier_metrics_and_a_gate_that_passes_and_one_that_fails(tmp_path: Path) -> None:
    m = _classified()
    summaries = {"v1": _summary("v1"), "v2": _summary("v2")}
    good = _analyse(
        _opts(labels="label", max_disagreement=0.5, min_delta={"accuracy": -0.05, "log_loss": -0.5}),
        m,
        summaries,
        tmp_path,
        "local",
    )
    assert good.task == "classification" and good.passed and good.exit_code == 0
    metrics = {x["metric"]: x for x in good.metrics}
    assert set(metrics) == {"accuracy", "log_loss", "auc", "rmse"} and "unavailable" in metrics["rmse"]
    assert metrics["auc"]["candidate"] > metrics["auc"]["baseline"]  # v2 separates the classes better
    assert metrics["log_loss"]["improvement"]["estimate"] == pytest.approx(
        -metrics["log_loss"]["difference"]["estimate"]
    )
    a = good.agreement
    assert a["agree"] + a["disagree"] == 1000 and a["interval"]["low"] <= a["agreement"] <= a["interval"]["high"]
    assert all(d["v1"] != d["v2"] for d in good.disagreements) and len(good.disagreements) == min(20, a["disagree"])

    strict = _analyse(
        _opts(labels="label", max_disagreement=0.0, min_delta={"auc": 0.5}), m, summaries, tmp_path, "local"
    )
    gate = {g.name: g for g in strict.gate}
    assert not gate["disagreement"].passed and not gate["min_delta:auc"].passed
    assert strict.exit_code == 3


def test_regression_agreement_uses_the_tolerance_and_rmse_gates(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    m = _Merged()
    for i in range(500):
        y = float(rng.normal())
        a = y + float(rng.normal(0, 0.3))
        b = a if i % 10 else a + 0.01  # 10% of the rows differ by 0.01
        m.rows.append(i + 1)
        m.base.append({"row": i + 1, "target": y, "predict": a})
        m.cand.append({"row": i + 1, "target": y, "predict": b})
    summaries = {"v1": _summary("v1"), "v2": _summary("v2")}
    tight = _analyse(_opts(labels="target", atol=0.001, max_disagreement=0.05), m, summaries, tmp_path, "local")
    assert tight.task == "regression" and tight.agreement["disagree"] == 50 and not tight.passed
    loose = _analyse(
        _opts(labels="target", atol=0.02, max_disagreement=0.05, min_delta={"rmse": -0.01}),
        m,
        summaries,
        tmp_path,
        "local",
    )
    assert loose.agreement["disagree"] == 0 and loose.passed, [g.detail for g in loose.gate]
    no_auc = _analyse(_opts(labels="target", min_delta={"auc": 0.0}), m, summaries, tmp_path, "local")
    (check,) = no_auc.gate
    assert not check.passed and "cannot be computed" in check.detail  # no evidence is never a pass


def test_min_delta_parsing() -> None:
    assert parse_min_delta(["accuracy=-0.01", "rmse=0"]) == {"accuracy": -0.01, "rmse": 0.0}
    for bad in ("accuracy", "f1=0.1", "auc=high", "auc=nan"):
        with pytest.raises(UsageError):
            parse_min_delta([bad])


def test_the_terminal_and_the_reports_write_numbers_in_the_shared_formats(tmp_path: Path) -> None:
    """mlserve/format.py's ways: fixed decimals for metrics, signed differences and their
    interval, two-digit p-values, latencies as ``2ms``, the gate's exit code from the result."""
    import io
    import json
    import re

    from rich.console import Console

    from mlserve import format as fmt
    from mlserve.batch.report import metric_rows, write_reports
    from mlserve.cli.commands.compare import show

    m = _classified()
    summaries = {"v1": _summary("v1"), "v2": _summary("v2")}
    strict = _analyse(
        _opts(labels="label", max_disagreement=0.0, min_delta={"auc": 0.5}), m, summaries, tmp_path, "local"
    )
    files = write_reports(strict, tmp_path)
    r = json.loads(Path(files["json"]).read_text())
    acc = next(x for x in r["metrics"] if x["metric"] == "accuracy")
    d = acc["difference"]
    row = next(x for x in metric_rows(r) if x[0] == "accuracy")
    assert row[1] == f"{acc['baseline']:.4f}" and re.fullmatch(r"[+-]\d\.\d{4}", row[3])
    assert row[4] == f"[{d['low']:+.4f}, {d['high']:+.4f}]" and row[5] == fmt.p_value(acc["p_value"])
    page = Path(files["html"]).read_text()
    assert "<td>1ms</td><td>2ms</td><td>3ms</td>" in page and "intervals at 95%" in page
    junit = Path(files["junit"]).read_text()
    assert "its lower bound must be &gt;= +0.5000" in junit
    out = io.StringIO()
    show(Console(file=out, width=200, no_color=True), r)
    text = out.getvalue()
    assert f"agreement {r['agreement']['agreement'] * 100:.3f}%" in text and "gate failed (exit 3)" in text
    assert "1ms" in text and "1,000 rows compared" in text
