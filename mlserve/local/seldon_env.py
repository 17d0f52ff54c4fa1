"""The isolated virtual environment for the ``seldon`` runtime, and its launch.

seldon-core 1.18 pins old Flask, click, protobuf, numpy<2 and urllib3<1.27, so it
never enters mlserve's own environment: mlserve creates ``.mlserve/seldon-venv/``
once (``python -m venv`` + pip, with ``setuptools<70`` for ``pkg_resources``) and
installs there what the model directory's ``requirements.txt`` asks for. The user's
class runs unchanged in ``seldon-core-microservice``; ``seldon_adapter.py`` (standard
library only) translates the V2 protocol the gateway speaks into Seldon's own.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from mlserve.errors import TargetError, ToolError
from mlserve.local.servers import ServerLaunch, key_of, resolve_model_path, stamp_of
from mlserve.manifest.models import Version

SELDON_REQUIREMENTS = ["seldon-core==1.18.*", "setuptools<70"]
ADAPTER = Path(__file__).with_name("seldon_adapter.py")


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


def seldon_launch(
    *,
    root: Path,
    endpoint_name: str,
    version_name: str,
    version: Version,
    ports: dict[str, int],
    python: str,
) -> ServerLaunch:
    key = key_of(endpoint_name, version_name, "model_class")
    if not version.model_class:
        raise TargetError(f"{key}: runtime = 'seldon' needs model_class = \"module.Class\" (a Seldon Core v1 class)")
    model_dir = resolve_model_path(root, endpoint_name, version_name, version)
    if not model_dir.is_dir():
        raise TargetError(
            f"{key_of(endpoint_name, version_name, 'model_uri')}: {model_dir} must be a directory holding "
            f"the module of {version.model_class}"
        )
    module = version.model_class.rsplit(".", 1)[0] if "." in version.model_class else version.model_class
    if not (model_dir / (module.replace(".", "/") + ".py")).is_file() and not (model_dir / module).is_dir():
        raise TargetError(f"{key}: module {module!r} not found in {model_dir}")
    argv = [
        python,
        str(ADAPTER),
        "--port",
        str(ports["http"]),
        "--name",
        endpoint_name,
        "--version",
        version_name,
        "--seldon-port",
        str(ports["seldon_http"]),
        "--",
        version.model_class,
        "--service-type",
        "MODEL",
        "--http-port",
        str(ports["seldon_http"]),
        "--grpc-port",
        str(ports["seldon_grpc"]),
        "--metrics-port",
        str(ports["metrics"]),
        "--workers",
        "1",
        *version.args,
    ]
    return ServerLaunch(
        argv=argv,
        env={"PYTHONUNBUFFERED": "1", **version.env},
        cwd=str(model_dir),
        health_url=f"http://127.0.0.1:{ports['http']}/v2/models/{endpoint_name}/ready",
        metrics_url=f"http://127.0.0.1:{ports['metrics']}/metrics",
        model_path=str(model_dir),
        stamp=stamp_of(model_dir) + hashlib.sha256(ADAPTER.read_bytes()).hexdigest()[:16],
    )
