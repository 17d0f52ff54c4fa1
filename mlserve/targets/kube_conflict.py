"""A route changed by someone else: what both cluster routers do with a server-side apply conflict.

Another field manager owning a field mlserve applies (someone ran ``kubectl edit`` on the
VirtualService or the HTTPRoute) makes the API server refuse the apply with a conflict; the
rollout stops there with :class:`RouteConflict` (exit 1), naming the fields and the manager,
and nothing more is applied. The run keeps its pending transition, so a later ``rollout run``
retries it once the route is sorted out.
"""

from __future__ import annotations

import re

from mlserve.errors import ToolError

_CONFLICT = re.compile(r'conflicts? with "([^"]+)"(?: using [^:]+)?:\s*(\S+)')


class RouteConflict(ToolError):
    """Another field manager changed what the router applies: the rollout stops here."""


def conflict_or_error(exc: ToolError, what: str, context: str) -> ToolError:
    """A clear stop for a server-side apply conflict; other kubectl failures pass through."""
    text = f"{exc.stderr}\n{exc.stdout}\n{exc.message}"
    found = sorted(set(_CONFLICT.findall(text)))
    if "conflict" not in text.lower() or not found:
        return exc
    owners = "; ".join(f"{path} is managed by {manager!r}" for manager, path in found)
    return RouteConflict(
        f"{what} was refused by the cluster: {owners}. Someone changed it outside mlserve, so the rollout "
        "stops here and applies nothing more (the traffic stays as the cluster has it now).",
        hint=(
            f"see who changed what: kubectl --context {context} get {what.split()[0]} --show-managed-fields -o yaml; "
            "undo the change (or remove that manager's fields), then `mlserve rollout run` retries the same step"
        ),
        stdout=exc.stdout,
        stderr=exc.stderr,
        returncode=exc.returncode,
    )
