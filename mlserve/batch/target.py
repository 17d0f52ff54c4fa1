"""Where a batch job sends its rows: the one seam between mlserve.batch and the targets.

``endpoint_base`` answers "the URL of endpoint E, version V, in environment X" and how
to pin the version there. Everything else in the package takes that answer as given.
"""

from __future__ import annotations

from typing import Any

from mlserve.errors import UsageError


def endpoint_base(project: Any, env_name: str, url: str | None) -> tuple[str, str]:
    """(base URL, how to pin a version).

    The local target's gateway (or any mlserve gateway or MLServer given by ``--url`` on a
    local environment) serves ``/v2/models/E/versions/V/infer``: pin ``"path"``. A
    cluster's ingress routes on the ``x-mlserve-variant`` header that the rendered
    VirtualService matches: pin ``"header"``; the answering variant is checked either way.
    """
    from mlserve.loadtest.core import resolve_target

    env = project.manifest.environments[env_name]
    base = resolve_target(project, env_name, url)
    if env.target == "local":
        return base, "path"
    if env.target == "kubernetes":
        return base, "header"
    raise UsageError(f"environment {env_name!r}: target {env.target!r} cannot run batch jobs")
