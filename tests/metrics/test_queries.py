from __future__ import annotations

from typing import Any

import pytest

from mlserve.metrics import QUERY_SETS, LookRequest, MetricsUnavailable, collect_look, variant_queries
from tests.conftest import REPO


def test_local_selectors() -> None:
    q = variant_queries(QUERY_SETS["local"], endpoint="fraud", variant="v2", seconds=90.2)
    assert q.requests == 'mlserve_requests_total{endpoint="fraud",variant="v2"}'
    assert q.buckets == 'mlserve_request_duration_seconds_bucket{endpoint="fraud",variant="v2"}'
    assert q.latency_sum == 'mlserve_request_duration_seconds_sum{endpoint="fraud",variant="v2"}'
    assert q.window == "91s"
    assert q.gpu == {}
    qs = QUERY_SETS["local"]
    assert (qs.error_label, qs.error_regex) == ("code", "5..|connect_error")


def test_istio_selectors_use_destination_reporter_and_milliseconds() -> None:
    qs = QUERY_SETS["istio"]
    arm = {"workload": "fraud-v1-predictor", "version": "v1"}
    q = variant_queries(qs, endpoint="fraud", variant="v1", seconds=300, namespace="ml-prod", arm=arm)
    sel = (
        'reporter="destination",destination_workload_namespace="ml-prod",'
        'destination_workload="fraud-v1-predictor",destination_canonical_revision="v1"'
    )
    assert q.requests == f"istio_requests_total{{{sel}}}"
    assert q.buckets == f"istio_request_duration_milliseconds_bucket{{{sel}}}"
    assert (qs.error_label, qs.error_regex, qs.le_to_seconds) == ("response_code", "5..", 0.001)
    assert 'pod=~"fraud-v1-predictor-[a-z0-9]+-[a-z0-9]+"' in q.gpu["gpu_utilization_percent"]
    assert qs.identity == ("destination_workload", "destination_canonical_revision")


def test_two_workloads_behind_one_selector_hold_the_look_naming_the_query() -> None:
    """A selector that matches two arms' workloads (e.g. a control of the baseline version
    selected by canonical revision alone) is ambiguous: held, never summed."""
    from mlserve.metrics.collect import check_one_identity

    qs = QUERY_SETS["istio"]
    series = {
        frozenset({("destination_workload", "fraud-v1-predictor"), ("destination_canonical_revision", "v1")}): 90.0,
        frozenset({("destination_workload", "fraud-v1-control"), ("destination_canonical_revision", "v1")}): 10.0,
    }
    with pytest.raises(MetricsUnavailable) as err:
        check_one_identity(qs, series, 'istio_requests_total{destination_canonical_revision="v1"}', "fraud/v1")
    msg = err.value.message
    assert 'istio_requests_total{destination_canonical_revision="v1"}' in msg and "2 workloads" in msg
    assert "destination_workload=fraud-v1-control" in msg and "does not add up" in msg
    one = {k: v for k, v in series.items() if ("destination_workload", "fraud-v1-predictor") in k}
    check_one_identity(qs, one, "q", "fraud/v1")  # one workload, several codes: fine


def test_istio_selector_matches_the_rendered_pod_labels() -> None:
    """Istio reports canonical-name/-revision pod labels as destination_canonical_*."""
    text = (REPO / "stacks" / "staging" / "kubernetes" / "endpoints" / "fraud.yaml").read_text()
    assert '"service.istio.io/canonical-name": "fraud"' in text
    assert (
        '"service.istio.io/canonical-revision": "v2"' in text or '"service.istio.io/canonical-revision": "v1"' in text
    )


def test_seldon_and_kserve_label_variants() -> None:
    s = variant_queries(QUERY_SETS["seldon"], endpoint="fraud", variant="v2", seconds=60, namespace="ml")
    assert 'deployment_name="fraud",predictor_name="v2"' in s.requests
    c = variant_queries(
        QUERY_SETS["seldon"],
        endpoint="fraud",
        variant="control",
        seconds=60,
        namespace="ml",
        arm={"predictor": "v1-control"},
    )
    assert 'deployment_name="fraud",predictor_name="v1-control"' in c.requests
    assert s.buckets.startswith("seldon_api_executor_client_requests_seconds_bucket{")
    k = variant_queries(
        QUERY_SETS["kserve"],
        endpoint="fraud",
        variant="v2",
        seconds=60,
        namespace="ml",
        revision="fraud-predictor-00002",
    )
    assert k.requests == 'revision_request_count{namespace_name="ml",revision_name="fraud-predictor-00002"}'
    assert QUERY_SETS["kserve"].error_regex == "5xx"


