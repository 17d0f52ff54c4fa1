"""One way to write numbers: the CLI, the reports and the decision reasons share it."""

from __future__ import annotations

import math

import pytest

from mlserve import format as fmt


@pytest.mark.parametrize(
    ("x", "unit", "text"),
    [(0.0969, "s", "96.9ms"), (0.025, "s", "25ms"), (0.0435, "errors/request", "4.35%"), (0.9042, "", "0.9042"),
     (0.2012, "positives/prediction", "20.1%"),
     (None, "s", "-"), (math.nan, "", "-"), (math.inf, "s", "-")],
)  # fmt: skip
def test_values(x: float | None, unit: str, text: str) -> None:
    assert fmt.value(x, unit) == text


@pytest.mark.parametrize(
    ("x", "text"),
    [(2.88, "+288%"), (-0.1272, "-12.7%"), (0.0, "+0%"), (10.7831, "+1,078%"), (-1.0, "-100%"),
     (math.inf, "+inf"), (-math.inf, "-inf"), (None, "-")],
)  # fmt: skip
def test_changes(x: float | None, text: str) -> None:
    assert fmt.change(x) == text


def test_p_values_intervals_shares_and_weights() -> None:
    assert [fmt.p_value(p) for p in (0.0036, 9.7e-135, 1.0, None)] == ["0.0036", "9.7e-135", "1", "-"]
    assert fmt.interval([-0.3624, 0.7333]) == "[-36.2%, +73.3%]"
    assert fmt.interval([-1.0, None]) == "[-100%, +inf]"
    assert fmt.interval([None, None]) == "-" and fmt.interval(None) == "-"
    assert fmt.interval([0.8904, 0.9164], "agreement") == "[0.8904, 0.9164]"
    assert fmt.share(0.99312) == "99.31%" and fmt.percent(0.2) == "20%"
    assert fmt.weights({"v1": 80, "v2": 20}) == "v1 80%, v2 20%"


def test_the_engine_reason_and_the_report_agree_on_a_value() -> None:
    """The decision reason and the report table format the same value the same way."""
    from mlserve.report.build import _metric_row
    from mlserve.stats.engine import MetricResult

    m = MetricResult("latency_p99", "latency", "fail", 2.88, (1.0, None), 1e-5, 1e-5, 1.0, 0.025, 0.0969, "s",
                     "25%", False, "lower")  # fmt: skip
    row = _metric_row(m)
    assert row[2] == "25ms -> 96.9ms" and row[3] == "+288%" and row[4] == "[+100%, +inf]" and row[6] == "1e-05"


def test_counts_rates_fixed_decimals_and_differences() -> None:
    """What batch summaries and offline comparisons print."""
    assert [fmt.count(n) for n in (100_000, 0, None, True)] == ["100,000", "0", "-", "-"]
    assert [fmt.rate(x) for x in (26604.4, 0.4, math.nan)] == ["26,604", "0", "-"]
    assert fmt.fixed(0.90551) == "0.9055" and fmt.fixed(3.84, 1) == "3.8" and fmt.fixed(None) == "-"
    assert fmt.fixed(0.006, sign=True) == "+0.0060" and fmt.fixed(-0.0073, sign=True) == "-0.0073"
    assert fmt.interval([0.00094, 0.01127], "difference") == "[+0.0009, +0.0113]"
    assert fmt.interval([-math.inf, None], "difference") == "[-inf, +inf]"
    assert fmt.share(0.987, 3) == "98.700%" and fmt.share(0.95, 0) == "95%"
