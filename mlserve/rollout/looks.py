"""One look at Prometheus for one step, as a ``mlserve.snapshot/v1`` look.

Canary and A/B looks are :func:`mlserve.metrics.collect_look` over both variants. A
shadow look on the local gateway reads the candidate from the mirror's own series
(``mlserve_shadow_requests_total``, ``mlserve_shadow_duration_seconds``), since the
candidate serves no user, and counts prediction agreement
(``mlserve_shadow_agreement_total``) beside the look (agreement is not part of the
snapshot format). On Kubernetes, Istio reports mirrored requests under the candidate's
own workload labels, so a shadow look there is an ordinary look.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlserve.manifest.models import RolloutPolicy
from mlserve.metrics import LookRequest, MetricsUnavailable, collect_look
from mlserve.metrics.collect import counter_increase, histogram_from_series, keep_monotone
from mlserve.metrics.queries import window
from mlserve.rollout.traffic import Driver, QueryFn

ERROR_CODES = re.compile(r"5..|connect_error")


@dataclass(frozen=True)
class Seen:
    look: dict[str, Any]
    gpu: dict[str, dict[str, float]]
    agreement: dict[str, int] | None = None
    samples: list[dict[str, Any]] | None = None  # LLM shadows: example generation pairs


def custom_queries(policy: RolloutPolicy) -> dict[str, tuple[str, str]]:
    return {
        m.name: (m.numerator, m.denominator)
        for m in policy.metrics
        if m.kind == "ratio" and m.numerator is not None and m.denominator is not None
    }


def llm_source(source: str, policy: RolloutPolicy) -> str | None:
    """Where token-stream statistics come from, when the policy gates on any: the local
    gateway's mlserve_llm_* series, else vLLM's own metrics on the cluster."""
    from mlserve.manifest.models import LLM_KINDS

    if not any(m.kind in LLM_KINDS for m in policy.metrics):
        return None
    return "local" if source == "local" else "vllm"


def take_look(
    driver: Driver,
    query: QueryFn,
    *,
    endpoint: str,
    baseline: str,
    candidate: str,
    mode: str,
    weights: Mapping[str, int],
    anchor: float,
    at: float,
    policy: RolloutPolicy,
    previous: Mapping[str, Any] | None,
) -> Seen:
    """Raise MetricsUnavailable when anything the decision needs is missing (a held look)."""
    if at <= anchor:
        raise MetricsUnavailable("the step has just started: waiting for the first scrape after the traffic change")
    if mode == "shadow" and driver.source == "local":
        seen = _local_shadow(query, endpoint, baseline, candidate, anchor, at, previous)
        samples = getattr(driver, "shadow_samples", None)
        if samples is not None:
            recent = [x for x in samples(endpoint) if isinstance(x.get("at"), int | float) and x["at"] >= anchor]
            seen = Seen(seen.look, seen.gpu, seen.agreement, recent or None)
        return seen
    custom = {} if mode == "shadow" else custom_queries(policy)
    req = LookRequest(
        llm_source=llm_source(driver.source, policy),
        endpoint=endpoint,
        variants=[baseline, candidate],
        weights=dict(weights),
        started_at=anchor,
        at=at,
        source=driver.source,
        namespace=driver.namespace,
        custom=custom,
    )
    got = collect_look(query, req, previous)
    return Seen(got.look, got.gpu)


def _local_shadow(
    query: QueryFn,
    endpoint: str,
    baseline: str,
    candidate: str,
    anchor: float,
    at: float,
    previous: Mapping[str, Any] | None,
) -> Seen:
    base = collect_look(
        query,
        LookRequest(endpoint=endpoint, variants=[baseline], weights={baseline: 100}, started_at=anchor, at=at),
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
    return Seen(look, base.gpu, {"agree": agree, "compared": compared})