def test_custom_ratio_templates_fill_only_placeholders() -> None:
    num = (
        'sum(increase(mlserve_feedback_total{endpoint="{endpoint}",variant="{variant}",outcome="converted"}[{window}]))'
    )
    den = 'sum(increase(mlserve_feedback_total{endpoint="{endpoint}",variant="{variant}"}[{window}]))'
    q = variant_queries(
        QUERY_SETS["local"], endpoint="shop", variant="v2", seconds=10, custom={"conversion": (num, den)}
    )
    n, d = q.custom["conversion"]
    assert n == 'sum(increase(mlserve_feedback_total{endpoint="shop",variant="v2",outcome="converted"}[10s]))'
    assert d == 'sum(increase(mlserve_feedback_total{endpoint="shop",variant="v2"}[10s]))'


class FakeProm:
    """Counter values per series at the rollout's start (t=1000) and later (unit test of our
    own arithmetic; the live test runs a real Prometheus)."""

    def __init__(
        self, at_start: dict[str, float], later: dict[str, float], resets: frozenset[str] = frozenset()
    ) -> None:
        self.at_start, self.later, self.resets = at_start, later, resets
        self.seen: list[str] = []

    def __call__(self, promql: str, at: float) -> list[tuple[dict[str, str], float]]:
        self.seen.append(promql)
        if promql.startswith("resets("):
            return [(self._labels(k), 1.0 if k in self.resets else 0.0) for k in self.later if self._match(promql, k)]
        if promql.endswith("s]"):  # raw samples in the window: start value, a drop, the end value
            out = []
            for k, v in self.later.items():
                if self._match(promql, k):
                    out += [
                        (self._labels(k), self.at_start.get(k, 0.0) + 5),
                        (self._labels(k), 2.0),
                        (self._labels(k), v),
                    ]
            return out
        table = self.at_start if at <= 1000.0 else self.later
        return [(self._labels(k), v) for k, v in table.items() if self._match(promql, k)]

    @staticmethod
    def _labels(key: str) -> dict[str, str]:
        name, _, rest = key.partition("|")
        labels = dict(p.split("=") for p in rest.split(",") if p)
        return {"__name__": name, **labels}

    @staticmethod
    def _match(promql: str, key: str) -> bool:
        name, _, rest = key.partition("|")
        sel = promql.removeprefix("resets(").split("[")[0]
        return sel.startswith(name + "{") and all(
            f'{p.split("=")[0]}="{p.split("=")[1]}"' in sel for p in rest.split(",") if p.startswith("variant")
        )


def _req(**kw: Any) -> LookRequest:
    base: dict[str, Any] = {
        "endpoint": "fraud",
        "variants": ["v1", "v2"],
        "weights": {"v1": 90, "v2": 10},
        "started_at": 1000.0,
        "at": 1060.0,
    }
    base.update(kw)
    return LookRequest(**base)


R = "mlserve_requests_total|"
B = "mlserve_request_duration_seconds_bucket|"


def test_counts_are_differences_from_the_start() -> None:
    start = {R + "variant=v1,code=200": 5000.0, R + "variant=v2,code=200": 40.0}
    later = {
        R + "variant=v1,code=200": 5900.0,
        R + "variant=v2,code=200": 138.0,
        R + "variant=v2,code=500": 2.0,  # born after the start: counts from zero
        R + "variant=v2,code=404": 7.0,  # the caller's fault, not an error of the model
        B + "variant=v2,le=0.05": 120.0,
        B + "variant=v2,le=+Inf": 147.0,
    }
    look = collect_look(FakeProm(start, later), _req()).look
    assert look["at"] == "1970-01-01T00:17:40Z"
    assert look["weights"] == {"v1": 90, "v2": 10}
    assert look["variants"]["v1"]["requests"] == 900 and look["variants"]["v1"]["errors"] == 0
    v2 = look["variants"]["v2"]
    assert (v2["requests"], v2["errors"]) == (107, 2)
    assert v2["latency_seconds"]["le"] == [0.05, "+Inf"]
    assert v2["latency_seconds"]["counts"] == [107, 107]  # capped at requests, +Inf == requests


