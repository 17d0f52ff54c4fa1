"""One look at Prometheus: per-variant cumulative counts and latency histograms, as a
``mlserve.snapshot/v1`` look (a plain dict, the documented contract).

Prometheus down, answering errors, or returning no series is a *held* look
(:class:`MetricsUnavailable`), never a look with zeros: no data is never a pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mlserve.errors import MlserveError
from mlserve.metrics.predictions import prediction_selector
from mlserve.metrics.queries import (
    LLM_QUERY_SETS,
    QUERY_SETS,
    LlmQuerySet,
    QuerySet,
    llm_selector,
    variant_queries,
    window,
)
from mlserve.timefmt import utc


class MetricsUnavailable(MlserveError):
    """The metrics needed for a look could not be read; the look is held."""

    kind = "metrics"


class StaleAnchor(MetricsUnavailable):
    """The newest scrape at a step's anchor was taken before the step's traffic change: its
    counters would count requests served at the previous weights. ``fresh_at``: a later
    time whose scrapes all follow the change (the step can be re-anchored there), or None."""

    def __init__(self, message: str, fresh_at: float | None) -> None:
        super().__init__(message)
        self.fresh_at = fresh_at


# (labels, value) pairs of an instant vector
Sample = tuple[dict[str, str], float]
QueryFn = Callable[[str, float], list[Sample]]


class PrometheusQuery:
    """Instant queries through prometheus-api-client, errors made into MetricsUnavailable."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        from prometheus_api_client import PrometheusConnect

        self.url = url.rstrip("/")
        self.timeout = timeout
        self._conn = PrometheusConnect(url=self.url, disable_ssl=True, retry=None)

    def __call__(self, promql: str, at: float) -> list[Sample]:
        try:
            data = self._conn.custom_query(promql, params={"time": f"{at:.3f}"}, timeout=self.timeout)
        except Exception as exc:  # requests' ConnectionError, PrometheusApiClientException, bad JSON
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise MetricsUnavailable(f"Prometheus at {self.url} did not answer: {reason}") from None
        out: list[Sample] = []
        for item in data or []:
            labels = dict(item.get("metric", {}))
            # an instant vector has "value"; a range vector (raw samples) has "values"
            for pair in item.get("values", []) or [item.get("value")]:
                try:
                    out.append((labels, float(pair[1])))
                except (IndexError, TypeError, ValueError):
                    continue
        return out


def prometheus_query(url: str, timeout: float) -> PrometheusQuery:
    """A PrometheusQuery that fails fast: prometheus-api-client mounts a retrying adapter
    (several attempts with back-off), which turned one held look into ~26 s of waiting
    against a stopped Prometheus. A look is retried at the next interval anyway."""
    q = PrometheusQuery(url, timeout=timeout)
    session = getattr(getattr(q, "_conn", None), "_session", None)
    if session is not None:
        from requests.adapters import HTTPAdapter

        session.mount(q.url, HTTPAdapter(max_retries=0))
    return q


@dataclass(frozen=True)
class LookRequest:
    endpoint: str
    variants: Sequence[str]
    weights: Mapping[str, int]
    started_at: float  # unix seconds: the rollout's start, the anchor of every window
    at: float  # unix seconds: the look's time
    source: str = "local"
    namespace: str = ""
    revisions: Mapping[str, str] = field(default_factory=dict)
    custom: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    shadow: bool = False  # the last variant only receives mirrored copies of requests
    # a shadow look's decision gates on agreement (rollout.shadow_agreement > 0): a source
    # that counts it apart from the requests (the cluster's comparator) reads it only then
    agreement: bool = True
    # per variant, what its series are selected by (workload, version, predictor, service,
    # revision), as the target resolved them; a query set's placeholders are filled from it
    arms: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    token_streams: bool = False  # the decision needs token-stream statistics (LLM metric kinds)
    # where the source keeps them (a key of LLM_QUERY_SETS: "local" or "vllm"), set by the
    # metrics source like ``source``; None reads none
    llm_source: str | None = None
    predictions: tuple[str, ...] = ()  # metrics of kind "prediction" (mlserve.metrics.predictions)
    # when the step's traffic changed: the first look checks that the scrapes it counts from
    # (at ``started_at``) were taken after it (see :func:`check_anchor`)
    changed_at: float | None = None


