"""Write a promotion back into mlserve.toml, so the repository says what production runs.

tomlkit edits the document in place: comments, blank lines, key order and quoting
elsewhere are kept byte for byte. The result is checked with the manifest loader before
it replaces the file (atomically), so a promotion can never leave an invalid manifest.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mlserve.errors import StateError


def set_baseline(path: Path, endpoint: str, version: str) -> bool:
    """Set ``endpoints.ENDPOINT.baseline = VERSION``. False when it already was."""
    import tomlkit

    text = path.read_text(encoding="utf-8")
    doc = tomlkit.parse(text)
    try:
        table = doc["endpoints"][endpoint]
    except KeyError:
        raise StateError(f"{path}: has no [endpoints.{endpoint}] table to promote {version} in") from None
    if table.get("baseline") == version:
        return False
    table["baseline"] = version
    new = tomlkit.dumps(doc)
    _check(path, new)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _check(path: Path, text: str) -> None:
    from mlserve.errors import ManifestError
    from mlserve.manifest.loader import load_manifest

    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / path.name
        probe.write_text(text, encoding="utf-8")
        try:
            load_manifest(probe)
        except ManifestError as exc:
            raise StateError(f"{path}: promoting would make the manifest invalid: {exc}") from None
