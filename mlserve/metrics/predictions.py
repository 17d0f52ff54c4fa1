"""Counts of positive predictions per variant, the sufficient statistics of the prediction gate.

The local gateway exports ``mlserve_predictions_total{endpoint,variant,class}`` for endpoints
with monitoring (class ``positive`` or ``negative``, see :mod:`mlserve.local.drift`); on
Kubernetes the drift collector fed by the serving platform's payload logger exports the same
series (:mod:`mlserve.monitoring.collector`), scraped with the pod's namespace. A look reads
both classes' growth since the step's anchor exactly, like requests and errors
(:func:`mlserve.metrics.collect.counter_increase`), and stores them in the snapshot as the
metric's custom ratio: positives over predictions.
"""

from __future__ import annotations

from mlserve.metrics.collect import MetricsUnavailable, QueryFn, counter_increase
from mlserve.metrics.queries import fill, window

PREDICTIONS = "mlserve_predictions_total"
SELECTORS = {
    "local": 'endpoint="{endpoint}",variant="{variant}"',
    "istio": 'namespace="{namespace}",endpoint="{endpoint}",variant="{variant}"',
    "seldon": 'namespace="{namespace}",endpoint="{endpoint}",variant="{variant}"',
    "kserve": 'namespace="{namespace}",endpoint="{endpoint}",variant="{variant}"',
}


def prediction_selector(source: str, endpoint: str, variant: str, namespace: str = "") -> str:
    return PREDICTIONS + "{" + fill(SELECTORS[source], endpoint=endpoint, variant=variant, namespace=namespace) + "}"


def prediction_counts(
    query: QueryFn, source: str, endpoint: str, variant: str, started_at: float, at: float, namespace: str = ""
) -> tuple[int, int]:
    """(positive predictions, all predictions) of one variant between ``started_at`` and ``at``;
    MetricsUnavailable (the look is held) when the series do not exist."""
    sel = prediction_selector(source, endpoint, variant, namespace)
    counts = counter_increase(query, sel, window(max(1.0, at - started_at)), started_at, at)
    if not counts:
        raise MetricsUnavailable(
            f"no data for the predictions of {endpoint}/{variant}: Prometheus has no series {sel} "
            "(is monitoring on for this endpoint, and the gateway or drift collector scraped?)"
        )
    positive = round(sum(v for k, v in counts.items() if dict(k).get("class") == "positive"))
    total = round(sum(counts.values()))
    return positive, total