SeriesKey = frozenset[tuple[str, str]]


def _key(labels: Mapping[str, str]) -> SeriesKey:
    return frozenset((k, v) for k, v in labels.items() if k != "__name__")


def _finite(samples: list[Sample]) -> dict[SeriesKey, float]:
    return {_key(labels): v for labels, v in samples if math.isfinite(v)}


def counter_increase(
    query: QueryFn, selector: str, window: str, started_at: float, at: float
) -> dict[SeriesKey, float]:
    """Per series: how much the counter grew between ``started_at`` and ``at``.

    Raw values at both instants (exact); a series absent at the start counts from zero; a
    series that restarted inside the window falls back to Prometheus' ``increase``.
    """
    now = _finite(query(selector, at))
    if not now:
        return {}
    before = _finite(query(selector, started_at))
    resets = _finite(query(f"resets({selector}[{window}])", at))
    fallback: dict[SeriesKey, float] | None = None
    out: dict[SeriesKey, float] = {}
    for key, value in now.items():
        base = before.get(key, 0.0)
        if resets.get(key, 0.0) > 0 or value < base:
            if fallback is None:
                fallback = _increase_from_samples(query(f"{selector}[{window}]", at), before)
            out[key] = fallback.get(key, value)
        else:
            out[key] = value - base
    return out


def _increase_from_samples(samples: list[Sample], before: dict[SeriesKey, float]) -> dict[SeriesKey, float]:
    """Exact growth over raw samples, counting a drop as a restart from zero.

    Unlike ``increase()``, nothing is extrapolated: the first step is measured from the
    value at the rollout's start.
    """
    last: dict[SeriesKey, float] = {}
    grown: dict[SeriesKey, float] = {}
    for labels, value in samples:
        if not math.isfinite(value):
            continue
        key = _key(labels)
        prev = last.get(key, before.get(key, 0.0))
        grown[key] = grown.get(key, 0.0) + (value - prev if value >= prev else value)
        last[key] = value
    return grown


def histogram_from_series(series: Mapping[SeriesKey, float], scale: float, requests: int) -> dict[str, Any]:
    """Bucket series (by ``le``) -> a cumulative ``{"le", "counts"}`` histogram in seconds whose
    ``+Inf`` bucket equals ``requests``."""
    by_le: dict[float, float] = {}
    for key, value in series.items():
        le = dict(key).get("le")
        if le is None:
            continue
        b = math.inf if le in ("+Inf", "Inf", "inf") else float(le)
        by_le[b] = by_le.get(b, 0.0) + value
    if not by_le:
        return {}
    bounds = sorted(by_le)
    counts: list[int] = []
    running = 0
    for b in bounds:
        running = max(running, round(by_le[b]))  # keep the buckets cumulative
        counts.append(running)
    if bounds[-1] != math.inf:
        bounds.append(math.inf)
        counts.append(running)
    # Requests the histogram never saw (refused connections) are slower than any bucket.
    counts = [min(c, requests) for c in counts[:-1]] + [requests]
    bounds_s: list[float | str] = ["+Inf" if b == math.inf else round(b * scale, 9) for b in bounds]
    return {"le": bounds_s, "counts": counts}


def keep_monotone(hist: dict[str, Any], previous: Mapping[str, Any] | None, requests: int) -> dict[str, Any]:
    """Cumulative bucket counts never go down from one look to the next."""
    if previous and previous.get("le") == hist["le"]:
        merged = [max(a, int(b)) for a, b in zip(hist["counts"], previous["counts"], strict=True)]
        hist = {**hist, "counts": [min(c, requests) for c in merged[:-1]] + [requests]}
    return hist


