"""A stand-in kubectl on PATH that records its argv (one JSON list per line) and succeeds:
no cluster exists here, and the rollout's traffic changes are checked by what was applied."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


def recording_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install it for the test; returns the log file of its calls."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "kubectl.jsonl"
    script = bindir / "kubectl"
    script.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "print('applied')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log
