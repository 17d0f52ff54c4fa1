"""A shadow look on the local gateway: the candidate answers only mirrored copies of requests.

The baseline is an ordinary look. The candidate serves no user, so its counts come from the
mirror's own series (``mlserve_shadow_requests_total``, ``mlserve_shadow_duration_seconds``),
and prediction agreement (``mlserve_shadow_agreement_total``) is counted beside the look
(agreement is not part of the snapshot format). On Kubernetes, Istio reports mirrored
requests under the candidate's own workload labels, so a shadow look there is an ordinary
look (:func:`mlserve.metrics.collect_look`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from mlserve.metrics.collect import (
    Collected,
    LookRequest,
    MetricsUnavailable,
    QueryFn,
    collect_look,
    counter_increase,
    histogram_from_series,
    keep_monotone,
)
from mlserve.metrics.queries import window

ERROR_CODES = re.compile(r"5..|connect_error")


def collect_gateway_shadow_look(query: QueryFn, req: LookRequest, previous: Mapping[str, Any] | None) -> Collected:
    baseline, candidate = req.variants[0], req.variants[-1]
    anchor, at, endpoint = req.started_at, req.at, req.endpoint
    base = collect_look(
        query,
        # the mirror's streams are not timed token by token, so neither arm reads token streams
        replace(req, variants=[baseline], weights={baseline: 100}, custom={}, shadow=False, llm_source=None),
        previous,
    )
    win = window(max(1.0, at - anchor))
    sel = f'{{endpoint="{endpoint}",variant="{candidate}"}}'
    counts = counter_increase(query, f"mlserve_shadow_requests_total{sel}", win, anchor, at)
    if not counts:
        raise MetricsUnavailable(
            f"no data for the shadow of {endpoint}/{candidate}: Prometheus has no series "
            f"mlserve_shadow_requests_total{sel} (is the mirror on and the gateway scraped?)"
        )
    requests = errors = 0
    for key, value in counts.items():
        code = dict(key).get("code", "")
        if code == "dropped":
            continue
        requests += round(value)
        if ERROR_CODES.fullmatch(code):
            errors += round(value)
    prev = dict((previous or {}).get("variants", {}).get(candidate, {}))
    requests = max(requests, int(prev.get("requests", 0)))
    errors = min(max(errors, int(prev.get("errors", 0))), requests)
    entry: dict[str, Any] = {"requests": requests, "errors": errors}
    buckets = counter_increase(query, f"mlserve_shadow_duration_seconds_bucket{sel}", win, anchor, at)
    hist = histogram_from_series(buckets, 1.0, requests)
    if hist:
        hist = keep_monotone(hist, prev.get("latency_seconds"), requests)
        total = sum(counter_increase(query, f"mlserve_shadow_duration_seconds_sum{sel}", win, anchor, at).values())
        entry["latency_seconds"] = {**hist, "sum": round(total, 6)}
    agree_counts = counter_increase(query, f"mlserve_shadow_agreement_total{sel}", win, anchor, at)
    agree = round(sum(v for k, v in agree_counts.items() if dict(k).get("agree") == "true"))
    compared = round(sum(agree_counts.values()))
    look = dict(base.look)
    look["weights"] = {baseline: 100, candidate: 0}
    look["variants"] = {**look["variants"], candidate: entry}
    return Collected(look, base.gpu, {"agree": agree, "compared": compared})
