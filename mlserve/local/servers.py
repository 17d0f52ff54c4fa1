"""How each runtime's model server is launched on the local target.

One process per endpoint version. ``sklearn`` / ``xgboost`` run MLServer (V2
protocol) with generated ``settings.json`` / ``model-settings.json``; ``seldon``
runs a Seldon Core v1 Python class through ``seldon-core-microservice`` behind a
small V2 adapter (see ``seldon_env``); ``custom`` runs the manifest's command line.
Cluster-only runtimes get a clear error here rather than a half-working process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve.errors import TargetError
from mlserve.manifest.models import Endpoint, Version

MLSERVER_IMPLEMENTATIONS = {
    "sklearn": ("mlserver_sklearn.SKLearnModel", "mlserver-sklearn"),
    "xgboost": ("mlserver_xgboost.XGBoostModel", "mlserver-xgboost"),
}
# File names looked for when model_uri is a directory, in order.
MODEL_FILES = {
    "sklearn": ("model.joblib", "model.pkl", "model.pickle"),
    "xgboost": ("model.json", "model.bst", "model.ubj"),
}
CLUSTER_ONLY = ("triton", "vllm", "torchserve")

# Port roles each runtime listens on, beyond "http" (the V2 port the gateway calls).
EXTRA_PORTS = {
    "sklearn": ("grpc", "metrics"),
    "xgboost": ("grpc", "metrics"),
    "seldon": ("seldon_http", "seldon_grpc", "metrics"),
    "custom": (),
    "transformers": (),
}


SELDON_ADAPTER = Path(__file__).with_name("seldon_adapter.py")  # V2 in front of seldon-core-microservice


@dataclass(frozen=True)
class ServerLaunch:
    """Everything the supervisor needs to run one version, plus the files to write first."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    health_url: str
    metrics_url: str | None
    files: dict[str, str] = field(default_factory=dict)  # absolute path -> content
    start_timeout: float = 120.0
    stamp: str = ""  # what the model files look like now (size, mtime), for the fingerprint
    ready_urls: list[str] = field(default_factory=list)  # further checks before it gets traffic


def key_of(endpoint: str, version: str, field_name: str) -> str:
    return f"endpoints.{endpoint}.versions.{version}.{field_name}"


def check_runtime(endpoint_name: str, endpoint: Endpoint) -> None:
    if endpoint.runtime in CLUSTER_ONLY:
        raise TargetError(
            f"endpoints.{endpoint_name}.runtime: the local target cannot serve runtime {endpoint.runtime!r}",
            hint=(
                "serve it with runtime = 'custom' and a command that speaks the V2 protocol on {port}, "
                "deploy it to a kubernetes environment, or leave it out of this environment's endpoints"
            ),
        )


def resolve_model_path(root: Path, endpoint_name: str, version_name: str, version: Version) -> Path:
    """The local file or directory ``model_uri`` names; the local target serves local files only."""
    key = key_of(endpoint_name, version_name, "model_uri")
    uri = version.model_uri
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    elif "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise TargetError(
            f"{key}: {version.model_uri!r} is a {scheme}:// URI; the local target serves local files only",
            hint="download the model into the project (e.g. models/...) and point model_uri at it",
        )
    path = Path(uri)
    relative = not path.is_absolute()
    if relative:
        if ".." in Path(uri).parts:
            raise TargetError(f"{key}: {uri!r} climbs out of the project with '..'")
        path = root / path
    path = path.resolve()
    if relative and not path.is_relative_to(root.resolve()):
        # a symlink inside the project that points elsewhere: only an absolute model_uri may
        raise TargetError(
            f"{key}: {uri!r} leads out of the project (to {path}) through a symbolic link",
            hint="write the absolute path in model_uri if serving a model from outside the project is intended",
        )
    if not path.exists():
        raise TargetError(f"{key}: {path} does not exist", hint="train or copy the model there, or fix model_uri")
    return path


def model_file(runtime: str, path: Path, key: str) -> Path:
    if path.is_file():
        return path
    for name in MODEL_FILES[runtime]:
        if (path / name).is_file():
            return path / name
    raise TargetError(
        f"{key}: no model file in {path} (looked for {', '.join(MODEL_FILES[runtime])})",
        hint="point model_uri at the model file, or put it in that directory under one of those names",
    )


