"""Render a manifest into Terraform and Kubernetes stacks (``stacks/ENV/...``).

Public API: :func:`render_environment` writes one environment's layers and returns a
:class:`RenderResult`; :func:`render_files` is the pure part; traffic states are
:class:`EndpointTraffic` values keyed by endpoint.
"""

from __future__ import annotations

from mlserve.render.core import (
    LAYER_DIRS,
    LAYERS,
    CheckResult,
    FileDiff,
    RenderResult,
    check_environments,
    environments_to_render,
    render_environment,
    render_files,
)
from mlserve.render.traffic import EndpointTraffic

__all__ = [
    "LAYERS",
    "LAYER_DIRS",
    "CheckResult",
    "EndpointTraffic",
    "FileDiff",
    "RenderResult",
    "check_environments",
    "environments_to_render",
    "render_environment",
    "render_files",
]
