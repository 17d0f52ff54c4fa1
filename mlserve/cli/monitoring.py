"""For ``mlserve monitor`` and ``mlserve dashboard``: which Prometheus an environment's monitoring
reads, how its metrics are named there, and their duration options."""

from __future__ import annotations

from dataclasses import dataclass

from mlserve.errors import UsageError
from mlserve.manifest.units import parse_duration
from mlserve.project import Project


@dataclass(frozen=True)
class Source:
    env: str
    prometheus_url: str
    source: str  # local | istio | seldon
    namespace: str


def source_for(project: Project, env: str | None) -> Source:
    env_name = project.environment(env)
    e = project.manifest.environments[env_name]
    if e.target == "local":
        from mlserve.targets.local import LocalTarget

        return Source(env_name, LocalTarget(project, env_name).prometheus_url(), "local", "")
    if not e.prometheus_url:
        raise UsageError(f"mlserve.toml: environments.{env_name}.prometheus_url: is needed to monitor this environment")
    return Source(env_name, e.prometheus_url, "seldon" if e.serving == "seldon" else "istio", e.namespace or "")


def duration_option(value: str, option: str, low: float, high: float) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if not low <= seconds <= high:
        raise UsageError(f"{option}: must be between {low:g}s and {high:g}s (got {value})")
    return seconds
