"""Prometheus queries -> per-variant sufficient statistics (``mlserve.snapshot/v1`` looks).

``metrics`` never imports ``rollout``; ``stats`` never imports ``metrics``.
"""

from __future__ import annotations

from mlserve.metrics.collect import (
    Collected,
    LookRequest,
    MetricsUnavailable,
    PrometheusQuery,
    QueryFn,
    StaleAnchor,
    collect_look,
    prometheus_query,
)
from mlserve.metrics.queries import QUERY_SETS, QuerySet, variant_queries

__all__ = [
    "QUERY_SETS",
    "Collected",
    "LookRequest",
    "MetricsUnavailable",
    "PrometheusQuery",
    "QueryFn",
    "QuerySet",
    "StaleAnchor",
    "collect_look",
    "prometheus_query",
    "variant_queries",
]