def stamp_of(path: Path, limit: int = 2000) -> str:
    """Size and mtime of a file, or of the files under a directory: a changed model restarts."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())[:limit]
    for p in files:
        try:
            st = p.stat()
        except OSError:
            continue
        digest.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _bin(name: str) -> str:
    """A console script of mlserve's own environment (mlserver), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise TargetError(f"{name} not found beside {sys.executable} or on PATH", hint="pip install mlserver")
    return found


def mlserver_launch(
    *,
    root: Path,
    server_dir: Path,
    endpoint_name: str,
    endpoint: Endpoint,
    version_name: str,
    version: Version,
    ports: dict[str, int],
) -> ServerLaunch:
    runtime = endpoint.runtime
    implementation, package = MLSERVER_IMPLEMENTATIONS[runtime]
    if importlib.util.find_spec(implementation.split(".")[0]) is None:
        raise TargetError(
            f"endpoints.{endpoint_name}.runtime = {runtime!r} needs MLServer's {package} runtime, "
            "which is not installed in mlserve's environment",
            hint=f"pip install {package}",
        )
    key = key_of(endpoint_name, version_name, "model_uri")
    path = model_file(runtime, resolve_model_path(root, endpoint_name, version_name, version), key)
    settings: dict[str, Any] = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": ports["http"],
        "grpc_port": ports["grpc"],
        "metrics_port": ports["metrics"],
        "metrics_endpoint": "/metrics",
        "parallel_workers": 0,
        "load_models_at_startup": True,
        "server_name": f"mlserve-{endpoint_name}-{version_name}",
    }
    model_settings: dict[str, Any] = {
        "name": endpoint_name,
        "implementation": implementation,
        "parameters": {"uri": str(path), "version": version_name},
    }
    if version.batching is not None:  # MLServer's adaptive batching
        model_settings["max_batch_size"] = version.batching.max_batch_size
        model_settings["max_batch_time"] = version.batching.max_batch_time
    files = {
        str(server_dir / "settings.json"): json.dumps(settings, indent=2, sort_keys=True) + "\n",
        str(server_dir / "model-settings.json"): json.dumps(model_settings, indent=2, sort_keys=True) + "\n",
    }
    http = ports["http"]
    env = dict(version.env)
    # MLServer keeps multi-process metrics in ./.metrics of its working directory.
    return ServerLaunch(
        argv=[_bin("mlserver"), "start", str(server_dir)],
        env=env,
        cwd=str(server_dir),
        # the model loaded and ready, and the server ready (MLServer: every model it holds)
        health_url=f"http://127.0.0.1:{http}/v2/models/{endpoint_name}/ready",
        ready_urls=[f"http://127.0.0.1:{http}/v2/health/ready"],
        metrics_url=f"http://127.0.0.1:{ports['metrics']}/metrics",
        files=files,
        stamp=stamp_of(path),
    )


def custom_launch(
    *,
    root: Path,
    server_dir: Path,
    endpoint_name: str,
    version_name: str,
    version: Version,
    ports: dict[str, int],
) -> ServerLaunch:
    key = key_of(endpoint_name, version_name, "command")
    if not version.command:
        raise TargetError(f"{key}: runtime = 'custom' needs a command on the local target")
    path = resolve_model_path(root, endpoint_name, version_name, version)
    values = {"port": str(ports["http"]), "model_dir": str(path)}
    argv = []
    for i, arg in enumerate(version.command):
        try:
            argv.append(arg.format(**values))
        except (KeyError, IndexError, ValueError) as exc:
            raise TargetError(
                f"{key}[{i}]: bad placeholder in {arg!r} ({exc}); use {{port}} and {{model_dir}}, "
                "and double braces for a literal brace"
            ) from None
    program = argv[0]
    if "/" in program:
        resolved = (root / program) if not os.path.isabs(program) else Path(program)
        if not (resolved.is_file() and os.access(resolved, os.X_OK)):
            raise TargetError(f"{key}[0]: {resolved} is not an executable file")
        argv[0] = str(resolved)
    else:
        found = shutil.which(program)
        if found is None:
            raise TargetError(f"{key}[0]: {program!r} not found on PATH")
        argv[0] = found
    env = {"MLSERVE_PORT": str(ports["http"]), "MLSERVE_MODEL_DIR": str(path), **version.env}
    return ServerLaunch(
        argv=argv,
        env=env,
        cwd=str(root),
        health_url=f"http://127.0.0.1:{ports['http']}/v2/health/ready",
        metrics_url=None,
        stamp=stamp_of(path),
    )


