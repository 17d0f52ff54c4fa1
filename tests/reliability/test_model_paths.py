"""Model URIs: relative paths stay inside the project, absolute paths are explicit.

Decision on symbolic links: a *relative* model_uri must resolve (symlinks followed) to a
path inside the project; a symlink inside the project that points elsewhere is refused by
the local target with a message saying to write the absolute path instead. A repository
can carry symlinks, so a relative path in a reviewed manifest must not be able to reach
``~/.aws`` or ``/etc`` unnoticed; an absolute path says what it reads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mlserve.errors import TargetError
from mlserve.local.servers import resolve_model_path
from mlserve.manifest.models import Version
from tests.conftest import run_cli
from tests.reliability.conftest import Recorder

ESCAPES = [
    "../outside",
    "../../etc/passwd",
    "models/../../outside",
    "./../outside",
    "models/fraud/../../../outside",
    "file://../outside",
    "file://models/../../outside",
    "file:///tmp/../etc/passwd",
    "models/fraud/v1/..",
    "..",
]


def _set_uri(project: Path, uri: str) -> None:
    manifest = project / "mlserve.toml"
    text = manifest.read_text(encoding="utf-8")
    new = text.replace('model_uri = "models/fraud/v2"', f'model_uri = "{uri}"', 1)
    assert new != text
    manifest.write_text(new, encoding="utf-8")


@pytest.mark.parametrize("uri", ESCAPES)
def test_manifest_rejects_dotdot_escapes(project: Path, uri: str, reliability: Recorder) -> None:
    _set_uri(project, uri)
    res = run_cli("--project-dir", str(project), "validate")
    reliability.case(
        "paths",
        f"manifest: model_uri = {uri!r}",
        expected="`mlserve validate` exit 2 naming endpoints.fraud.versions.v2.model_uri",
        measured=f"exit {res.exit_code}: {res.stderr.strip().splitlines()[0][:120] if res.stderr.strip() else ''}",
    )
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert re.search(r"mlserve\.toml:\d+: endpoints\.fraud\.versions\.v2\.model_uri: ", res.stderr), res.stderr


def _version(uri: str) -> Version:
    """A Version that skips the manifest's checks: the local target must hold on its own."""
    return Version.model_construct(model_uri=uri)


def test_local_target_resolves_inside_the_project(project: Path, tmp_path: Path, reliability: Recorder) -> None:
    root = project.resolve()
    outside = tmp_path / "outside-model"
    outside.mkdir()
    (outside / "model.joblib").write_bytes(b"x")
    (root / "models" / "escape").symlink_to(outside, target_is_directory=True)
    (root / "models" / "inner").symlink_to(root / "models" / "fraud" / "v1", target_is_directory=True)

    results: list[tuple[str, str, str]] = []

    def attempt(name: str, uri: str, expected: str) -> str:
        try:
            got = f"resolved to {resolve_model_path(root, 'fraud', 'v2', _version(uri))}"
        except TargetError as err:
            got = f"refused: {err.message}"
        results.append((name, expected, got))
        return got

    inside = attempt("relative path", "models/fraud/v1", "resolved inside the project")
    assert inside == f"resolved to {root / 'models/fraud/v1'}"
    via_inner = attempt("symlink that stays inside", "models/inner", "resolved inside the project")
    assert via_inner == f"resolved to {root / 'models/fraud/v1'}"
    for uri in ("../outside-model", "models/../../outside-model", "file://../outside-model"):
        got = attempt(f"'..' escape {uri!r} (manifest checks bypassed)", uri, "refused, names model_uri")
        assert got.startswith("refused: endpoints.fraud.versions.v2.model_uri:") and "'..'" in got, got
    escaped = attempt(
        "symlink models/escape -> outside the project", "models/escape", "refused, says to use an absolute path"
    )
    assert escaped.startswith("refused: endpoints.fraud.versions.v2.model_uri:") and "symbolic link" in escaped
    absolute = attempt("explicit absolute path outside the project", str(outside), "resolved (explicit)")
    assert absolute == f"resolved to {outside.resolve()}"
    file_abs = attempt("explicit file:// absolute path", f"file://{outside}", "resolved (explicit)")
    assert file_abs == f"resolved to {outside.resolve()}"
    remote = attempt("s3:// URI on the local target", "s3://bucket/model", "refused: local files only")
    assert remote.startswith("refused:") and "local files only" in remote

    for name, expected, got in results:
        reliability.case(
            "paths", f"local target: {name}", expected=expected, measured=got.replace(str(tmp_path), "TMP")
        )


def test_symlink_escape_is_a_clear_deploy_error(project: Path, tmp_path: Path, reliability: Recorder) -> None:
    """Through the CLI: `mlserve deploy --env local` stops before starting anything."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "model.joblib").write_bytes((project / "models/fraud/v2/model.joblib").read_bytes())
    (project / "models" / "link").symlink_to(outside, target_is_directory=True)
    _set_uri(project, "models/link")
    res = run_cli("--project-dir", str(project), "deploy", "--env", "local")
    started = (project / ".mlserve" / "local").exists() and any(
        p.name.endswith(".pid") for p in (project / ".mlserve").rglob("*")
    )
    reliability.case(
        "paths",
        "`mlserve deploy --env local` with model_uri through a symlink out of the project",
        expected="exit 1, message names the key and the link; no process started",
        measured=f"exit {res.exit_code}; processes started: {started}",
    )
    try:
        assert res.exit_code == 1, res.output
        assert "endpoints.fraud.versions.v2.model_uri" in res.stderr and "symbolic link" in res.stderr
        assert "Traceback" not in res.output
    finally:
        run_cli("--project-dir", str(project), "down")
    assert os.path.islink(project / "models" / "link")
