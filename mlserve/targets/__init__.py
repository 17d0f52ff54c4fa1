"""Deployment targets: where an environment's endpoints run.

``get_target`` is the one dispatch on ``environments.NAME.target``; each target
offers deploy / status / down / logs / set_traffic for the commands and rollouts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlserve.errors import UsageError

if TYPE_CHECKING:
    from mlserve.project import Project
    from mlserve.targets.kubernetes import KubernetesTarget
    from mlserve.targets.local import LocalTarget


def get_target(project: Project, env_name: str | None) -> LocalTarget | KubernetesTarget:
    """The target that serves environment ``env_name`` (``None``: the first local one)."""
    name = project.environment(env_name)
    env = project.manifest.environments[name]
    if env.target == "local":
        from mlserve.targets.local import LocalTarget

        return LocalTarget(project, name)
    if env.target == "kubernetes":
        from mlserve.targets.kubernetes import KubernetesTarget

        return KubernetesTarget(project, name)
    local = [n for n, e in project.manifest.environments.items() if e.target == "local"]
    raise UsageError(
        f"environment {name!r} has target = {env.target!r}: `mlserve deploy` supports only target = 'local' "
        "for now (processes on this machine); render its Kubernetes stacks with `mlserve render`",
        hint=f"local environments in this manifest: {', '.join(local)}" if local else None,
    )
