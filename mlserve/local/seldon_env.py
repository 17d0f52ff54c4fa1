"""The isolated virtual environment for the ``seldon`` runtime, and its launch.

seldon-core 1.18 pins old Flask, click, protobuf, numpy<2 and urllib3<1.27, so it
never enters mlserve's own environment: mlserve creates ``.mlserve/seldon-venv/``
once (``python -m venv`` + pip, with ``setuptools<70`` for ``pkg_resources``) and
installs there what the model directory's ``requirements.txt`` asks for. The user's
class runs unchanged in ``seldon-core-microservice``; ``seldon_adapter.py`` (standard
library only) translates the V2 protocol the gateway speaks into Seldon's own (the
launch is ``mlserve.local.servers.seldon_launch``). Preparing this environment is
provisioning, done by deploy before it plans (``provision_seldon``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from mlserve.errors import TargetError, ToolError

SELDON_REQUIREMENTS = ["seldon-core==1.18.*", "setuptools<70"]


def requirements_for(model_dirs: list[Path]) -> list[str]:
    """seldon-core plus every model directory's requirements.txt lines, sorted and unique."""
    extra: set[str] = set()
    for d in model_dirs:
        req = d / "requirements.txt"
        if req.is_file():
            for line in req.read_text(encoding="utf-8").splitlines():
                line = line.split("#", 1)[0].strip()
                if line and not line.startswith("-"):
                    extra.add(line)
    return [*SELDON_REQUIREMENTS, *sorted(extra)]


def provision_seldon(project_root: Path, model_dirs: list[Path], default_venv: Path, say: Callable[[str], None]) -> str:
    """The python of the seldon environment for these model directories, created or updated
    when needed. ``MLSERVE_SELDON_VENV`` shares one environment between projects (and test runs)."""
    import os

    venv = Path(os.environ.get("MLSERVE_SELDON_VENV") or default_venv)
    return ensure_venv(venv, requirements_for([d for d in model_dirs if d.is_dir()]), say)


def ensure_venv(venv: Path, requirements: list[str], say: Callable[[str], None]) -> str:
    """Create or update the venv when the requirements changed; return its python."""
    from mlserve.tools import run

    python = venv / "bin" / "python"
    marker = venv / "mlserve-requirements.json"
    digest = hashlib.sha256(json.dumps(requirements).encode()).hexdigest()
    if python.is_file() and marker.is_file():
        try:
            if json.loads(marker.read_text()).get("sha256") == digest:
                return str(python)
        except (OSError, ValueError):
            pass
    try:
        if not python.is_file():
            say(f"creating the seldon-core environment in {venv} (once; a minute or two)")
            run([sys.executable, "-m", "venv", str(venv)], timeout=300)
        say("installing " + ", ".join(requirements) + " into it")
        run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
            timeout=1200,
        )
    except ToolError as err:
        raise TargetError(
            f"could not prepare the seldon-core environment in {venv}: {err.message}",
            hint="check network access to the package index; delete the folder to start over",
        ) from None
    marker.write_text(json.dumps({"sha256": digest, "requirements": requirements}, indent=2) + "\n")
    return str(python)
