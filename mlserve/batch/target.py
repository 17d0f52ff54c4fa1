"""Where a batch job sends its rows: the one seam between mlserve.batch and the targets.

``endpoint_base`` answers "the URL of endpoint E, version V, in environment X" and how
to pin the version there, from the environment's :class:`~mlserve.targets.base.Target`
(opened by the factory): its ``entry_url()`` and its ``access``. It never asks which target
the environment has. Everything else in the package takes that answer as given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlserve.errors import UsageError

if TYPE_CHECKING:
    from mlserve.project import Project
    from mlserve.targets.base import Pin


def endpoint_base(project: Project, env_name: str, url: str | None) -> tuple[str, Pin]:
    """(base URL, how to pin a version).

    ``--url`` wins over the target's own entry point (the local gateway's); a target that
    does not know its entry point (a cluster behind its ingress) needs ``--url``. A local
    target's URL must be on loopback. Path or header pinning, the answering variant is
    checked either way.
    """
    from mlserve.loadtest.core import check_url
    from mlserve.targets import open_target

    target = open_target(project, env_name)
    base = url if url is not None else target.entry_url()
    if base is None:
        raise UsageError(
            f"environment {env_name!r}: mlserve does not know its ingress URL",
            hint="pass --url with the endpoint's ingress (gateway) base URL",
        )
    return check_url(base, loopback_only=target.access.loopback_only), target.access.pin
