"""Latency histogram buckets fine enough to compare the quantile a policy names.

A latency margin of 10% at p99 cannot be judged from buckets 2-2.5x apart (Prometheus'
and most runtimes' defaults): the compared value would be wherever a bucket bound happens
to fall. mlserve's own buckets are exponential, :data:`RATIO` apart (3%) from
:data:`LOW` (0.5 ms) to :data:`HIGH` (30 s): 373 bounds. Interpolating inside one such
bucket puts the compared quantile within about 1.5% of the true one, a fraction of a 10%
margin. The local gateway exports them. On Kubernetes the same bounds, in milliseconds, go
into each model pod's ``sidecar.istio.io/statsHistogramBuckets`` annotation for Istio's
``istio_request_duration_milliseconds`` (:func:`istio_buckets_annotation`), so the sidecars
that the ``istio`` query set reads resolve a quantile as finely as the gateway.

Prometheus' native histograms would do this without fixed bounds, but the Prometheus of
this project (Debian's 2.42) has them only behind a feature flag and the Python client
does not emit them, so fine classic buckets are the way here. The cost is one series per
bound per label set (373 instead of about a dozen); a gateway with a few endpoints and
three arms each exports a few thousand bucket series.
"""

from __future__ import annotations

import bisect
import json
import math
from typing import Any

RATIO = 1.03
LOW = 0.0005  # seconds
HIGH = 30.0


def latency_buckets(ratio: float = RATIO, low: float = LOW, high: float = HIGH) -> tuple[float, ...]:
    """Bucket bounds in seconds: ``low * ratio**k`` up to the first one at or above ``high``,
    rounded to 4 significant digits (so they print and parse the same everywhere)."""
    count = math.ceil(math.log(high / low) / math.log(ratio))
    out: list[float] = []
    for k in range(count + 1):
        b = float(f"{low * ratio**k:.4g}")
        if not out or b > out[-1]:
            out.append(b)
    return tuple(out)


LATENCY_BUCKETS = latency_buckets()

ISTIO_BUCKETS_ANNOTATION = "sidecar.istio.io/statsHistogramBuckets"
ISTIO_DURATION_METRIC = "istiocustom.istio_request_duration_milliseconds"


def istio_buckets_annotation(bounds: tuple[float, ...] = LATENCY_BUCKETS) -> str:
    """The value of a pod's ``sidecar.istio.io/statsHistogramBuckets`` annotation: the
    latency bounds in milliseconds for the sidecar's request-duration histogram (Istio
    matches the key as a prefix of its histogram names)."""
    ms = [float(f"{b * 1000:.4g}") for b in bounds]
    return json.dumps({ISTIO_DURATION_METRIC: ms}, separators=(",", ":"))


class FineHistogram:
    """A labelled latency histogram over many bounds whose ``observe`` is one bisect (the
    client library's ``Histogram`` scans its bounds linearly: 370 comparisons per request at
    these bounds). Registered as a collector, it exports the classic ``_bucket`` / ``_sum`` /
    ``_count`` series of a Prometheus histogram, cumulative at scrape time."""

    def __init__(
        self, name: str, documentation: str, labelnames: tuple[str, ...], bounds: tuple[float, ...] = LATENCY_BUCKETS
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.bounds = tuple(float(b) for b in bounds)
        self._le = [*(repr(b) for b in self.bounds), "+Inf"]
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def labels(self, *values: str) -> tuple[list[int], list[float]]:
        """The (counts per bucket, [sum]) of one label set, created at zero."""
        found = self._series.get(values)
        if found is None:
            found = self._series[values] = ([0] * (len(self.bounds) + 1), [0.0])
        return found

    def observe(self, values: tuple[str, ...], seconds: float) -> None:
        counts, total = self.labels(*values)
        counts[bisect.bisect_left(self.bounds, seconds)] += 1
        total[0] += seconds

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self.labelnames))
        for values, (counts, total) in list(self._series.items()):
            snap = list(counts)  # one copy: the buckets of a scrape are consistent
            cum, acc = [], 0
            for le, n in zip(self._le, snap, strict=True):
                acc += n
                cum.append((le, acc))
            family.add_metric(list(values), cum, total[0])
        return [family]
