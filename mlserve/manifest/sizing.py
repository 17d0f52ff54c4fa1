"""How many replicas an arm of a rollout runs, from its share of the traffic and the policy.

Shared by the renderer (the replica range it writes into each arm's object) and the GPU plan
(:mod:`mlserve.capacity`), so that what is planned is what is applied.
"""

from __future__ import annotations

import math

from mlserve.manifest.models import Endpoint


def arm_replicas(ep: Endpoint, role: str, share: int) -> tuple[int, int]:
    """(min, max) replicas of an arm with ``share`` percent of the traffic."""
    lo, hi = ep.autoscaling.min_replicas, ep.autoscaling.max_replicas
    policy = ep.rollout
    primary = role in ("primary", "baseline")
    scaled = policy.scale_primary if primary else policy.canary_size == "weight"
    if not scaled or share >= 100:
        return lo, hi
    frac = max(0, share) / 100.0
    return (min(lo, max(1, math.ceil(lo * frac))) if lo else 0), max(1, math.ceil(hi * frac))
