"""Prometheus alerting rules per endpoint: multi-window, multi-burn-rate SLO alerts for
errors and latency, and drift alerts.

The SLO alerts follow the Google SRE workbook (chapter 5, "Alerting on SLOs"): an alert fires
when the error budget burns fast over a long window *and* is still burning over a short
one (a twelfth of it), so it fires quickly on a real outage and resets quickly after it.
The budget is the endpoint's ``slo.error_rate`` (or ``1 - slo.availability``) for errors, and
1% of requests slower than ``slo.p99_latency`` for latency. With the budget counted over
``slo.period`` (30 days by default), a tier that pages when ``share`` of the whole budget is
spent within ``long`` has burn-rate threshold ``share * period / long``:

====== ========== =========== ============== ========
tier   long       short       budget spent   30 days
====== ========== =========== ============== ========
page   1h         5m          2%             14.4x
page   6h         30m         5%             6x
ticket 1d         2h          10%            3x
ticket 3d         6h          10%            1x
====== ========== =========== ============== ========

Rates are per endpoint *and version*: a canary that fails burns its own budget and is named
in the alert. The same rules are rendered for the local target (``mlserve_*`` metrics of the
gateway) and for Kubernetes (Istio's or the Seldon executor's metrics), with label
replacement so every recorded series carries ``endpoint`` and ``variant``. An environment's
``alert_speedup`` divides every SLO window by a factor, for demos and tests of the local target
(drift alerts keep the manifest's own ``monitoring.window`` and ``alert_for``); shipped rules
use 1.

Drift alerts fire when a feature's population stability index (``mlserve_drift_psi``,
exported only once the window holds ``min_samples`` rows) stays above ``psi_threshold`` for
``alert_for``: one alert per feature for the inputs, one for the prediction.

Every expression is built from DNS-1123 names (manifest-validated) and numbers, so nothing a
user writes can change a rule's structure; the rules are emitted with ``yaml.safe_dump``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlserve.metrics.queries import GATEWAY_LATENCY_BUCKETS, QUERY_SETS
from mlserve.stats.drift import PSI_SIGNIFICANT

# (severity, share of the budget, long window, short window) in seconds
TIERS: tuple[tuple[str, float, float, float], ...] = (
    ("page", 0.02, 3600.0, 300.0),
    ("page", 0.05, 6 * 3600.0, 1800.0),
    ("ticket", 0.10, 86400.0, 7200.0),
    ("ticket", 0.10, 3 * 86400.0, 6 * 3600.0),
)
LATENCY_BUDGET = 0.01  # p99: one request in a hundred may be slower than the objective

# Bucket bounds (seconds) of each source's latency histogram: the latency SLI counts requests
# above a bound, so the objective is measured at the largest bound not above it.
ISTIO_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000)
GO_DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class SliSource:
    """Where one platform's request metrics live and how their labels name an endpoint and version."""

    name: str
    requests: str
    error_label: str
    error_regex: str
    buckets: str
    le_unit: float  # seconds per unit of ``le``
    bounds: tuple[float, ...]  # in seconds
    endpoint_label: str
    variant_label: str
    extra: str = ""  # further matchers, with {namespace}
    drift_extra: str = ""  # matchers of the drift series (the collector's), with {namespace}


def sli_source(name: str) -> SliSource:
    qs = QUERY_SETS[name]
    if name == "local":
        return SliSource(
            "local",
            qs.requests,
            qs.error_label,
            qs.error_regex,
            qs.buckets,
            1.0,
            GATEWAY_LATENCY_BUCKETS,
            "endpoint",
            "variant",
        )
    if name == "istio":
        return SliSource(
            "istio",
            qs.requests,
            qs.error_label,
            qs.error_regex,
            qs.buckets,
            0.001,
            tuple(b / 1000.0 for b in ISTIO_BUCKETS_MS),
            "destination_canonical_service",
            "destination_canonical_revision",
            extra='reporter="destination",destination_workload_namespace="{namespace}"',
            drift_extra='namespace="{namespace}"',
        )
    if name == "seldon":
        return SliSource(
            "seldon",
            qs.requests,
            qs.error_label,
            qs.error_regex,
            qs.buckets,
            1.0,
            GO_DEFAULT_BUCKETS,
            "deployment_name",
            "predictor_name",
            extra='namespace="{namespace}"',
            drift_extra='namespace="{namespace}"',
        )
    raise ValueError(f"no SLO rules for the {name!r} metrics source")


def prom_duration(seconds: float) -> str:
    """The shortest exact Prometheus duration: 3600 -> '1h', 90 -> '90s', 0.5 -> '500ms'."""
    ms = max(1, round(seconds * 1000))
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def window_name(seconds: float) -> str:
    """A window's name in recorded series, the nominal (uncompressed) one: 'rate1h'."""
    return prom_duration(seconds)


