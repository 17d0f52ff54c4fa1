"""A step's first look never counts from a scrape taken before its traffic change."""

from __future__ import annotations

import pytest

from mlserve.metrics import LookRequest, StaleAnchor
from mlserve.metrics.collect import check_anchor

SEL = 'mlserve_requests_total{endpoint="fraud",variant="v1"}'


def _query(scrapes: list[float]):  # the newest scrape at or before t, as timestamp() answers
    def query(promql: str, at: float) -> list[tuple[dict[str, str], float]]:
        assert promql == f"timestamp({SEL})"
        seen = [s for s in scrapes if s <= at]
        return [({"code": "200"}, max(seen))] if seen else []

    return query


def _req(anchor: float, at: float) -> LookRequest:
    return LookRequest("fraud", ["v1"], {"v1": 100}, started_at=anchor, at=at, changed_at=100.0)


def test_an_anchor_after_a_fresh_scrape_is_accepted() -> None:
    check_anchor(_query([95.0, 100.5, 101.5]), [SEL], _req(101.5, 110.0))


def test_a_missed_scrape_moves_the_anchor_to_a_later_fresh_one() -> None:
    # the scrape due at 100.5 was missed: the newest sample at the anchor is from 99.5
    with pytest.raises(StaleAnchor, match="predates the traffic change") as info:
        check_anchor(_query([98.5, 99.5, 103.0]), [SEL], _req(101.5, 105.0))
    assert info.value.fresh_at == 105.0


def test_no_fresh_scrape_yet_holds_without_a_new_anchor() -> None:
    with pytest.raises(StaleAnchor) as info:
        check_anchor(_query([98.5, 99.5]), [SEL], _req(101.5, 102.0))
    assert info.value.fresh_at is None


def test_a_series_that_did_not_exist_yet_counts_from_zero() -> None:
    check_anchor(_query([]), [SEL], _req(101.5, 110.0))


def test_an_anchor_before_prometheus_first_scrape_is_moved_not_counted_from_zero() -> None:
    """CI, 2026-12-02: Prometheus had just started, so no arm had a sample at the step's
    anchor; counting "from zero" took in everything the gateway had served since it started
    (at 100/0), and a 50/50 step halted on "v2 received 43.2%". When no arm's series exists
    at the anchor but they do now, the step re-anchors at the look; one arm absent while the
    other is scraped (a version that never had traffic) still counts from zero."""
    sel2 = 'mlserve_requests_total{endpoint="fraud",variant="v2"}'

    def query(promql: str, at: float) -> list[tuple[dict[str, str], float]]:
        first = 102.4  # the first scrape Prometheus took
        return (
            [({"code": "200"}, first)] if at >= first and promql in (f"timestamp({SEL})", f"timestamp({sel2})") else []
        )

    req = LookRequest("fraud", ["v1", "v2"], {"v1": 50, "v2": 50}, started_at=101.5, at=104.0, changed_at=100.0)
    with pytest.raises(StaleAnchor, match="no scrape of the arms' series") as info:
        check_anchor(query, [SEL, sel2], req)
    assert info.value.fresh_at == 104.0

    def only_v1(promql: str, at: float) -> list[tuple[dict[str, str], float]]:
        return [({"code": "200"}, 101.0)] if promql == f"timestamp({SEL})" else []

    check_anchor(only_v1, [SEL, sel2], req)