def _scalar(query: QueryFn, promql: str, at: float, what: str) -> float:
    samples = query(promql, at)
    if not samples:
        raise MetricsUnavailable(f"no data for {what}: Prometheus returned no series for {promql}")
    value = sum(v for _, v in samples)
    if not math.isfinite(value):
        raise MetricsUnavailable(f"no usable value for {what} (got {value}) from {promql}")
    return max(0.0, value)


def check_one_identity(qs: QuerySet, series: Mapping[SeriesKey, float], promql: str, what: str) -> None:
    """The series of one arm must name one workload: a selector that matches several (two arms
    of one version, a renamed Deployment next to the old one) is held, never summed."""
    if not qs.identity:
        return
    seen = sorted({tuple(dict(k).get(label, "") for label in qs.identity) for k in series})
    if len(seen) > 1:
        names = "; ".join(", ".join(f"{lab}={val}" for lab, val in zip(qs.identity, s, strict=True)) for s in seen)
        raise MetricsUnavailable(
            f"ambiguous series for {what}: {promql} matches {len(seen)} workloads ({names}); "
            "mlserve does not add up different workloads' series"
        )


def _prediction_counts(query: QueryFn, req: LookRequest, variant: str) -> tuple[int, int]:
    """(positive predictions, all predictions) of one variant since the anchor; the look is
    held (MetricsUnavailable) when the series do not exist."""
    sel = prediction_selector(req.source, req.endpoint, variant, req.namespace)
    counts = counter_increase(query, sel, window(max(1.0, req.at - req.started_at)), req.started_at, req.at)
    if not counts:
        raise MetricsUnavailable(
            f"no data for the predictions of {req.endpoint}/{variant}: Prometheus has no series {sel} "
            "(is monitoring on for this endpoint, and the gateway or drift collector scraped?)"
        )
    positive = round(sum(v for k, v in counts.items() if dict(k).get("class") == "positive"))
    return positive, round(sum(counts.values()))


@dataclass(frozen=True)
class Collected:
    """One look (``mlserve.snapshot/v1``, a plain dict) and, where the DCGM exporter is
    scraped, GPU figures per variant for the report (not part of the snapshot); a shadow
    look on a source that compares answers also counts prediction agreement, and for an LLM
    endpoint may carry a few example (routed, mirrored) generation pairs, redacted and
    truncated by the gateway, for the report."""

    look: dict[str, Any]
    gpu: dict[str, dict[str, float]]
    agreement: dict[str, int] | None = None
    queries: tuple[str, ...] = ()  # the PromQL this look ran, in order (for the run's events and report)
    samples: tuple[dict[str, Any], ...] = ()


class Recording:
    """A QueryFn that remembers what it was asked (each distinct query once, in order)."""

    def __init__(self, query: QueryFn) -> None:
        self.query = query
        self.asked: list[str] = []

    def __call__(self, promql: str, at: float) -> list[Sample]:
        if promql not in self.asked:
            self.asked.append(promql)
        return self.query(promql, at)


def _oldest_scrape(query: QueryFn, selector: str, at: float) -> float | None:
    stamps = [v for _labels, v in query(f"timestamp({selector})", at) if math.isfinite(v)]
    return min(stamps) if stamps else None


def check_anchor(query: QueryFn, selectors: Sequence[str], req: LookRequest) -> None:
    """StaleAnchor when a series' newest sample at the anchor predates the traffic change (a
    scrape was late or missed: the gateway was busy, Prometheus reloaded), so that requests
    served at the old weights are never counted as the new step's."""
    if req.changed_at is None:
        return
    anchored = []
    for selector in selectors:
        oldest = _oldest_scrape(query, selector, req.started_at)
        anchored.append(oldest)
        if oldest is not None and oldest < req.changed_at:
            now = _oldest_scrape(query, selector, req.at)
            fresh = req.at if now is not None and now >= req.changed_at else None
            raise StaleAnchor(
                f"the scrape at the step's anchor ({utc(oldest)}) predates the traffic change "
                f"({utc(req.changed_at)}); waiting for a scrape after it",
                fresh,
            )
    if selectors and all(a is None for a in anchored):
        # no series had a sample at the anchor: Prometheus had not scraped the source yet (it
        # has just started, or the deployment is new), so "absent" does not mean "zero"; the
        # counters would count everything served since the process started, at any weights
        newest = [_oldest_scrape(query, selector, req.at) for selector in selectors]
        seen = [t for t in newest if t is not None]
        if not seen:
            return  # no series now either: the look itself says there is no data
        fresh = req.at if min(seen) >= req.changed_at else None
        raise StaleAnchor("no scrape of the arms' series at the step's anchor yet; waiting for one", fresh)


