"""Traffic state: the only input of a render besides the manifest.

A rollout moves traffic by re-rendering with a new state; the state ends up in the
kubernetes folder's ``traffic.yaml`` patch and nowhere else, so a weight change is a
one-file diff.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from mlserve.errors import UsageError
from mlserve.manifest.models import Endpoint

TrafficMode = Literal["stable", "shadow", "canary", "ab"]
MODES: tuple[str, ...] = ("stable", "shadow", "canary", "ab")


@dataclass(frozen=True)
class EndpointTraffic:
    """Where one endpoint's requests go.

    ``weights`` maps arm -> percent of live traffic (sums to 100; an arm is named after its
    version, except the control); ``shadow`` is the percent of requests mirrored to the
    candidate (responses discarded). ``control`` names a rollout's control arm: one more
    workload of the baseline version, with its own name, routes and metrics.
    """

    baseline: str
    candidate: str | None = None
    mode: TrafficMode = "stable"
    weights: Mapping[str, int] = field(default_factory=dict)
    shadow: int = 0
    control: str | None = None

    @property
    def versions(self) -> tuple[str, ...]:
        """Versions that run (baseline first)."""
        return (self.baseline,) if self.candidate is None else (self.baseline, self.candidate)

    @property
    def arms(self) -> tuple[str, ...]:
        """Arms that run: the versions, with the control (if any) after the baseline."""
        if self.control is None:
            return self.versions
        return (self.baseline, self.control, *self.versions[1:])

    def weight(self, version: str) -> int:
        if not self.weights:
            return 100 if version == self.baseline else 0
        return int(self.weights.get(version, 0))


def stable(endpoint: Endpoint) -> EndpointTraffic:
    return EndpointTraffic(baseline=endpoint.baseline, weights={endpoint.baseline: 100})


def resolve(
    endpoints: Mapping[str, Endpoint], traffic: Mapping[str, EndpointTraffic | Mapping[str, object]] | None
) -> dict[str, EndpointTraffic]:
    """Fill in the stable state for endpoints without one, and check what was given."""
    traffic = dict(traffic or {})
    unknown = sorted(set(traffic) - set(endpoints))
    if unknown:
        raise UsageError(f"traffic state names unknown endpoint(s): {', '.join(unknown)}")
    out: dict[str, EndpointTraffic] = {}
    for name, ep in sorted(endpoints.items()):
        given = traffic.get(name)
        if given is None:
            out[name] = stable(ep)
            continue
        state = given if isinstance(given, EndpointTraffic) else _from_mapping(name, given)
        _check(name, ep, state)
        out[name] = state
    return out


def _from_mapping(name: str, data: Mapping[str, object]) -> EndpointTraffic:
    extra = sorted(set(data) - {"baseline", "candidate", "mode", "weights", "shadow", "control"})
    if extra:
        raise UsageError(f"traffic state for {name!r}: unknown key(s) {', '.join(extra)}")
    try:
        weights = {str(k): int(v) for k, v in dict(data.get("weights") or {}).items()}  # type: ignore[call-overload]
        return EndpointTraffic(
            baseline=str(data["baseline"]),
            candidate=None if data.get("candidate") is None else str(data["candidate"]),
            mode=str(data.get("mode", "stable")),  # type: ignore[arg-type]
            weights=weights,
            shadow=int(data.get("shadow", 0)),  # type: ignore[call-overload]
            control=None if data.get("control") is None else str(data["control"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"traffic state for {name!r} is malformed: {exc}") from None


def _check(name: str, ep: Endpoint, t: EndpointTraffic) -> None:
    where = f"traffic state for endpoint {name!r}"
    if t.mode not in MODES:
        raise UsageError(f"{where}: mode must be one of {', '.join(MODES)} (got {t.mode!r})")
    for v in t.versions:
        if v not in ep.versions:
            raise UsageError(f"{where}: {v!r} is not a version of this endpoint ({', '.join(sorted(ep.versions))})")
    if t.candidate == t.baseline:
        raise UsageError(f"{where}: candidate and baseline are the same version ({t.baseline!r})")
    if t.mode != "stable" and t.candidate is None:
        raise UsageError(f"{where}: mode {t.mode!r} needs a candidate")
    if not 0 <= t.shadow <= 100:
        raise UsageError(f"{where}: shadow must be between 0 and 100 (got {t.shadow})")
    if t.control is not None and (t.control in ep.versions or t.candidate is None):
        raise UsageError(f"{where}: control arm {t.control!r} must be a rollout's third arm, not a version")
    if t.weights:
        bad = sorted(set(t.weights) - set(t.arms))
        if bad:
            raise UsageError(f"{where}: weights name version(s) that are not running: {', '.join(bad)}")
        if any(w < 0 or w > 100 for w in t.weights.values()) or sum(t.weights.values()) != 100:
            raise UsageError(f"{where}: weights must be between 0 and 100 and sum to 100 (got {dict(t.weights)})")
