"""Counts of positive predictions per variant, the sufficient statistics of the prediction gate.

The local gateway exports ``mlserve_predictions_total{endpoint,variant,class}`` for endpoints
with monitoring (class ``positive`` or ``negative``, see :mod:`mlserve.monitoring.summaries`); on
Kubernetes the drift collector fed by the serving platform's payload logger exports the same
series (:mod:`mlserve.monitoring.collector`), scraped with the pod's namespace. A look reads
both classes' growth since the step's anchor exactly, like requests and errors
(:func:`mlserve.metrics.collect.counter_increase`, in :func:`~mlserve.metrics.collect.collect_look`
when the look request names the policy's prediction metrics), and stores them in the snapshot
as the metric's custom ratio: positives over predictions.
"""

from __future__ import annotations

from mlserve.metrics.queries import fill

PREDICTIONS = "mlserve_predictions_total"
SELECTORS = {
    "local": 'endpoint="{endpoint}",variant="{variant}"',
    "istio": 'namespace="{namespace}",endpoint="{endpoint}",variant="{variant}"',
    "seldon": 'namespace="{namespace}",endpoint="{endpoint}",variant="{variant}"',
    "kserve": 'namespace="{namespace}",endpoint="{endpoint}",variant="{variant}"',
}


def prediction_selector(source: str, endpoint: str, variant: str, namespace: str = "") -> str:
    return PREDICTIONS + "{" + fill(SELECTORS[source], endpoint=endpoint, variant=variant, namespace=namespace) + "}"