def settled_at(query: QueryFn, selectors: Sequence[str], req: LookRequest) -> float:
    """The time a look's queries are evaluated at: the newest scrape that every variant's
    request series already has, at or before ``req.at``.

    An instant query at "now" can miss a scrape that Prometheus is still ingesting (its
    samples carry the scrape's start time but become visible only once the scrape is
    committed) while the next query, a few milliseconds later at the same time, sees it: the
    baseline's counters would then end one scrape earlier than the candidate's, a window
    mismatch that reads as a sample-ratio mismatch or as a rate difference. Evaluated at a
    sample time every series already has, all of a look's queries read the same scrapes.
    When the answer is unusable (no stamps, or none after the anchor) ``req.at`` stands.
    """
    newest: list[float] = []
    for selector in selectors:
        stamps = [v for _labels, v in query(f"timestamp({selector})", req.at) if math.isfinite(v)]
        if not stamps:
            return req.at
        newest.append(max(stamps))
    at = min(newest) + 0.0005  # half a millisecond past the sample: the API's time has 3 decimals
    return at if req.started_at < at <= req.at else req.at


def collect_look(query: QueryFn, req: LookRequest, previous: Mapping[str, Any] | None = None) -> Collected:
    """Query every variant and return one snapshot look."""
    recording = Recording(query)
    query = recording
    qs: QuerySet = QUERY_SETS[req.source]
    selectors = [variant_queries(qs, endpoint=req.endpoint, variant=v, seconds=1.0, namespace=req.namespace,
                                 revision=req.revisions.get(v, ""), custom={}, arm=req.arms.get(v)).requests
                 for v in req.variants]  # fmt: skip
    if previous is None and req.changed_at is not None:
        check_anchor(query, selectors, req)
    req = replace(req, at=settled_at(query, selectors, req))
    seconds = max(1.0, req.at - req.started_at)
    variants: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    prev_variants = (previous or {}).get("variants", {})
    for variant in req.variants:
        q = variant_queries(
            qs,
            endpoint=req.endpoint,
            variant=variant,
            seconds=seconds,
            namespace=req.namespace,
            revision=req.revisions.get(variant, ""),
            custom=dict(req.custom),
            arm=req.arms.get(variant),
        )
        what = f"{req.endpoint}/{variant}"
        counts = counter_increase(query, q.requests, q.window, req.started_at, req.at)
        if not counts:
            raise MetricsUnavailable(
                f"no data for requests of {what}: Prometheus has no series {q.requests} "
                "(is the target scraped? see the Prometheus targets page)"
            )
        check_one_identity(qs, counts, q.requests, what)
        pattern = re.compile(qs.error_regex)
        requests = round(sum(counts.values()))
        errors = round(sum(v for k, v in counts.items() if pattern.fullmatch(dict(k).get(qs.error_label, ""))))
        prev = prev_variants.get(variant, {})
        # cumulative counts never go down between looks
        requests = max(requests, int(prev.get("requests", 0)))
        errors = min(max(errors, int(prev.get("errors", 0))), requests)
        entry: dict[str, Any] = {"requests": requests, "errors": errors}
        hist = histogram_from_series(
            counter_increase(query, q.buckets, q.window, req.started_at, req.at), qs.le_to_seconds, requests
        )
        if hist:
            hist = keep_monotone(hist, prev.get("latency_seconds"), requests)
            total = sum(counter_increase(query, q.latency_sum, q.window, req.started_at, req.at).values())
            entry["latency_seconds"] = {**hist, "sum": round(total * qs.le_to_seconds, 6)}
        if q.custom:
            custom: dict[str, Any] = {}
            for name, (num, den) in q.custom.items():
                n = round(_scalar(query, num, req.at, f"{name} numerator of {what}"))
                d = round(_scalar(query, den, req.at, f"{name} denominator of {what}"))
                prev_c = prev.get("custom", {}).get(name, {})
                d = max(d, int(prev_c.get("denominator", 0)))
                n = min(max(n, int(prev_c.get("numerator", 0))), d)
                custom[name] = {"numerator": n, "denominator": d}
            entry["custom"] = custom
        if req.predictions:
            pos, total = _prediction_counts(query, req, variant)
            for name in req.predictions:
                prev_c = prev.get("custom", {}).get(name, {})
                d = max(total, int(prev_c.get("denominator", 0)))
                entry.setdefault("custom", {})[name] = {
                    "numerator": min(max(pos, int(prev_c.get("numerator", 0))), d),
                    "denominator": d,
                }
        if q.gpu:
            gpu = {}
            for name, promql in q.gpu.items():
                try:
                    samples = query(promql, req.at)
                except MetricsUnavailable:
                    samples = []
                if samples and math.isfinite(samples[0][1]):
                    gpu[name] = samples[0][1]
            if gpu:
                extras[variant] = gpu
        if req.llm_source is not None:
            entry["llm"] = collect_llm(query, LLM_QUERY_SETS[req.llm_source], req, variant, prev.get("llm"), seconds)
        variants[variant] = entry
    look: dict[str, Any] = {
        "at": utc(req.at, fraction=False),
        "weights": {v: int(req.weights.get(v, 0)) for v in req.variants},
        "variants": variants,
    }
    return Collected(look=look, gpu=extras, queries=tuple(recording.asked))