def test_a_restarted_counter_is_summed_over_raw_samples() -> None:
    start = {R + "variant=v1,code=200": 100.0, R + "variant=v2,code=200": 10.0}
    later = {R + "variant=v1,code=200": 30.0, R + "variant=v2,code=200": 20.0}
    look = collect_look(FakeProm(start, later, resets=frozenset({R + "variant=v1,code=200"})), _req()).look
    # 100 -> 105 (+5), drop to 2 (restart: +2), -> 30 (+28)
    assert look["variants"]["v1"]["requests"] == 35
    assert look["variants"]["v2"]["requests"] == 10


def test_collect_never_decreases_between_looks() -> None:
    start = {R + "variant=v1,code=200": 0.0, R + "variant=v2,code=200": 0.0}
    first = collect_look(
        FakeProm(start, {R + "variant=v1,code=200": 900.0, R + "variant=v2,code=200": 100.0}), _req()
    ).look
    lower = {R + "variant=v1,code=200": 890.0, R + "variant=v2,code=200": 99.0}
    second = collect_look(FakeProm(start, lower), _req(at=1120.0), previous=first).look
    assert second["variants"]["v2"]["requests"] == 100


def test_no_series_is_a_held_look() -> None:
    with pytest.raises(MetricsUnavailable, match="no data for requests of fraud/v1"):
        collect_look(FakeProm({}, {}), _req())


class IngestingProm:
    """Prometheus as a scraper of one gateway every second: a sample carries its scrape's
    start time, and the newest scrape becomes visible only after ``visible_after`` queries
    (it is still being ingested when the look begins), as a real Prometheus under load."""

    def __init__(self, rates: dict[str, float], newest: float, visible_after: int) -> None:
        self.rates, self.newest, self.visible_after = rates, newest, visible_after
        self.calls = 0

    def __call__(self, promql: str, at: float) -> list[tuple[dict[str, str], float]]:
        self.calls += 1
        visible = self.newest if self.calls > self.visible_after else self.newest - 1.0
        t = min(float(int(at)), visible)  # the latest scrape at or before `at` that can be seen
        out = []
        for variant, rate in self.rates.items():
            if f'variant="{variant}"' not in promql:
                continue
            labels = {"endpoint": "fraud", "variant": variant, "code": "200"}
            if promql.startswith("timestamp("):
                out.append((labels, t))
            elif promql.startswith("resets("):
                out.append((labels, 0.0))
            elif promql.startswith("mlserve_requests_total"):
                out.append((labels, rate * t))
        return out


def test_a_scrape_still_being_ingested_never_splits_a_looks_window() -> None:
    """The CI failure of 2026-12-02: the baseline's counters were read before the newest
    scrape was visible and the candidate's after it, so v2 "received 73.2%" of a 55% step
    and the run halted on a sample-ratio mismatch that was never in the traffic. Every
    query of a look is now evaluated at the newest scrape all variants already have."""
    prom = IngestingProm({"v1": 45.0, "v2": 55.0}, newest=1060.0, visible_after=3)
    look = collect_look(prom, _req(at=1060.2, weights={"v1": 45, "v2": 55})).look
    v1, v2 = look["variants"]["v1"]["requests"], look["variants"]["v2"]["requests"]
    assert (v1, v2) == (45 * 59, 55 * 59)  # both end at the scrape of t=1059 that every series had


def test_the_settled_time_keeps_the_looks_time_when_no_scrape_follows_the_anchor() -> None:
    from mlserve.metrics.collect import settled_at

    prom = IngestingProm({"v1": 1.0, "v2": 1.0}, newest=999.0, visible_after=0)
    req = _req(at=1060.2)
    assert (
        settled_at(prom, ['mlserve_requests_total{variant="v1"}', 'mlserve_requests_total{variant="v2"}'], req)
        == 1060.2
    )
    fresh = IngestingProm({"v1": 1.0, "v2": 1.0}, newest=1060.0, visible_after=0)
    assert settled_at(fresh, ['x{variant="v1"}', 'x{variant="v2"}'], req) == pytest.approx(1060.0005)