def transformers_launch(
    *,
    root: Path,
    server_dir: Path,
    endpoint_name: str,
    version_name: str,
    version: Version,
    ports: dict[str, int],
) -> ServerLaunch:
    """``transformers serve MODEL_DIR`` on the CPU: the OpenAI-compatible API with streaming.

    Offline (``HF_HUB_OFFLINE``), its caches inside the server's own folder, one torch thread
    (a 2-core machine shared with the gateway, Prometheus and the load generator), the model
    pinned at start (``force_model``) so that the first request does not pay for loading it.
    """
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        raise TargetError(
            f"endpoints.{endpoint_name}.runtime = 'transformers' needs torch and transformers in mlserve's environment",
            hint="pip install 'mlserve[llm]' (torch==2.13.0 is the CPU build)",
        )
    key = key_of(endpoint_name, version_name, "model_uri")
    path = resolve_model_path(root, endpoint_name, version_name, version)
    if not (path.is_dir() and (path / "config.json").is_file()):
        raise TargetError(
            f"{key}: {path} is not a Hugging Face model folder (no config.json)",
            hint="point model_uri at a folder written by save_pretrained (mlserve init creates models/chat/v1)",
        )
    cache = server_dir / "hf-home"
    env = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(cache),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        **version.env,
    }
    argv = [
        _bin("transformers"),
        "serve",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(ports["http"]),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--log-level",
        "warning",
        *version.args,
    ]
    return ServerLaunch(
        argv=argv,
        env=env,
        cwd=str(server_dir),
        health_url=f"http://127.0.0.1:{ports['http']}/health",
        metrics_url=None,
        files={str(server_dir / "README"): "transformers serve working folder (HF_HOME is hf-home/)\n"},
        start_timeout=240.0,
        stamp=stamp_of(path),
    )


def launch_for(
    *,
    root: Path,
    server_dir: Path,
    endpoint_name: str,
    endpoint: Endpoint,
    version_name: str,
    version: Version,
    ports: dict[str, int],
    seldon_python: str | None = None,
) -> ServerLaunch:
    """The launch of one endpoint version, by runtime."""
    check_runtime(endpoint_name, endpoint)
    if endpoint.runtime in MLSERVER_IMPLEMENTATIONS:
        return mlserver_launch(
            root=root,
            server_dir=server_dir,
            endpoint_name=endpoint_name,
            endpoint=endpoint,
            version_name=version_name,
            version=version,
            ports=ports,
        )
    if endpoint.runtime == "transformers":
        return transformers_launch(
            root=root,
            server_dir=server_dir,
            endpoint_name=endpoint_name,
            version_name=version_name,
            version=version,
            ports=ports,
        )
    if endpoint.runtime == "custom":
        return custom_launch(
            root=root,
            server_dir=server_dir,
            endpoint_name=endpoint_name,
            version_name=version_name,
            version=version,
            ports=ports,
        )
    if endpoint.runtime == "seldon":
        if seldon_python is None:
            raise TargetError("internal: the seldon environment was not prepared")
        return seldon_launch(
            root=root,
            endpoint_name=endpoint_name,
            version_name=version_name,
            version=version,
            ports=ports,
            python=seldon_python,
        )
    raise TargetError(f"endpoints.{endpoint_name}.runtime: {endpoint.runtime!r} is not supported locally")


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
        str(SELDON_ADAPTER),
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
        stamp=stamp_of(model_dir) + hashlib.sha256(SELDON_ADAPTER.read_bytes()).hexdigest()[:16],
    )
