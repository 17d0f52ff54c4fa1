"""Pure routing decisions of the local gateway: weighted choice, sticky buckets, shadow sampling.

A :class:`RouteTable` is immutable and built once per traffic or config change; the gateway
swaps a single reference to a new table, so a request in flight keeps the table it started
with (its weights, faults *and upstream URLs*) and a change never drops or half-applies to a
request: a request that started before an arm was removed still finishes on that arm.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mlserve.local.gateway_config import Fault, Shadow, TrafficState

BUCKETS = 10_000  # sticky keys hash to one of these; weights (percent) own contiguous ranges


def sticky_bucket(key: bytes) -> int:
    """Stable across processes and restarts (unlike ``hash()``), uniform, opaque bytes in."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % BUCKETS


@dataclass(frozen=True)
class RouteTable:
    """One endpoint's routing, precomputed for the hot path.

    ``order`` puts the baseline last, so each candidate owns the low end of the bucket range
    ``[0, w)``: raising a candidate's weight only moves keys *to* it, never between candidates
    that keep their weight (with two variants, a key on the candidate stays there as it grows).
    """

    endpoint: str
    baseline: str
    traffic: TrafficState
    faults: Mapping[str, Fault]
    order: tuple[str, ...]
    cumulative: tuple[int, ...]  # percent upper bounds, last == 100
    misroute: tuple[tuple[str, float], ...]  # (version, probability) with misroute_percent > 0
    generation: int = 0
    urls: Mapping[str, str] = field(default_factory=dict)  # arm -> upstream base URL
    sticky_header: str = "x-user-id"
    sticky_cookie: str | None = None

    @classmethod
    def build(
        cls,
        endpoint: str,
        baseline: str,
        versions: Sequence[str],
        traffic: TrafficState,
        faults: Mapping[str, Fault],
        generation: int = 0,
        *,
        urls: Mapping[str, str] | None = None,
        sticky_header: str = "x-user-id",
        sticky_cookie: str | None = None,
    ) -> RouteTable:
        order = tuple([v for v in versions if v != baseline] + [baseline])
        cumulative: list[int] = []
        total = 0
        for v in order:
            total += int(traffic.weights.get(v, 0))
            cumulative.append(total)
        if total != 100:
            raise ValueError(f"weights of {endpoint!r} sum to {total}, not 100")
        misroute = tuple((v, f.misroute_percent / 100.0) for v, f in faults.items() if f.misroute_percent > 0)
        return cls(
            endpoint, baseline, traffic, dict(faults), order, tuple(cumulative), misroute, generation,
            dict(urls or {}), sticky_header, sticky_cookie,
        )  # fmt: skip

    @property
    def shadow(self) -> Shadow | None:
        return self.traffic.shadow

    def by_weight(self, u: float) -> str:
        """``u`` uniform in [0, 1): the variant whose weight range holds it."""
        point = u * 100.0
        for v, upper in zip(self.order, self.cumulative, strict=True):
            if point < upper:
                return v
        return self.order[-1] if self.cumulative[-1] else self.baseline

    def by_bucket(self, bucket: int) -> str:
        return self.by_weight(bucket / BUCKETS)

    def choose(self, key: bytes | None, rand: Callable[[], float]) -> str:
        """The routed variant: sticky bucket when the mode is sticky and a key is present,
        weighted random otherwise; then a misroute fault may take the request."""
        if self.traffic.mode == "sticky" and key:
            variant = self.by_bucket(sticky_bucket(key))
        else:
            variant = self.by_weight(rand())
        for target, p in self.misroute:
            if target != variant and rand() < p:
                return target
        return variant

    def fallback(self, failed: str, rand: Callable[[], float]) -> str | None:
        """Where to retry once after ``failed`` refused the connection: another variant by weight,
        the baseline when the others have no weight, any other version as a last resort."""
        others = [v for v in self.order if v != failed]
        if not others:
            return None
        weighted = [(v, self.traffic.weights.get(v, 0)) for v in others]
        total = sum(w for _, w in weighted)
        if total > 0:
            point = rand() * total
            acc = 0.0
            for v, w in weighted:
                acc += w
                if point < acc:
                    return v
            return weighted[-1][0]
        return self.baseline if self.baseline != failed else others[0]

    def shadow_target(self, routed: str, rand: Callable[[], float]) -> str | None:
        """The version to mirror this request to, or None (no shadow, not sampled, or same variant)."""
        shadow = self.traffic.shadow
        if shadow is None or shadow.percent <= 0 or shadow.version == routed:
            return None
        if shadow.percent >= 100 or rand() * 100.0 < shadow.percent:
            return shadow.version
        return None


# ---------------------------------------------------------------------------
# Shadow comparison
# ---------------------------------------------------------------------------


def _flatten(value: object, out: list[object]) -> None:
    if isinstance(value, list | tuple):
        for item in value:
            _flatten(item, out)
    else:
        out.append(value)


def _same(a: object, b: object, rtol: float, atol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return abs(fa - fb) <= atol + rtol * abs(fb)
    return a == b


def outputs_agree(primary: object, shadow: object, rtol: float = 1e-5, atol: float = 1e-8) -> bool | None:
    """Compare two V2 inference responses by ``outputs[].data`` (matched by output name).

    True/False for comparable answers; None when either is not a V2 response with outputs
    (nothing to compare: counted as a shadow request, not as agreement or disagreement).
    """

    def data_by_name(resp: object) -> dict[str, list[object]] | None:
        if not isinstance(resp, dict) or not isinstance(resp.get("outputs"), list):
            return None
        result: dict[str, list[object]] = {}
        for i, out in enumerate(resp["outputs"]):
            if not isinstance(out, dict) or "data" not in out:
                return None
            flat: list[object] = []
            _flatten(out["data"], flat)
            result[str(out.get("name", i))] = flat
        return result

    a, b = data_by_name(primary), data_by_name(shadow)
    if a is None or b is None:
        return None
    if a.keys() != b.keys():
        return False
    for name, values in a.items():
        other = b[name]
        if len(values) != len(other):
            return False
        if not all(_same(x, y, rtol, atol) for x, y in zip(values, other, strict=True)):
            return False
    return True
