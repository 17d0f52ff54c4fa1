"""A simulated target for fast state-machine tests: a fake clock, a router that records every
traffic change, and looks drawn from seeded binomial traffic (no Prometheus).

The environment a test rollout runs in is the real one of the manifest (its target and,
unless replaced, its router) with only the metrics source swapped for :class:`Sim`, which
keeps the real source's settle time and capabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlserve.metrics import Collected, LookRequest, MetricsUnavailable
from mlserve.project import Project
from mlserve.targets import open_environment
from mlserve.targets.base import Capabilities, Environment, Plan, Router
from mlserve.timefmt import utc

LE = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, "+Inf"]


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += max(s, 0.001)


@dataclass
class FakeRouter:
    """Records every plan applied, as ``(endpoint, {"mode", "weights", "mirror"})``."""

    applied: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_next: int = 0

    def apply(self, endpoint: str, plan: Plan) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("simulated crash while applying traffic")
        self.applied.append(
            (endpoint, {"mode": str(plan.mode), "weights": plan.weights, "mirror": plan.mirror_percent})
        )

    def current(self, endpoint: str) -> Plan | None:
        return None

    # the control arm: started and stopped calls, as ("start" | "stop", endpoint, arm[, version])
    arm_calls: list[tuple[str, ...]] = field(default_factory=list)
    running: dict[str, str] = field(default_factory=dict)
    fail_start: int = 0

    def start_arm(self, endpoint: str, name: str, version: str, *, candidate: str | None = None) -> None:
        if self.fail_start:
            self.fail_start -= 1
            raise RuntimeError("simulated crash while starting the control")
        if self.running.get(name) == version:  # like the real routers: a running arm is adopted
            self.arm_calls.append(("adopt", endpoint, name, version))
            return
        self.arm_calls.append(("start", endpoint, name, version))
        self.running[name] = version

    def stop_arm(self, endpoint: str, name: str) -> None:
        if name in self.running:  # idempotent: an arm that does not run is done
            self.arm_calls.append(("stop", endpoint, name))
            self.running.pop(name, None)

    def arms(self, endpoint: str) -> tuple[str, ...]:
        return tuple(self.running)

    def describe(self) -> str:
        return "fake"


@dataclass
class Sim:
    """Traffic at ``rate`` req/s split by the step's weights; per-variant error rate and a
    latency (seconds) drawn from a lognormal around ``latency``; where the look request names
    prediction metrics, each answered request is a positive prediction with the variant's
    ``positives`` probability."""

    rate: float = 500.0
    errors: dict[str, float] = field(default_factory=lambda: {"v1": 0.0, "v2": 0.0})
    latency: dict[str, float] = field(default_factory=lambda: {"v1": 0.02, "v2": 0.02})
    misroute: float = 0.0  # extra share sent to the candidate
    down: bool = False
    agree: float = 1.0
    positives: dict[str, float] = field(default_factory=lambda: {"v1": 0.1, "v2": 0.1})
    seed: int = 1
    requests: list[LookRequest] = field(default_factory=list)  # every look asked for
    capabilities: Capabilities = field(
        default_factory=lambda: Capabilities(shadow_agreement=True, background_load=False, query_set="local")
    )
    settle: float = 2.5
    _state: dict[float, dict[str, Any]] = field(default_factory=dict)

    def settle_seconds(self) -> float:
        return self.settle

    def look(self, request: LookRequest, previous: Mapping[str, Any] | None) -> Collected:
        self.requests.append(request)
        if self.down:
            raise MetricsUnavailable("Prometheus at http://127.0.0.1:1 did not answer: connection refused")
        anchor, at = request.started_at, request.at
        if at <= anchor:
            raise MetricsUnavailable("the step has just started")
        arms = list(request.variants)
        base, cand = arms[0], arms[-1]
        weights = request.weights
        shadow = request.shadow
        st = self._state.setdefault(
            anchor,
            {"t": anchor, "rng": np.random.default_rng(self.seed + int(anchor) % 1000),
             "v": {v: {"requests": 0, "errors": 0, "hist": [0] * len(LE), "sum": 0.0, "pos": 0} for v in arms},
             "agree": 0, "compared": 0},
        )  # fmt: skip
        rng = st["rng"]
        n = rng.poisson(self.rate * (at - st["t"]))
        st["t"] = at
        if shadow:
            split = {base: n, cand: n}
        elif len(arms) == 2:  # the draws of the two-arm sim the v1-sim fixtures were made with
            n_c = rng.binomial(n, min(1.0, weights[cand] / 100.0 + self.misroute))
            split = {base: n - n_c, cand: n_c}
        else:
            p = np.array([weights.get(v, 0) / 100.0 for v in arms])
            p[-1] = min(1.0, p[-1] + self.misroute)
            rest = max(0.0, 1.0 - p[-1])
            if p[:-1].sum() > 0:
                p[:-1] = p[:-1] / p[:-1].sum() * rest
            split = dict(zip(arms, (int(x) for x in rng.multinomial(n, p / p.sum())), strict=True))
        for v, k in split.items():
            d = st["v"][v]
            # an arm that is no version of the endpoint (a control) serves the baseline's model
            e = rng.binomial(k, self.errors.get(v, self.errors[base]))
            lat = rng.lognormal(np.log(self.latency.get(v, self.latency[base])), 0.3, size=k)
            d["requests"] += int(k)
            d["errors"] += int(e)
            if request.predictions:  # drawn only then: every other test keeps its random stream
                d["pos"] += int(rng.binomial(k - e, self.positives.get(v, self.positives.get(base, 0.0))))
            d["sum"] += float(lat.sum())
            bounds = np.array([b for b in LE if b != "+Inf"], dtype=float)
            d["hist"] = [
                int(a + b) for a, b in zip(d["hist"], [*(lat[:, None] <= bounds).sum(0).tolist(), k], strict=True)
            ]
        if shadow:
            st["compared"] += n
            st["agree"] += int(rng.binomial(n, self.agree))
        look = {
            "at": utc(at, fraction=False),
            "weights": {base: 100, cand: 0} if shadow else dict(weights),
            "variants": {
                v: {"requests": d["requests"], "errors": d["errors"],
                    "latency_seconds": {"le": LE, "counts": d["hist"], "sum": round(d["sum"], 6)}}
                for v, d in st["v"].items()
            },
        }  # fmt: skip
        for v, d in st["v"].items():
            answered = d["requests"] - d["errors"]
            for name in request.predictions:
                look["variants"][v].setdefault("custom", {})[name] = {"numerator": d["pos"], "denominator": answered}
        agreement = {"agree": st["agree"], "compared": st["compared"]} if shadow else None
        return Collected(look, {}, agreement)


def opener(sim: Sim, router: Router | None = None) -> Callable[..., Environment]:
    """What the rollout service opens an environment with: the manifest's real environment,
    its metrics source replaced by ``sim`` (with the real source's settle time and
    capabilities) and, when given, its router by ``router``."""

    def open_env(project: Project, env_name: str | None, _options: Any = None) -> Environment:
        real = open_environment(project, env_name)
        sim.settle = real.metrics.settle_seconds()
        sim.capabilities = real.metrics.capabilities
        return Environment(real.name, real.target, router or real.router, sim)

    return open_env
