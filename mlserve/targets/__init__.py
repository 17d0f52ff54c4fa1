"""Deployment targets: where an environment's endpoints run, and the one dispatch on
``environments.NAME.target``.

Each target module has one factory that returns an :class:`~mlserve.targets.base.Environment`:
its :class:`~mlserve.targets.base.Target` (plan, deploy, status, teardown, logs), its
:class:`~mlserve.targets.base.Router` (apply a traffic plan, read the current one) and its
:class:`~mlserve.targets.base.MetricsSource` (take a look, settle time, capabilities). The
CLI's ``deploy``, ``down``, ``logs``, ``status``, ``plan`` and ``destroy`` and every rollout
go through :func:`open_environment`; nothing else asks which target an environment has.

Targets today: ``local`` (processes on this machine: MLServer, mlserve's gateway, a real
Prometheus) and ``kubernetes`` (Terraform layers and ``kubectl apply`` of KServe or Seldon
objects behind Istio). docs/architecture.md shows how to add one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mlserve.errors import UsageError

if TYPE_CHECKING:
    from mlserve.project import Project
    from mlserve.targets.base import Environment, Options, Target

# environments.NAME.target -> "module:factory", imported on first use (the CLI starts fast)
FACTORIES: dict[str, str] = {
    "local": "mlserve.targets.local:open_local",
    "kubernetes": "mlserve.targets.kubernetes:open_kubernetes",
}


def open_environment(project: Project, env_name: str | None, options: Options | None = None) -> Environment:
    """The three interfaces of environment ``env_name`` (``None``: the first local one, or the
    project's local processes when the manifest has no local environment)."""
    from mlserve.targets.base import Options

    kind = _kind(project, env_name)
    module, _, factory = FACTORIES[kind].partition(":")
    opened: Environment = getattr(importlib.import_module(module), factory)(
        project, _name(project, env_name), options or Options()
    )
    return opened


def open_target(project: Project, env_name: str | None, options: Options | None = None) -> Target:
    return open_environment(project, env_name, options).target


def _name(project: Project, env_name: str | None) -> str | None:
    local = [n for n, e in project.manifest.environments.items() if e.target == "local"]
    if env_name is None and not local:
        return None
    return project.environment(env_name)


def _kind(project: Project, env_name: str | None) -> str:
    name = _name(project, env_name)
    if name is None:
        return "local"
    kind = project.manifest.environments[name].target
    if kind in FACTORIES:
        return kind
    local = [n for n, e in project.manifest.environments.items() if e.target == "local"]
    raise UsageError(
        f"environment {name!r} has target = {kind!r}: `mlserve deploy` supports only target = 'local' "
        "for now (processes on this machine); render its Kubernetes stacks with `mlserve render`",
        hint=f"local environments in this manifest: {', '.join(local)}" if local else None,
    )
