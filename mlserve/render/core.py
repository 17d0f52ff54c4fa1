"""Rendering an environment: which files, from which templates, written where.

``render_files`` is pure (manifest + traffic state -> {relative path: text}); the
writer puts the files under ``OUT/ENV/`` and removes files an earlier render wrote
that this one no longer produces. A file counts as mlserve's only when it starts with
the rendered-by header, so anything a person put next to the stacks (and terraform's
own working files) is never touched.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve.errors import UsageError
from mlserve.project import Project
from mlserve.render import context as ctxmod
from mlserve.render import engine
from mlserve.render.traffic import EndpointTraffic, resolve

LAYERS = ("cluster", "platform", "kubernetes")
LAYER_DIRS = {"cluster": "terraform/cluster", "platform": "terraform/platform", "kubernetes": "kubernetes"}

HEADER_TEXT = (
    "Rendered by mlserve from mlserve.toml. Do not edit: change the manifest (or templates/) and run `mlserve render`."
)
_HEADERS = {
    ".tf": f"# {HEADER_TEXT}\n\n",
    ".yaml": f"# {HEADER_TEXT}\n",
    ".yml": f"# {HEADER_TEXT}\n",
    ".md": f"<!-- {HEADER_TEXT} -->\n\n",
    ".tpl": "",
}
MARKER = "Rendered by mlserve from mlserve.toml."

CLUSTER_FILES: tuple[str, ...] = (
    "versions.tf",
    "backend.tf",
    "providers.tf",
    "variables.tf",
    "network.tf",
    "iam.tf",
    "eks.tf",
    "node_groups.tf",
    "outputs.tf",
)
PLATFORM_FILES = ("versions.tf", "backend.tf", "providers.tf", "variables.tf", "releases.tf", "outputs.tf")


@dataclass(frozen=True)
class RenderResult:
    """What one environment's render produced and did on disk.

    ``layers`` maps layer name -> files of that layer (paths relative to ``env_dir``),
    ``layer_dirs`` maps layer name -> the folder to run terraform / kubectl in.
    """

    environment: str
    env_dir: Path
    layers: dict[str, list[str]] = field(default_factory=dict)
    layer_dirs: dict[str, Path] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        return sorted(f for fs in self.layers.values() for f in fs)


@dataclass(frozen=True)
class FileDiff:
    path: str  # relative to the stacks root: ENV/...
    status: str  # added | removed | changed
    diff: str = ""


@dataclass(frozen=True)
class CheckResult:
    up_to_date: bool
    environments: list[str]
    files: int
    differences: list[FileDiff] = field(default_factory=list)


def _with_header(path: str, text: str) -> str:
    header = _HEADERS.get(os.path.splitext(path)[1], "")
    return header + text


def _layers_for(project: Project, env_name: str) -> tuple[str, ...]:
    env = project.manifest.environments[env_name]
    if env.target != "kubernetes":
        return ()
    return LAYERS if env.cluster == "aws-eks" else ("platform", "kubernetes")


def render_files(
    project: Project, env_name: str, traffic: Mapping[str, EndpointTraffic | Mapping[str, object]] | None = None
) -> dict[str, dict[str, str]]:
    """layer -> {path relative to the environment folder: content}. Pure: writes nothing."""
    manifest = project.manifest
    if env_name not in manifest.environments:
        raise UsageError(f"unknown environment {env_name!r}; mlserve.toml defines: {', '.join(manifest.environments)}")
    layers = _layers_for(project, env_name)
    if not layers:
        return {}
    endpoints = manifest.endpoints_in(env_name)
    state = resolve(endpoints, traffic)
    jenv = engine.environment(project.root)
    base = ctxmod.environment_context(manifest, env_name, state)
    out: dict[str, dict[str, str]] = {}
    for layer in layers:
        files: dict[str, str] = {}
        prefix = LAYER_DIRS[layer]
        if layer in ("cluster", "platform"):
            names = CLUSTER_FILES if layer == "cluster" else PLATFORM_FILES
            context = dict(base, layer=layer, backend=_backend(manifest, env_name, layer))
            for name in names:
                template = "terraform/common/backend.tf.j2" if name == "backend.tf" else f"terraform/{layer}/{name}.j2"
                text = engine.render_template(jenv, template, context)
                files[f"{prefix}/{name}"] = _with_header(name, text)
        else:
            files.update(_kubernetes_files(jenv, base, prefix, manifest, env_name, state, project.root))
        out[layer] = dict(sorted(files.items()))
    return out


def _backend(manifest: Any, env_name: str, layer: str) -> dict[str, Any] | None:
    b = ctxmod.backend_context(manifest, env_name, layer)
    if b is not None:
        b["width"] = max(len(k) for k in b["config"])
    return b


def _kubernetes_files(
    jenv: Any,
    base: dict[str, Any],
    prefix: str,
    manifest: Any,
    env_name: str,
    state: dict[str, EndpointTraffic],
    root: Path | None = None,
) -> dict[str, str]:
    from mlserve.render import kubernetes

    files = kubernetes.render(jenv, base, manifest, env_name, state, root=root)
    return {f"{prefix}/{p}": _with_header(p, t) for p, t in files.items()}


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _is_owned(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return MARKER in fh.read(400)
    except OSError:
        return False


_TF_WORKING = (".terraform", "terraform.tfstate", ".terraform.lock.hcl", ".tfplan")


def owned_files(env_dir: Path) -> list[str]:
    """Files under ``env_dir`` that an mlserve render wrote (posix paths relative to it)."""
    if not env_dir.is_dir():
        return []
    found = []
    for root, dirs, names in os.walk(env_dir):
        dirs[:] = sorted(d for d in dirs if d != ".terraform")
        for n in sorted(names):
            if any(n.startswith(w) or n.endswith(w) for w in _TF_WORKING):
                continue
            p = Path(root) / n
            if _is_owned(p):
                found.append(p.relative_to(env_dir).as_posix())
    return found


def write_environment(env_dir: Path, env_name: str, layers: dict[str, dict[str, str]]) -> RenderResult:
    env_dir = env_dir.resolve()
    written: list[str] = []
    unchanged: list[str] = []
    wanted = {p for files in layers.values() for p in files}
    for files in layers.values():
        for rel, text in files.items():
            path = env_dir / rel
            if path.is_file() and path.read_text(encoding="utf-8") == text:
                unchanged.append(rel)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".mlserve-tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
            written.append(rel)
    removed = [rel for rel in owned_files(env_dir) if rel not in wanted]
    for rel in removed:
        (env_dir / rel).unlink()
    _prune_empty(env_dir, removed)
    return RenderResult(
        environment=env_name,
        env_dir=env_dir,
        layers={layer: sorted(files) for layer, files in layers.items()},
        layer_dirs={layer: env_dir / LAYER_DIRS[layer] for layer in layers},
        written=sorted(written),
        unchanged=sorted(unchanged),
        removed=sorted(removed),
    )


def _prune_empty(env_dir: Path, removed: list[str]) -> None:
    """Remove the folders that removing stale files left empty (and no others)."""
    for rel in removed:
        folder = (env_dir / rel).parent
        while folder != env_dir and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    if env_dir.is_dir() and removed and not any(env_dir.iterdir()):
        env_dir.rmdir()


def render_environment(
    project: Project,
    env_name: str,
    out_dir: Path | None = None,
    traffic: Mapping[str, EndpointTraffic | Mapping[str, object]] | None = None,
) -> RenderResult:
    """Render one environment into ``out_dir/ENV/`` (default: the project's ``stacks/``).

    A local environment renders nothing (the local target runs processes); its result
    has no layers.
    """
    root = (out_dir if out_dir is not None else project.root / "stacks").resolve()
    layers = render_files(project, env_name, traffic)
    return write_environment(root / env_name, env_name, layers)


def check_environments(
    project: Project,
    env_names: list[str],
    out_dir: Path | None = None,
    traffic: Mapping[str, EndpointTraffic | Mapping[str, object]] | None = None,
    context_lines: int = 3,
    max_diff_lines: int = 40,
    traffic_by_env: Mapping[str, Mapping[str, EndpointTraffic | Mapping[str, object]]] | None = None,
) -> CheckResult:
    """Compare what a render would write with what is on disk; writes nothing there.

    ``traffic_by_env``: a traffic state per environment (a rollout's live traffic), over ``traffic``."""
    root = (out_dir if out_dir is not None else project.root / "stacks").resolve()
    diffs: list[FileDiff] = []
    count = 0
    with tempfile.TemporaryDirectory(prefix="mlserve-render-") as tmp:
        for env_name in env_names:
            layers = render_files(project, env_name, (traffic_by_env or {}).get(env_name, traffic))
            fresh = {p: t for files in layers.values() for p, t in files.items()}
            count += len(fresh)
            # Render into a temporary folder too, so that the comparison sees exactly the
            # bytes a real render would write.
            write_environment(Path(tmp) / env_name, env_name, layers)
            env_dir = root / env_name
            existing = set(owned_files(env_dir))
            for rel in sorted(set(fresh) | existing):
                shown = f"{env_name}/{rel}"
                if rel not in existing:
                    if (env_dir / rel).is_file() and (env_dir / rel).read_text(encoding="utf-8") == fresh[rel]:
                        continue
                    if not (env_dir / rel).exists():
                        diffs.append(FileDiff(shown, "added"))
                        continue
                    old = (env_dir / rel).read_text(encoding="utf-8")
                    diffs.append(
                        FileDiff(shown, "changed", _diff(old, fresh[rel], shown, context_lines, max_diff_lines))
                    )
                elif rel not in fresh:
                    diffs.append(FileDiff(shown, "removed"))
                else:
                    old = (env_dir / rel).read_text(encoding="utf-8")
                    if old != fresh[rel]:
                        diffs.append(
                            FileDiff(shown, "changed", _diff(old, fresh[rel], shown, context_lines, max_diff_lines))
                        )
    return CheckResult(up_to_date=not diffs, environments=list(env_names), files=count, differences=diffs)


def _diff(old: str, new: str, name: str, n: int, limit: int) -> str:
    lines = list(
        difflib.unified_diff(
            old.splitlines(), new.splitlines(), fromfile=f"a/{name}", tofile=f"b/{name}", n=n, lineterm=""
        )
    )
    if len(lines) > limit:
        lines = [*lines[:limit], f"... ({len(lines) - limit} more diff lines)"]
    return "\n".join(lines)


def environments_to_render(project: Project, env: str | None, all_envs: bool) -> list[str]:
    envs = project.manifest.environments
    if env is not None and all_envs:
        raise UsageError("pass either --env or --all, not both")
    if env is not None:
        if env not in envs:
            raise UsageError(f"unknown environment {env!r}; mlserve.toml defines: {', '.join(envs)}")
        return [env]
    if all_envs:
        return sorted(envs)
    kube = sorted(n for n, e in envs.items() if e.target == "kubernetes")
    if not kube:
        raise UsageError("mlserve.toml has no kubernetes environment to render; local environments run processes")
    return kube
