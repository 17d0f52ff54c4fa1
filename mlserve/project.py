"""A project on disk: its directory, its manifest, and where mlserve keeps its own files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlserve.errors import UsageError
from mlserve.manifest import MANIFEST_NAME, Manifest, load_manifest


@dataclass(frozen=True)
class Project:
    root: Path
    manifest: Manifest

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def state_dir(self) -> Path:
        """Runtime state (pids, ports, tokens, logs): never committed."""
        return self.root / ".mlserve"

    @property
    def experiments_dir(self) -> Path:
        """Rollout runs and their results: meant to be committed."""
        return self.root / "experiments"

    def environment(self, name: str | None) -> str:
        """Resolve an ``--env`` option: the named one, or the only/first local one."""
        envs = self.manifest.environments
        if name is None:
            local = [n for n, e in envs.items() if e.target == "local"]
            if local:
                return local[0]
            raise UsageError(f"{MANIFEST_NAME} has no local environment; pass --env ({', '.join(envs)})")
        if name not in envs:
            raise UsageError(f"unknown environment {name!r}; {MANIFEST_NAME} defines: {', '.join(envs)}")
        return name

    def endpoint(self, name: str, env: str | None = None) -> str:
        names = list(self.manifest.endpoints_in(env)) if env else list(self.manifest.endpoints)
        if name not in names:
            where = f" in environment {env!r}" if env else ""
            raise UsageError(f"unknown endpoint {name!r}{where}; known: {', '.join(names) or 'none'}")
        return name


def load_project(root: Path) -> Project:
    root = root.resolve()
    if not root.is_dir():
        what = "is a file, not a project directory" if root.exists() else "project directory does not exist"
        raise UsageError(f"{root}: {what}", hint="pass --project-dir DIR, the folder that holds mlserve.toml")
    return Project(root=root, manifest=load_manifest(root / MANIFEST_NAME))
