"""``mlserve batch --rayjob FILE``: the same job as a KubeRay RayJob on a cluster environment.

KubeRay (the Ray project's operator) starts a Ray cluster for the job, runs the
entrypoint on it and tears it down. The entrypoint is ``mlserve batch --engine ray
--ray-address auto`` itself, so the cluster run has the same chunks, journal, output and
bad-row handling as a local one. The input, output and job state must be on a volume
every Ray pod mounts (a ReadWriteMany PersistentVolumeClaim at ``/data``); the manifest
travels in a ConfigMap. A resubmission (``backoffLimit``) resumes from the journal.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from mlserve import __version__
from mlserve.errors import UsageError
from mlserve.fsutil import atomic_write_text

RAY_VERSION = "2.60.0"
RAY_IMAGE = f"docker.io/rayproject/ray:{RAY_VERSION}-py311"
DATA_MOUNT = "/data"
PROJECT_MOUNT = "/etc/mlserve"
DEFAULT_CLAIM = "mlserve-batch-data"


@dataclass(frozen=True)
class RayJobFile:
    path: str
    name: str
    namespace: str
    entrypoint: str
    workers: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def describe(self) -> str:
        return f"RayJob {self.namespace}/{self.name} with {self.workers} worker(s); apply it with kubectl apply -f"


def in_cluster_url(serving: str, endpoint: str, version: str, namespace: str) -> str:
    """The Service of one version's own workload: no routing decides which version answers."""
    if serving == "kserve":
        return f"http://{endpoint}-{version}-predictor.{namespace}.svc.cluster.local"
    return f"http://{endpoint}-{version}.{namespace}.svc.cluster.local:8000"


def _on_volume(path: Any, what: str) -> str:
    p = PurePosixPath(str(path))
    if not p.is_absolute() or DATA_MOUNT not in [str(x) for x in p.parents]:
        raise UsageError(
            f"--{what}: {path} must be a path under {DATA_MOUNT}/ for a RayJob (the shared volume every Ray pod mounts)"
        )
    return str(p)


def rayjob_context(project: Any, options: Any, claim: str = DEFAULT_CLAIM) -> dict[str, Any]:
    env_name = project.environment(options.env)
    env = project.manifest.environments[env_name]
    if env.target != "kubernetes":
        raise UsageError(
            f"--rayjob: environment {env_name!r} is local; a RayJob is for kubernetes environments",
            hint="run the job here with --engine ray",
        )
    project.endpoint(options.endpoint, env_name)
    ep = project.manifest.endpoints[options.endpoint]
    version = options.version or ep.baseline
    if version not in ep.versions:
        raise UsageError(f"--version: endpoint {options.endpoint!r} has no version {version!r}")
    namespace = env.namespace or "default"
    inp = _on_volume(options.input, "input")
    out = _on_volume(options.output, "output")
    url = options.url or in_cluster_url(env.serving or "kserve", options.endpoint, version, namespace)
    argv = ["mlserve", "--project-dir", PROJECT_MOUNT, "batch", options.endpoint, "--env", env_name]
    argv += ["--version", version, "--input", inp, "--output", out, "--url", url]
    argv += ["--engine", "ray", "--ray-address", "auto", "--ray-actors", str(options.ray_actors)]
    argv += ["--state-dir", f"{DATA_MOUNT}/.mlserve-batch"]
    argv += ["--batch-size", str(options.batch_size), "--chunk-size", str(options.chunk_size)]
    argv += ["--concurrency", str(options.concurrency), "--retries", str(options.retries)]
    argv += ["--id-column", options.id_column]
    for flag, values in (
        ("--features", options.features),
        ("--exclude", options.exclude),
        ("--keep", options.keep),
        ("--outputs", options.outputs),
    ):
        if values:
            argv += [flag, ",".join(values)]
    if options.errors:
        argv += ["--errors", _on_volume(options.errors, "errors")]
    entrypoint = shlex.join(argv)
    digest = hashlib.sha256(entrypoint.encode()).hexdigest()[:8]
    name = f"batch-{options.endpoint}-{version}"[:50].rstrip("-") + f"-{digest}"
    manifest_text = project.manifest_path.read_text(encoding="utf-8")
    return {
        "project": {"name": project.manifest.project.name},
        "env": {"name": env_name},
        "namespace": namespace,
        "job": {
            "name": name,
            "configmap": f"{name}-project",
            "labels": {
                "mlserve.io/endpoint": options.endpoint,
                "mlserve.io/version": version,
                "mlserve.io/job": "batch",
            },
            "input": inp,
            "output": out,
            "manifest": manifest_text,
            "entrypoint": entrypoint,
            "runtime_env": f"pip:\n  - mlserve=={__version__}\n",
            "ttl": 3600,
            "deadline": 24 * 3600,
            "backoff_limit": 2,
            "ray_version": RAY_VERSION,
            "image": RAY_IMAGE,
            "cpu": "1",
            "memory": "2Gi",
            "workers": options.ray_actors,
            "claim": claim,
            "data_mount": DATA_MOUNT,
            "project_mount": PROJECT_MOUNT,
        },
    }


def render_rayjob(project: Any, options: Any) -> tuple[str, dict[str, Any]]:
    from mlserve.render import engine

    ctx = rayjob_context(project, options)
    jenv = engine.environment(project.root)
    return engine.render_template(jenv, "kubernetes/ray/rayjob.yaml.j2", ctx), ctx


def write_rayjob(project: Any, options: Any, path: Any) -> RayJobFile:
    text, ctx = render_rayjob(project, options)
    atomic_write_text(path, text)
    job = ctx["job"]
    return RayJobFile(str(path), job["name"], ctx["namespace"], job["entrypoint"], job["workers"])
