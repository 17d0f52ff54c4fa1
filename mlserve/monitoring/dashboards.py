"""Dashboards per endpoint: one panel model, rendered as Grafana dashboard JSON (a ConfigMap
for kube-prometheus-stack's Grafana sidecar) and served live by ``mlserve dashboard``.

Panels (each a PromQL query per version, labelled ``variant`` whatever the platform):
traffic (requests/s), weights, latency quantiles, error ratio, SLO burn rate for availability
and latency (from the recording rules of :mod:`mlserve.monitoring.rules`), and with
monitoring on, input drift (PSI per feature), prediction drift and the share of positive
predictions. Rollout steps are annotations: on the local target every change of the
gateway's ``mlserve_traffic_weight``; on Kubernetes every move of the observed split between
versions by 5 points or more (Istio reports no configured weights).

The Grafana JSON follows the dashboard model of Grafana 10/11 (``schemaVersion`` 39):
``panels[]`` of type ``timeseries`` with ``gridPos``, ``targets[].expr``/``legendFormat``/
``refId`` and a ``datasource`` template variable, ``annotations.list[]`` of Prometheus
queries. The tests check its structure against a JSON schema written from Grafana's
documented model (``tests/monitoring/grafana_schema.py``) and parse every query with promtool.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mlserve.monitoring.rules import (
    LATENCY_BUDGET,
    TIERS,
    EndpointRules,
    SliSource,
    _by_variant,
    _matchers,
    sli_source,
)

RATE = "{rate}"  # the rate window: $__rate_interval in Grafana, a fixed window on the local page


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    id: int
    key: str
    title: str
    unit: str  # Grafana unit id: reqps, percent, percentunit, s, short
    targets: tuple[Target, ...]
    description: str = ""
    threshold: float | None = None  # a line drawn at this value (an alert's threshold)

    def queries(self, rate: str) -> list[Target]:
        return [Target(t.expr.replace(RATE, rate), t.legend) for t in self.targets]


def _req(src: SliSource, r: EndpointRules, *more: str) -> str:
    return f"{src.requests}{{{_matchers(src, r, *more)}}}"


def panels(r: EndpointRules, source: str) -> list[Panel]:
    """The panels of one endpoint for a metrics source (local, istio, seldon)."""
    src = sli_source(source)
    rate = RATE
    total = _by_variant(src, f"rate({_req(src, r)}[{rate}])")
    errors = _by_variant(src, f"rate({_req(src, r, f'{src.error_label}=~{json.dumps(src.error_regex)}')}[{rate}])")
    bucket_sel = _matchers(src, r)
    scale = f" * {src.le_unit:g}" if src.le_unit != 1.0 else ""
    out = [
        Panel(1, "traffic", "Requests per second by version", "reqps", (Target(total, "{{variant}}"),)),
    ]
    if source == "local":
        weights = Target(f'mlserve_traffic_weight{{endpoint="{r.endpoint}"}}', "{{variant}}")
    else:
        weights = Target(f"100 * {total} / scalar(sum({total}))", "{{variant}} (observed)")
    out.append(Panel(2, "weights", "Traffic weight by version (%)", "percent", (weights,)))
    quantiles = []
    for q in (0.5, 0.95, 0.99):
        inner = f"sum by (le, {src.endpoint_label}, {src.variant_label}) (rate({src.buckets}{{{bucket_sel}}}[{rate}]))"
        quantiles.append(
            Target(_relabel(src, f"histogram_quantile({q:g}, {inner}){scale}"), f"p{q * 100:g} {{{{variant}}}}")
        )
    out.append(Panel(3, "latency", "Latency quantiles by version", "s", tuple(quantiles)))
    out.append(
        Panel(4, "errors", "Error ratio by version", "percentunit", (Target(f"{errors}\n/\n{total}", "{{variant}}"),))
    )
    pid = 5
    # recorded series carry endpoint (and on a cluster the namespace); the fast page's factor
    rec = "{" + ",".join(f'{k}="{v}"' for k, v in {"endpoint": r.endpoint, **dict(r.labels)}.items()) + "}"
    _sev, spent, long, _short = TIERS[0]
    fast = round(spent * r.period / long, 6)
    burns = [
        ("burn_errors", "availability", "mlserve:slo_errors", r.error_budget, "errors over the budget"),
        ("burn_latency", "latency", "mlserve:slo_slow_requests", LATENCY_BUDGET if r.latency_objective else None,
         "share of requests slower than the objective over the 1% budget"),
    ]  # fmt: skip
    for key, slo, prefix, budget, what in burns:
        if not budget:
            continue
        burn = tuple(
            Target(f"{prefix}:ratio_rate{w}{rec} / {budget:g}", f"{{{{variant}}}} {w}") for w in ("5m", "1h", "6h")
        )
        note = (
            f"{what.capitalize()}: 1 spends the budget exactly over the SLO period; the fast page fires above {fast:g}"
        )
        out.append(Panel(pid, key, f"Error budget burn rate ({slo})", "short", burn, note, fast))
        pid += 1
    if r.drift:
        extra = src.drift_extra.replace("{namespace}", r.namespace)
        sel = ",".join(m for m in (extra, f'endpoint="{r.endpoint}"') if m)
        for key, kind, title, legend in (
            ("drift_inputs", "input", "Input drift by feature (PSI)", "{{variant}} {{feature}}"),
            ("drift_prediction", "prediction", "Prediction drift (PSI)", "{{variant}}"),
        ):
            psi = Target(f'mlserve_drift_psi{{{sel},kind="{kind}"}}', legend)
            note = f"Population stability index of the {kind}s against the reference"
            out.append(Panel(pid, key, title, "short", (psi,), note, r.psi_threshold))
            pid += 1
        preds = f'mlserve_predictions_total{{{sel},class="positive"}}'
        every = f"mlserve_predictions_total{{{sel}}}"
        share = f"sum by (variant) (rate({preds}[{rate}]))\n/\nsum by (variant) (rate({every}[{rate}]))"
        title = "Share of positive predictions by version"
        out.append(Panel(pid, "positives", title, "percentunit", (Target(share, "{{variant}}"),)))
        pid += 1
    return out


def _relabel(src: SliSource, expr: str) -> str:
    if src.endpoint_label == "endpoint" and src.variant_label == "variant":
        return expr
    return f'label_replace({expr}, "variant", "$1", "{src.variant_label}", "(.*)")'


def annotation_expr(r: EndpointRules, source: str) -> str:
    """When the traffic split moved: a rollout step (or a promotion, a rollback)."""
    if source == "local":
        return f'changes(mlserve_traffic_weight{{endpoint="{r.endpoint}"}}[1m]) > 0'
    src = sli_source(source)
    total = _by_variant(src, f"rate({_req(src, r)}[5m])")
    return f"changes((round(100 * {total} / scalar(sum({total})), 5))[10m:1m]) > 0"


def dashboard_uid(project: str, env: str, endpoint: str) -> str:
    """Stable and at most 40 characters (Grafana's limit)."""
    digest = hashlib.sha256(f"{project}/{env}/{endpoint}".encode()).hexdigest()[:10]
    return f"mlserve-{endpoint[:20]}-{digest}"


def grafana_dashboard(project: str, env: str, r: EndpointRules, source: str) -> dict[str, Any]:
    ds = {"type": "prometheus", "uid": "${datasource}"}
    items = []
    for i, p in enumerate(panels(r, source)):
        defaults: dict[str, Any] = {"unit": p.unit, "custom": {"lineWidth": 1, "fillOpacity": 10}}
        if p.threshold is not None:
            defaults["thresholds"] = {
                "mode": "absolute",
                "steps": [{"color": "green", "value": None}, {"color": "red", "value": p.threshold}],
            }
            defaults["custom"]["thresholdsStyle"] = {"mode": "line"}
        items.append(
            {
                "id": p.id,
                "type": "timeseries",
                "title": p.title,
                "description": p.description,
                "datasource": ds,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "options": {
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"},
                },
                "targets": [
                    {"datasource": ds, "expr": t.expr, "legendFormat": t.legend, "refId": chr(ord("A") + k)}
                    for k, t in enumerate(p.queries("$__rate_interval"))
                ],
            }
        )
    return {
        "uid": dashboard_uid(project, env, r.endpoint),
        "title": f"mlserve / {r.endpoint} ({env})",
        "description": f"Traffic, latency, errors, SLO burn and drift of endpoint {r.endpoint}, per version.",
        "tags": ["mlserve", project, env],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "Rollout steps",
                    "datasource": ds,
                    "enable": True,
                    "iconColor": "orange",
                    "expr": annotation_expr(r, source),
                    "step": "1m",
                    "titleFormat": "traffic split changed",
                    "textFormat": "{{variant}}",
                }
            ]
        },
        "panels": items,
    }
