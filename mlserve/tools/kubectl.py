"""kubectl, always with an explicit ``--context``, through the one program runner.

An explicit context (never "whatever kubeconfig points at now") is what keeps a deploy
meant for staging away from production. Server-side apply with a named field manager
lets a person see in ``managedFields`` which fields mlserve owns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlserve.errors import ToolError
from mlserve.tools import Completed, run

FIELD_MANAGER = "mlserve"
_NAMESPACE_MISSING = re.compile(r'namespaces "[^"]+" not found')


@dataclass(frozen=True)
class Kubectl:
    context: str | None
    timeout: float = 300.0
    env: Mapping[str, str] | None = None

    def argv(self, *args: str) -> list[str]:
        ctx = ["--context", self.context] if self.context else []
        return ["kubectl", *ctx, *args]

    def _run(
        self, args: Sequence[str], *, what: str, ok: Sequence[int] = (0,), timeout: float | None = None
    ) -> Completed:
        done = run(self.argv(*args), env=self.env, timeout=timeout or self.timeout, check=False)
        if done.returncode not in ok:
            detail = (done.stderr.strip() or done.stdout.strip())[-2000:] or f"exit status {done.returncode}"
            ctx = f" (context {self.context})" if self.context else ""
            raise ToolError(
                f"kubectl {what} failed{ctx}: {detail}",
                stdout=done.stdout,
                stderr=done.stderr,
                returncode=done.returncode,
            )
        return done

    def diff(self, directory: Path) -> bool:
        """True when applying the kustomization would change the cluster (``kubectl diff`` exit 1).

        On a cluster without the namespace yet, the API server refuses the dry run of the
        objects inside it (``namespaces "X" not found``): everything is new, so that is a change."""
        args = ["diff", "--server-side", f"--field-manager={FIELD_MANAGER}", "-k", str(directory)]
        done = run(self.argv(*args), env=self.env, timeout=self.timeout, check=False)
        if done.returncode not in (0, 1) and _NAMESPACE_MISSING.search(done.stderr or ""):
            return True
        if done.returncode not in (0, 1):
            self._run(args, what=f"diff -k {directory}", ok=(0, 1))  # raises with the details
        return done.returncode == 1

    def apply(self, directory: Path) -> Completed:
        return self._run(
            ["apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-k", str(directory)],
            what=f"apply -k {directory}",
        )

    def kustomize(self, directory: Path) -> str:
        """The objects ``apply -k`` would send (``kubectl kustomize``; needs no cluster)."""
        done = run(["kubectl", "kustomize", str(directory)], env=self.env, timeout=self.timeout, check=False)
        if done.returncode != 0:
            raise ToolError(f"kubectl kustomize {directory} failed: {done.stderr.strip()[-2000:]}",
                            stdout=done.stdout, stderr=done.stderr, returncode=done.returncode)  # fmt: skip
        return done.stdout

    def apply_file(self, path: Path, *, what: str) -> Completed:
        """Server-side apply of the objects in one file: one request per object (the router
        applies a route as one object). Conflicts with another field manager fail it."""
        return self._run(["apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", str(path)], what=what)

    def delete(self, directory: Path) -> Completed:
        return self._run(
            ["delete", "--ignore-not-found=true", "--wait=true", "-k", str(directory)],
            what=f"delete -k {directory}",
        )

    def delete_object(self, kind: str, name: str, *, namespace: str) -> Completed:
        """Delete one named object (server-side apply never prunes what a render dropped)."""
        return self._run(
            ["delete", "-n", namespace, "--ignore-not-found=true", "--wait=false", kind, name],
            what=f"delete {kind} {name} in {namespace}",
        )

    def wait(self, resource: str, condition: str, *, namespace: str, timeout: float) -> Completed:
        """Bounded readiness wait on every object of one kind in a namespace."""
        return self._run(
            ["wait", "-n", namespace, f"--for={condition}", f"--timeout={int(timeout)}s", resource, "--all"],
            what=f"wait for {resource} in {namespace} ({condition}, {int(timeout)}s)",
            timeout=timeout + 30,
        )

    def wait_for(self, obj: str, condition: str, *, namespace: str, timeout: float) -> Completed:
        """Bounded readiness wait on one object (``TYPE/NAME``)."""
        return self._run(
            ["wait", "-n", namespace, f"--for={condition}", f"--timeout={int(timeout)}s", obj],
            what=f"wait for {obj} in {namespace} ({condition}, {int(timeout)}s)",
            timeout=timeout + 30,
        )

    def get_json(
        self, resource: str, *, namespace: str, request_timeout: float = 5.0, selector: str | None = None
    ) -> dict[str, Any]:
        """One object (``TYPE/NAME``) or a list (``TYPE``, optionally ``-l selector``) as JSON."""
        args = ["get", resource, "-n", namespace, "-o", "json", f"--request-timeout={int(request_timeout)}s"]
        if selector:
            args += ["-l", selector]
        done = self._run(args, what=f"get {resource} -n {namespace}", timeout=request_timeout + 10)
        try:
            data = json.loads(done.stdout or "{}")
        except ValueError as exc:
            raise ToolError(f"kubectl get {resource}: unreadable JSON ({exc})") from None
        return data if isinstance(data, dict) else {}
