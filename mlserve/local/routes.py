"""Which upstream each arm of the gateway routes to *now*: pure, computed by the supervisor.

Deploy writes the desired gateway config (every arm pointing at the model server it plans)
into ``desired.json``; the supervisor turns it into the config the running gateway gets, one
step at a time, so that a model server receives traffic only once it is ready and loses it
before it is stopped:

- an arm whose planned server has been healthy routes to it;
- otherwise, while the server it replaces still runs, the arm keeps routing to that one
  (a changed version is started beside the old one, on new ports);
- otherwise a brand-new arm is left out of the route table until its server is ready (it
  has no weight yet, so nothing is lost); the baseline is always routed.

``complete`` says whether the result is the desired config itself: only then is the
reconfiguration over (and the servers it replaced can be drained and stopped).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ArmServer:
    """What the supervisor knows about the server planned for one arm."""

    endpoint: str
    arm: str
    planned_url: str
    ready_url: str | None  # the planned server once it has been healthy
    predecessor_url: str | None = None  # the server it replaces, while that one still runs


@dataclass(frozen=True)
class Routes:
    config: dict[str, Any]  # a mlserve.gateway/v1 document
    complete: bool
    urls: frozenset[str]  # every upstream the config routes to
    digest: str


def effective(desired: Mapping[str, Any], servers: Mapping[tuple[str, str], ArmServer]) -> Routes:
    doc = copy.deepcopy(dict(desired))
    complete = True
    for name, ep in (doc.get("endpoints") or {}).items():
        versions: dict[str, str] = ep.get("versions") or {}
        for arm in list(versions):
            server = servers.get((name, arm))
            if server is None:  # not a process the supervisor runs: taken as written
                continue
            if server.ready_url is not None:
                versions[arm] = server.ready_url
                complete = complete and server.ready_url == server.planned_url
                continue
            complete = False
            if server.predecessor_url is not None:
                versions[arm] = server.predecessor_url
            elif arm != ep.get("baseline"):
                del versions[arm]
                (ep.get("faults") or {}).pop(arm, None)
                traffic = ep.get("traffic") or {}
                weights = traffic.get("weights") or {}
                moved = int(weights.pop(arm, 0))
                if moved and ep.get("baseline") in weights:
                    weights[ep["baseline"]] += moved
                if (traffic.get("shadow") or {}).get("version") == arm:
                    traffic["shadow"] = None
    urls = frozenset(u for ep in (doc.get("endpoints") or {}).values() for u in (ep.get("versions") or {}).values())
    return Routes(doc, complete, urls, digest(doc))


def digest(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]
