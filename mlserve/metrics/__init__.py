"""Prometheus queries -> per-variant sufficient statistics (``mlserve.snapshot/v1`` looks).

``metrics`` never imports ``rollout``; ``stats`` never imports ``metrics``.
"""

from __future__ import annotations

from mlserve.metrics.collect import Collected, LookRequest, MetricsUnavailable, PrometheusQuery, collect_look
from mlserve.metrics.queries import QUERY_SETS, QuerySet, variant_queries

__all__ = [
    "QUERY_SETS",
    "Collected",
    "LookRequest",
    "MetricsUnavailable",
    "PrometheusQuery",
    "QuerySet",
    "collect_look",
    "variant_queries",
]
