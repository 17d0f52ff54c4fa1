"""The rehearsal's exposition samples stay valid histograms as they advance: for every
component, each series' ``_count`` grows by the requests served and equals its ``+Inf``
bucket's growth, and the requests counter the query sets read grows once per request (the
Seldon executor's counter *is* its histogram's ``_count``: counting it twice made every
finite bucket look half empty and the latency test never decide)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.exposition import COMPONENTS, ArmInfo, Behaviour, Exposition

ARM = ArmInfo("fraud-v2", "v2", "candidate", "fraud-v2-predictor", "fraud-v2-predictor", "v2")


def _sums(expo: Exposition, comp: str) -> dict[str, float]:
    """Per sample name (``le`` kept for buckets), the sum over the arm's series."""
    out: dict[str, float] = {}
    for (name, labels), value in expo.series[(comp, ARM.name)].values.items():
        key = name + (f"[{dict(labels)['le']}]" if name.endswith("_bucket") else "")
        out[key] = out.get(key, 0.0) + value
    return out


@pytest.mark.parametrize("comp", sorted(COMPONENTS))
def test_counts_buckets_and_requests_advance_together(comp: str) -> None:
    c = COMPONENTS[comp]
    expo = Exposition(
        cluster=None,  # type: ignore[arg-type]  # _serve_arm reads no live weights
        namespace="ml-staging", endpoint="fraud", serving="kserve", router="istio", components=(comp,),
        versions={"v2": Behaviour(error_rate=0.1, latency=0.02)},
    )  # fmt: skip
    expo._arm_series(comp, ARM)
    before = _sums(expo, comp)
    expo._serve_arm(ARM, 1000)
    after = _sums(expo, comp)
    grew: dict[str, Any] = {k: after[k] - before.get(k, 0.0) for k in after}
    assert c.histogram is not None
    served = 1000 if c.error is not None else None  # vLLM counts successes only
    assert grew[c.histogram + "_count"] == grew[c.histogram + "_bucket[+Inf]"]
    finite = [k for k in grew if k.startswith(c.histogram + "_bucket[") and not k.endswith("[+Inf]")]
    assert max(grew[k] for k in finite) == grew[c.histogram + "_bucket[+Inf]"]  # 20 ms is below the top bound
    requests = grew[c.ok[0]] if c.error is None or c.error[0] == c.ok[0] else grew[c.ok[0]] + grew[c.error[0]]
    if served is not None:
        assert requests == served, grew
    assert grew[c.histogram + "_count"] in (served, grew[c.ok[0]]), grew