def collect_llm(
    query: QueryFn,
    lq: LlmQuerySet,
    req: LookRequest,
    variant: str,
    previous: Mapping[str, Any] | None,
    seconds: float,
) -> dict[str, Any]:
    """A variant's ``llm`` snapshot field: token-stream histograms (each with its own total)
    and counts since the anchor. A histogram with no series is left out (its metric kind
    then has no data); counts default to zero only when their series exist."""
    sel = llm_selector(lq, endpoint=req.endpoint, variant=variant, namespace=req.namespace)
    win = window(seconds)
    prev = dict(previous or {})
    out: dict[str, Any] = {}
    for key, name in (
        ("ttft_seconds", lq.ttft_buckets),
        ("time_per_output_token_seconds", lq.tpot_buckets),
        ("tokens_per_second", lq.rate_buckets),
    ):
        if not name:
            continue
        series = counter_increase(query, name + sel, win, req.started_at, req.at)
        if not series:
            continue
        total = round(max((v for k, v in series.items() if dict(k).get("le") in ("+Inf", "Inf", "inf")), default=0))
        hist = histogram_from_series(series, 1.0, total)
        if not hist:
            continue
        hist = keep_monotone(hist, prev.get(key), hist["counts"][-1])
        out[key] = hist
    streams = counter_increase(query, lq.streams + sel, win, req.started_at, req.at)
    if streams:
        counted = re.compile(lq.counted_regex)
        failed = re.compile(lq.failed_regex)
        n = sum(v for k, v in streams.items() if counted.fullmatch(dict(k).get(lq.outcome_label, "")))
        x = sum(v for k, v in streams.items() if failed.fullmatch(dict(k).get(lq.outcome_label, "")))
        n_i = max(round(n), int(prev.get("streams", 0)))
        out["streams"] = n_i
        out["streams_failed"] = min(max(round(x), int(prev.get("streams_failed", 0))), n_i)
    for key, name in (("prompt_tokens", lq.prompt_tokens), ("generation_tokens", lq.generation_tokens)):
        got = counter_increase(query, name + sel, win, req.started_at, req.at)
        if got:
            out[key] = max(round(sum(got.values())), int(prev.get(key, 0)))
    return out
