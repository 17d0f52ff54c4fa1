"""A simulated target for fast state-machine tests: a fake clock, a driver that records
every traffic change, and looks drawn from seeded binomial traffic (no Prometheus)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlserve.metrics import MetricsUnavailable
from mlserve.rollout.traffic import Plan

LE = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, "+Inf"]


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += max(s, 0.001)


@dataclass
class FakeDriver:
    applied: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    kind: str = "local"
    source: str = "local"
    namespace: str = ""
    fail_next: int = 0

    def apply(self, endpoint: str, plan: Plan) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("simulated crash while applying traffic")
        self.applied.append((endpoint, plan.to_dict()))

    def query(self) -> Any:
        return None

    def describe(self) -> str:
        return "fake"


@dataclass
class Sim:
    """Traffic at ``rate`` req/s split by the step's weights; per-variant error rate and a
    latency (seconds) drawn from a lognormal around ``latency``."""

    rate: float = 500.0
    errors: dict[str, float] = field(default_factory=lambda: {"v1": 0.0, "v2": 0.0})
    latency: dict[str, float] = field(default_factory=lambda: {"v1": 0.02, "v2": 0.02})
    misroute: float = 0.0  # extra share sent to the candidate
    down: bool = False
    agree: float = 1.0
    seed: int = 1
    _state: dict[float, dict[str, Any]] = field(default_factory=dict)

    def __call__(self, driver: Any, query: Any, **kw: Any) -> Any:
        from mlserve.rollout.looks import Seen

        if self.down:
            raise MetricsUnavailable("Prometheus at http://127.0.0.1:1 did not answer: connection refused")
        anchor, at = kw["anchor"], kw["at"]
        if at <= anchor:
            raise MetricsUnavailable("the step has just started")
        base, cand = kw["baseline"], kw["candidate"]
        weights: Mapping[str, int] = kw["weights"]
        mode = kw["mode"]
        st = self._state.setdefault(
            anchor,
            {"t": anchor, "rng": np.random.default_rng(self.seed + int(anchor) % 1000),
             "v": {v: {"requests": 0, "errors": 0, "hist": [0] * len(LE), "sum": 0.0} for v in (base, cand)},
             "agree": 0, "compared": 0},
        )  # fmt: skip
        rng = st["rng"]
        n = rng.poisson(self.rate * (at - st["t"]))
        st["t"] = at
        share = weights[cand] / 100.0 if mode != "shadow" else 0.0
        share = min(1.0, share + self.misroute)
        n_c = rng.binomial(n, share)
        split = {base: n - n_c, cand: n_c} if mode != "shadow" else {base: n, cand: n}
        for v, k in split.items():
            d = st["v"][v]
            e = rng.binomial(k, self.errors[v])
            lat = rng.lognormal(np.log(self.latency[v]), 0.3, size=k)
            d["requests"] += int(k)
            d["errors"] += int(e)
            d["sum"] += float(lat.sum())
            bounds = np.array([b for b in LE if b != "+Inf"], dtype=float)
            d["hist"] = [
                int(a + b) for a, b in zip(d["hist"], [*(lat[:, None] <= bounds).sum(0).tolist(), k], strict=True)
            ]
        if mode == "shadow":
            st["compared"] += n
            st["agree"] += int(rng.binomial(n, self.agree))
        look = {
            "at": datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "weights": {base: 100, cand: 0} if mode == "shadow" else dict(weights),
            "variants": {
                v: {"requests": d["requests"], "errors": d["errors"],
                    "latency_seconds": {"le": LE, "counts": d["hist"], "sum": round(d["sum"], 6)}}
                for v, d in st["v"].items()
            },
        }  # fmt: skip
        agreement = {"agree": st["agree"], "compared": st["compared"]} if mode == "shadow" else None
        return Seen(look, {}, agreement)
