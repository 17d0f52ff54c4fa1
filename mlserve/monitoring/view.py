"""What ``mlserve monitor ENDPOINT`` shows: one sample of an endpoint, per version, from
Prometheus instant queries over a trailing window: requests/s, p50 and p99 latency, error
ratio, weight, the largest input drift (PSI, and which feature), prediction drift, the share
of positive predictions, and the endpoint's alerts."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlserve.monitoring.prom_api import api_get
from mlserve.monitoring.rules import EndpointRules, _by_variant, _matchers, sli_source

Query = Callable[[str], list[tuple[dict[str, str], float]]]


def prometheus_query(prom_url: str, timeout: float = 5.0) -> Query:
    def run(expr: str) -> list[tuple[dict[str, str], float]]:
        data = api_get(prom_url, "query", {"query": expr}, timeout, hint="is the deployment up? `mlserve status`")
        out = []
        for item in data.get("result", []) if isinstance(data, dict) else []:
            try:
                value = float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            out.append((dict(item.get("metric", {})), value))
        return out

    return run


@dataclass(frozen=True)
class VersionRow:
    version: str
    weight: float | None
    requests_per_second: float | None
    p50_seconds: float | None
    p99_seconds: float | None
    error_ratio: float | None
    input_drift_psi: float | None
    input_drift_feature: str | None
    prediction_drift_psi: float | None
    positive_share: float | None


@dataclass(frozen=True)
class MonitorSample:
    endpoint: str
    at: float
    window_seconds: float
    source: str
    versions: tuple[VersionRow, ...]
    alerts: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    drift_threshold: float | None = None


def _window(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def _by(query: Query, expr: str) -> dict[str, tuple[float, dict[str, str]]]:
    out: dict[str, tuple[float, dict[str, str]]] = {}
    for labels, value in query(expr):
        v = labels.get("variant")
        if v is not None and math.isfinite(value):
            out[v] = (value, labels)
    return out


def sample(
    query: Query,
    endpoint: str,
    versions: list[str],
    *,
    window: float = 60.0,
    source: str = "local",
    namespace: str = "",
    drift_threshold: float | None = None,
    alerts: list[dict[str, Any]] | None = None,
    clock: Callable[[], float] = time.time,
) -> MonitorSample:
    src = sli_source(source)
    r = EndpointRules(endpoint, None, None, namespace=namespace)
    w = _window(window)
    total = _by_variant(src, f"rate({src.requests}{{{_matchers(src, r)}}}[{w}])")
    errors = _by_variant(
        src, f"rate({src.requests}{{{_matchers(src, r, f'{src.error_label}=~{json.dumps(src.error_regex)}')}}}[{w}])"
    )
    scale = f" * {src.le_unit:g}" if src.le_unit != 1.0 else ""
    buckets = f"rate({src.buckets}{{{_matchers(src, r)}}}[{w}])"

    def quantile(q: float) -> str:
        inner = f"sum by (le, {src.endpoint_label}, {src.variant_label}) ({buckets})"
        expr = f"histogram_quantile({q}, {inner}){scale}"
        if src.variant_label != "variant":
            expr = f'label_replace({expr}, "variant", "$1", "{src.variant_label}", "(.*)")'
        return expr

    extra = src.drift_extra.replace("{namespace}", namespace)
    sel = ",".join(m for m in (extra, f'endpoint="{endpoint}"') if m)
    rps = _by(query, total)
    err = _by(query, f"{errors} / {total}")
    p50 = _by(query, quantile(0.5))
    p99 = _by(query, quantile(0.99))
    weights = _by(query, f'mlserve_traffic_weight{{endpoint="{endpoint}"}}') if source == "local" else {}
    top = _by(query, f'topk by (variant) (1, mlserve_drift_psi{{{sel},kind="input"}})')
    pred = _by(query, f'max by (variant) (mlserve_drift_psi{{{sel},kind="prediction"}})')
    share = _by(
        query,
        f'sum by (variant) (rate(mlserve_predictions_total{{{sel},class="positive"}}[{w}]))'
        f" / sum by (variant) (rate(mlserve_predictions_total{{{sel}}}[{w}]))",
    )

    def get(table: dict[str, tuple[float, dict[str, str]]], v: str) -> float | None:
        return table[v][0] if v in table else None

    rows = tuple(
        VersionRow(
            version=v,
            weight=get(weights, v),
            requests_per_second=get(rps, v),
            p50_seconds=get(p50, v),
            p99_seconds=get(p99, v),
            error_ratio=get(err, v),
            input_drift_psi=get(top, v),
            input_drift_feature=top[v][1].get("feature") if v in top else None,
            prediction_drift_psi=get(pred, v),
            positive_share=get(share, v),
        )
        for v in versions
    )
    mine = tuple(a for a in alerts or [] if a.get("endpoint") == endpoint)
    return MonitorSample(endpoint, clock(), window, source, rows, mine, drift_threshold)