def le_value(bound_s: float, unit: float) -> str:
    """An ``le`` matcher value: regex matching how exporters print the bound (0.25, 0.250, 250.0)."""
    v = bound_s / unit
    text = f"{v:.9f}".rstrip("0").rstrip(".")
    return text.replace(".", "\\\\.") + ("(\\\\.0+)?" if "." not in text else "0*")


def latency_bound(objective: float, bounds: tuple[float, ...]) -> tuple[float, str]:
    """(bucket bound, note): the largest bound at or below the objective, so no breach is missed."""
    finite = sorted(b for b in bounds if math.isfinite(b))
    at_or_below = [b for b in finite if b <= objective * (1 + 1e-9)]
    if at_or_below:
        b = at_or_below[-1]
        if abs(b - objective) <= objective * 1e-9:
            return b, ""
        return b, f"measured at the {b:g}s bucket bound, the largest not above the {objective:g}s objective"
    b = finite[0]
    return b, f"the objective {objective:g}s is below every bucket; measured at the smallest bound, {b:g}s"


@dataclass(frozen=True)
class EndpointRules:
    """What the rules of one endpoint are made from (taken from the manifest)."""

    endpoint: str
    error_budget: float | None
    latency_objective: float | None  # seconds (p99)
    period: float = 30 * 86400.0
    drift: bool = False
    psi_threshold: float = PSI_SIGNIFICANT
    drift_for: float = 120.0
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


def endpoint_rules_from_manifest(
    name: str, ep: Any, namespace: str = "", labels: Mapping[str, str] | None = None
) -> EndpointRules:
    mon = ep.monitoring
    return EndpointRules(
        endpoint=name,
        error_budget=ep.slo.error_budget,
        latency_objective=ep.slo.p99_latency,
        period=ep.slo.period,
        drift=mon is not None,
        psi_threshold=mon.psi_threshold if mon else PSI_SIGNIFICANT,
        drift_for=mon.alert_for if mon else 120.0,
        namespace=namespace,
        labels=dict(labels or {}),
    )


def _matchers(src: SliSource, r: EndpointRules, *more: str) -> str:
    parts = [src.extra.replace("{namespace}", r.namespace)] if src.extra else []
    parts.append(f'{src.endpoint_label}="{r.endpoint}"')
    parts.extend(m for m in more if m)
    return ",".join(parts)


def _by_variant(src: SliSource, expr: str) -> str:
    """Sum to one series per version, labelled endpoint and variant whatever the source."""
    inner = f"sum by ({src.endpoint_label}, {src.variant_label}) ({expr})"
    if src.endpoint_label == "endpoint" and src.variant_label == "variant":
        return inner
    relabelled = (
        f'label_replace(label_replace({inner}, "endpoint", "$1", "{src.endpoint_label}", "(.*)"), '
        f'"variant", "$1", "{src.variant_label}", "(.*)")'
    )
    return f"sum by (endpoint, variant) ({relabelled})"


def error_ratio_expr(src: SliSource, r: EndpointRules, window: str) -> str:
    errors = _matchers(src, r, f'{src.error_label}=~"{src.error_regex}"')
    total = _matchers(src, r)
    return (
        f"{_by_variant(src, f'rate({src.requests}{{{errors}}}[{window}])')}\n"
        f"/\n{_by_variant(src, f'rate({src.requests}{{{total}}}[{window}])')}"
    )


def slow_ratio_expr(src: SliSource, r: EndpointRules, window: str, bound: float) -> str:
    fast = _matchers(src, r, f'le=~"{le_value(bound, src.le_unit)}"')
    everything = _matchers(src, r, 'le="+Inf"')
    return (
        f"1 - (\n{_by_variant(src, f'rate({src.buckets}{{{fast}}}[{window}])')}\n"
        f"/\n{_by_variant(src, f'rate({src.buckets}{{{everything}}}[{window}])')}\n)"
    )


def windows() -> list[float]:
    return sorted({w for _, _, long, short in TIERS for w in (long, short)})


