"""promtool unit tests for the rules of :mod:`mlserve.monitoring.rules` (the test files that
``tests/monitoring/test_rules.py`` runs).

For each endpoint and metrics source, synthetic counter series (one version at a steady
request rate) are fed to ``promtool test rules`` and the alerts expected at given times are
spelled out, label by label:

- errors (or slow requests) at 20 times the budget fire every tier, both pages and tickets;
- at 2 times the budget only the slowest ticket tier (1x over 3 days) fires;
- at half the budget nothing fires;
- after a burst stops, the fast page (1h/5m) resets within its short window while the
  6h/30m page still fires (the point of the second window);
- drift above the threshold fires only after ``for``; below it, never.

Times and windows are divided by the same ``speedup`` as the rules, so the compressed rules
a demo or test deploys are checked exactly like the shipped ones.
"""

from __future__ import annotations

import math
from typing import Any

from mlserve.monitoring.rules import (
    LATENCY_BUDGET,
    TIERS,
    EndpointRules,
    latency_bound,
    le_value,
    prom_duration,
    rule_groups,
    sli_source,
    window_name,
)

VARIANT = "v2"
RATE_PER_MIN = 6000  # requests per (nominal) minute of the synthetic version


def _series(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def _expand(template: str, labels: dict[str, str]) -> str:
    out = template
    for key, value in labels.items():
        out = out.replace(f"{{{{ $labels.{key} }}}}", value)
    return out


class _Builder:
    def __init__(self, r: EndpointRules, source: str, speedup: int) -> None:
        self.r = r
        self.src = sli_source(source)
        self.speedup = speedup
        self.groups = rule_groups(r, source, speedup)
        self.alerts = {
            (rule["alert"], rule["labels"].get("long_window"), rule["labels"].get("drift")): rule
            for g in self.groups
            for rule in g["rules"]
            if "alert" in rule
        }

    def t(self, nominal_seconds: float) -> str:
        return prom_duration(nominal_seconds / self.speedup)

    @property
    def interval(self) -> str:
        return self.t(60.0)

    def version_labels(self) -> dict[str, str]:
        src, r = self.src, self.r
        labels: dict[str, str] = {}
        if src.name == "istio":
            labels = {"reporter": "destination", "destination_workload_namespace": r.namespace}
        elif src.name == "seldon":
            labels = {"namespace": r.namespace}
        labels[src.endpoint_label] = r.endpoint
        labels[src.variant_label] = VARIANT
        return labels

    def counters(self, slo: str, bad_per_min: list[tuple[int, int]]) -> list[dict[str, str]]:
        """Input series: ``bad_per_min`` is [(minutes, bad requests per minute)] in order."""
        base = self.version_labels()
        good_vals, bad_vals = _piecewise([(m, RATE_PER_MIN - b) for m, b in bad_per_min]), _piecewise(bad_per_min)
        if slo == "availability":
            name, label = self.src.requests, self.src.error_label
            return [
                {"series": _series(name, {**base, label: "200"}), "values": good_vals},
                {"series": _series(name, {**base, label: "500"}), "values": bad_vals},
            ]
        bound, _ = latency_bound(self.r.latency_objective or 0.0, self.src.bounds)
        le = _le_text(bound, self.src.le_unit)
        all_vals = _piecewise([(m, RATE_PER_MIN) for m, _ in bad_per_min])
        return [
            {"series": _series(self.src.buckets, {**base, "le": le}), "values": good_vals},
            {"series": _series(self.src.buckets, {**base, "le": "+Inf"}), "values": all_vals},
        ]

    def expected(self, alert: str, long_windows: list[str]) -> list[dict[str, Any]]:
        out = []
        for lw in long_windows:
            rule = self.alerts[(alert, lw, None)]
            labels = {"endpoint": self.r.endpoint, "variant": VARIANT, **dict(self.r.labels), **rule["labels"]}
            out.append(
                {
                    "exp_labels": labels,
                    "exp_annotations": {k: _expand(v, labels) for k, v in rule["annotations"].items()},
                }
            )
        return out

    def slo_tests(self, slo: str, budget: float, alert: str) -> list[dict[str, Any]]:
        longs = [window_name(long) for _, _, long, _ in TIERS]
        hot = round(20 * budget * RATE_PER_MIN)
        warm = round(2 * budget * RATE_PER_MIN)
        cool = round(0.5 * budget * RATE_PER_MIN)
        tests = [
            {
                "name": f"{self.r.endpoint} {slo}: 20x the budget fires every tier",
                "interval": self.interval,
                "input_series": self.counters(slo, [(60, hot)]),
                "alert_rule_test": [
                    {"eval_time": self.t(40 * 60), "alertname": alert, "exp_alerts": self.expected(alert, longs)},
                ],
            },
            {
                "name": f"{self.r.endpoint} {slo}: 2x the budget opens only the 3-day ticket",
                "interval": self.interval,
                "input_series": self.counters(slo, [(8 * 60, warm)]),
                "alert_rule_test": [
                    {"eval_time": self.t(7 * 3600), "alertname": alert, "exp_alerts": self.expected(alert, ["3d"])},
                ],
            },
            {
                "name": f"{self.r.endpoint} {slo}: half the budget stays quiet",
                "interval": self.interval,
                "input_series": self.counters(slo, [(8 * 60, cool)]),
                "alert_rule_test": [
                    {"eval_time": self.t(t), "alertname": alert, "exp_alerts": []} for t in (600, 3600, 7 * 3600)
                ],
            },
            {
                "name": f"{self.r.endpoint} {slo}: the fast page resets soon after a burst, the 6h page does not",
                "interval": self.interval,
                "input_series": self.counters(slo, [(60, hot), (30, 0)]),
                "alert_rule_test": [
                    {
                        "eval_time": self.t(60 * 60 + 15 * 60),
                        "alertname": alert,
                        "exp_alerts": self.expected(alert, longs[1:]),
                    },
                ],
            },
        ]
        return tests

    def drift_tests(self) -> list[dict[str, Any]]:
        r = self.r
        tests = []
        for kind, alert, feature in (
            ("input", "MlserveInputDrift", "x0"),
            ("prediction", "MlservePredictionDrift", "predict"),
        ):
            rule = self.alerts[(alert, None, kind)]
            labels = {"endpoint": r.endpoint, "variant": VARIANT, "feature": feature, "kind": kind}
            if self.src.drift_extra:
                labels = {"namespace": r.namespace, **labels}
            series = _series("mlserve_drift_psi", labels)
            # rules are evaluated every 5 (compressed) minutes; drift's `for` is not compressed
            step, spacing = 300.0 / self.speedup, 60.0 / self.speedup
            fire_at = (math.ceil(r.drift_for / step) + 1) * step
            samples = math.ceil((fire_at + step) / spacing)
            high, low = r.psi_threshold * 1.5 + 0.01, r.psi_threshold * 0.5
            exp_labels = {**labels, **rule["labels"]}
            before = prom_duration(max(0.5 * r.drift_for, 1.0))
            minutes = samples
            tests.append(
                {
                    "name": f"{r.endpoint} {kind} drift: fires only after {prom_duration(r.drift_for)} above the threshold",
                    "interval": self.interval,
                    "input_series": [{"series": series, "values": f"{_num(high)}x{minutes}"}],
                    "alert_rule_test": [
                        {"eval_time": before, "alertname": alert, "exp_alerts": []},
                        {
                            "eval_time": prom_duration(fire_at),
                            "alertname": alert,
                            "exp_alerts": [
                                {
                                    "exp_labels": exp_labels,
                                    "exp_annotations": {
                                        k: _expand(v, exp_labels) for k, v in rule["annotations"].items()
                                    },
                                }
                            ],
                        },
                    ],
                }
            )
            tests.append(
                {
                    "name": f"{r.endpoint} {kind} drift: below the threshold stays quiet",
                    "interval": self.interval,
                    "input_series": [{"series": series, "values": f"{_num(low)}x{minutes}"}],
                    "alert_rule_test": [{"eval_time": prom_duration(fire_at), "alertname": alert, "exp_alerts": []}],
                }
            )
        return tests


def _num(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


def _le_text(bound: float, unit: float) -> str:
    text = f"{bound / unit:.9f}".rstrip("0").rstrip(".")
    assert le_value(bound, unit)  # the rules' regex accepts this spelling (checked by promtool itself)
    return text


def _piecewise(parts: list[tuple[int, int]]) -> str:
    """promtool's expanding notation for a counter rising by ``per_min`` each interval, piece by
    piece: [(60, 120), (30, 0)] -> '0+120x60 7200+0x30'."""
    out = []
    value = 0
    first = True
    for minutes, per_min in parts:
        if first:
            out.append(f"{value}+{per_min}x{minutes}")
            first = False
        else:
            out.append(f"{value + per_min}+{per_min}x{minutes - 1}")
        value += per_min * minutes
    return " ".join(out)


def promtool_tests(r: EndpointRules, source: str, rules_file: str, speedup: int = 1) -> dict[str, Any]:
    """A promtool test file (as a dict) for one endpoint's rules in ``rules_file``."""
    b = _Builder(r, source, speedup)
    tests: list[dict[str, Any]] = []
    if r.error_budget:
        tests += b.slo_tests("availability", r.error_budget, "MlserveErrorBudgetBurn")
    if r.latency_objective:
        tests += b.slo_tests("latency", LATENCY_BUDGET, "MlserveLatencyBudgetBurn")
    if r.drift:
        tests += b.drift_tests()
    # rules are evaluated every 5 (nominal) minutes: enough for windows of 5m and more and
    # for `for` clauses, and 5x fewer evaluations than every minute
    return {"rule_files": [rules_file], "evaluation_interval": b.t(300.0), "tests": tests}