def rule_groups(r: EndpointRules, source: str, speedup: int = 1) -> list[dict[str, Any]]:
    """The rule groups of one endpoint (empty when it has neither an SLO nor monitoring)."""
    src = sli_source(source)
    groups: list[dict[str, Any]] = []
    slo_rules: list[dict[str, Any]] = []
    common = dict(r.labels)
    compressed = f" (windows compressed {speedup}x for a demo or test)" if speedup > 1 else ""
    sli: list[tuple[str, str, float, str, str]] = []  # (slo, record prefix, budget, note, alert)
    if r.error_budget is not None and r.error_budget > 0:
        sli.append(("availability", "mlserve:slo_errors", r.error_budget, "", "MlserveErrorBudgetBurn"))
    bound = None
    if r.latency_objective is not None and r.latency_objective > 0:
        bound, note = latency_bound(r.latency_objective, src.bounds)
        sli.append(("latency", "mlserve:slo_slow_requests", LATENCY_BUDGET, note, "MlserveLatencyBudgetBurn"))
    for slo, prefix, _budget, _note, _alert in sli:
        for w in windows():
            actual = prom_duration(w / speedup)
            expr = (
                error_ratio_expr(src, r, actual)
                if slo == "availability"
                else slow_ratio_expr(src, r, actual, bound or 0.0)
            )
            rule: dict[str, Any] = {"record": f"{prefix}:ratio_rate{window_name(w)}", "expr": expr}
            if common:
                rule["labels"] = dict(common)
            slo_rules.append(rule)
    for slo, prefix, budget, note, alert in sli:
        what = "errors" if slo == "availability" else f"requests slower than {_objective_text(r)}"
        for severity, share, long, short in TIERS:
            factor = share * r.period / long
            threshold = factor * budget
            lw, sw = window_name(long), window_name(short)
            sel = "{" + ",".join(f'{k}="{v}"' for k, v in {"endpoint": r.endpoint, **common}.items()) + "}"
            expr = (
                f"{prefix}:ratio_rate{lw}{sel} > {_num(threshold)}\n"
                f"and\n{prefix}:ratio_rate{sw}{sel} > {_num(threshold)}"
            )
            slo_rules.append(
                {
                    "alert": alert,
                    "expr": expr,
                    "labels": {
                        "severity": severity,
                        "slo": slo,
                        "long_window": lw,
                        "short_window": sw,
                        "burn_rate": _num(factor),
                        **common,
                    },
                    "annotations": {
                        "summary": f"{r.endpoint}/{{{{ $labels.variant }}}} burns its {slo} error budget "
                        f"over {_num(factor)}x too fast ({lw} and {sw} windows)",
                        "description": (
                            f"{what.capitalize()} are above {_num(threshold * 100)}% of requests over both the last "
                            f"{lw} and the last {sw}, against a budget of {_num(budget * 100)}%: at this rate "
                            f"{_num(share * 100)}% of the {prom_duration(r.period)} budget is spent within {lw}"
                            f"{compressed}. `mlserve monitor {r.endpoint}` shows it per version."
                            + (f" Latency {note}." if note else "")
                        ),
                    },
                }
            )
    if slo_rules:
        # every 30 s (compressed with the windows): a tenth of the shortest window, and no 3-day
        # range is read every scrape
        interval = prom_duration(max(1.0, 30.0 / speedup))
        groups.append({"name": f"mlserve-slo-{r.endpoint}", "interval": interval, "rules": slo_rules})
    if r.drift:
        extra = src.drift_extra.replace("{namespace}", r.namespace)
        base = ",".join(m for m in (extra, f'endpoint="{r.endpoint}"') if m)
        drift_rules = []
        for kind, alert in (("input", "MlserveInputDrift"), ("prediction", "MlservePredictionDrift")):
            drift_rules.append(
                {
                    "alert": alert,
                    "expr": f'mlserve_drift_psi{{{base},kind="{kind}"}} > {_num(r.psi_threshold)}',
                    # drift has its own window and `for` in the manifest: alert_speedup leaves them alone
                    "for": prom_duration(max(r.drift_for, 1.0)),
                    "labels": {"severity": "ticket", "drift": kind, **common},  # feature, variant from the series
                    "annotations": {
                        "summary": f"{r.endpoint}/{{{{ $labels.variant }}}}: {kind} drift on {{{{ $labels.feature }}}}",
                        "description": (
                            f"The population stability index of {{{{ $labels.feature }}}} has stayed above "
                            f"{_num(r.psi_threshold)} for {prom_duration(r.drift_for)} over the drift window, "
                            f"against the endpoint's reference. `mlserve monitor {r.endpoint}` shows it."
                        ),
                    },
                }
            )
        groups.append({"name": f"mlserve-drift-{r.endpoint}", "rules": drift_rules})
    return groups


def _objective_text(r: EndpointRules) -> str:
    v = r.latency_objective or 0.0
    return f"{v * 1000:g}ms" if v < 1 else f"{v:g}s"


def _num(x: float) -> str:
    """Numbers in expressions and labels: short, exact enough, never in exponent form."""
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    return text if text else "0"


def rules_document(groups: list[dict[str, Any]]) -> str:
    """A rules file (``rule_files`` of prometheus.yml) holding these groups."""
    header = "# Generated by mlserve from mlserve.toml (SLO burn-rate and drift alerts); do not edit.\n"
    return header + dump_yaml({"groups": groups})


def dump_yaml(data: Any) -> str:
    """Safe YAML (no tags, every string quoted or block-literal as YAML needs), multi-line
    expressions as literal blocks so the rules stay readable."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)


def manifest_rule_groups(manifest: Any, env_name: str, source: str, namespace: str = "") -> list[dict[str, Any]]:
    """Every rule group of an environment's endpoints."""
    env = manifest.environments[env_name]
    speedup = int(getattr(env, "alert_speedup", 1) or 1)
    groups: list[dict[str, Any]] = []
    for name, ep in manifest.endpoints_in(env_name).items():
        groups.extend(rule_groups(endpoint_rules_from_manifest(name, ep, namespace), source, speedup))
    return groups
