"""The one way mlserve runs external programs (terraform, kubectl, prometheus, servers).

argv lists, never a shell; ``shutil.which`` first, with an install hint; the
environment is merged into ours, not replaced; secrets are scrubbed from anything
we log or raise; a non-zero exit becomes a ``ToolError`` carrying stdout and stderr.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlserve.errors import ToolError

# Program -> how to get it, shown when it is missing.
INSTALL_HINTS: dict[str, str] = {
    "terraform": "install Terraform 1.x from HashiCorp (https://developer.hashicorp.com/terraform/install)",
    "kubectl": "install kubectl (Debian: apt-get install kubectl, or https://kubernetes.io/docs/tasks/tools/)",
    "prometheus": "install Prometheus (Debian: apt-get install prometheus) or set MLSERVE_PROMETHEUS_BIN",
    "promtool": "install Debian's prometheus package (it ships promtool) or set MLSERVE_PROMTOOL_BIN",
    "nvidia-smi": "install the NVIDIA driver utilities",
}

_SECRET_ENV = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|PRIVATE_KEY|API_KEY)", re.I)


def which(program: str, *, env_override: str | None = None) -> str:
    """Full path of ``program`` or a ToolError that says how to install it.

    ``env_override`` names an environment variable that, when set, gives the path.
    """
    if env_override and os.environ.get(env_override):
        path = os.environ[env_override]
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise ToolError(f"{env_override}={path} is not an executable file")
    found = shutil.which(program)
    if found is None:
        raise ToolError(f"{program} not found on PATH", hint=INSTALL_HINTS.get(program))
    return found


def merged_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if extra:
        env.update(extra)
    return env


def secret_values(env: Mapping[str, str] | None, extra: Iterable[str] = ()) -> list[str]:
    """Values that must never appear in logs or error messages."""
    values = [v for k, v in (env or {}).items() if _SECRET_ENV.search(k) and len(v) >= 4]
    values.extend(s for s in extra if s and len(s) >= 4)
    return sorted(set(values), key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    for s in secrets:
        text = text.replace(s, "***")
    return text


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    input_text: str | None = None,
    secrets: Iterable[str] = (),
) -> Completed:
    """Run a program to completion and capture its output."""
    argv = [str(a) for a in argv]
    program = argv[0] if os.path.isabs(argv[0]) else which(argv[0])
    hidden = secret_values(merged_env(env), secrets)  # inherited credentials too, not only env=
    try:
        proc = subprocess.run(
            [program, *argv[1:]],
            cwd=cwd,
            env=merged_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(
            f"{Path(argv[0]).name} did not finish within {timeout:g}s: {scrub(' '.join(argv), hidden)}",
            stdout=scrub(_text(exc.stdout), hidden),
            stderr=scrub(_text(exc.stderr), hidden),
        ) from None
    except OSError as exc:
        raise ToolError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    out = Completed(argv, proc.returncode, scrub(proc.stdout, hidden), scrub(proc.stderr, hidden))
    if check and proc.returncode != 0:
        tail = (out.stderr.strip() or out.stdout.strip())[-2000:]
        raise ToolError(
            f"{Path(argv[0]).name} exited with {proc.returncode}: {scrub(' '.join(argv), hidden)}"
            + (f"\n{tail}" if tail else ""),
            stdout=out.stdout,
            stderr=out.stderr,
            returncode=proc.returncode,
        )
    return out


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start a long-running child (a server) in its own session, output appended to a log.

    Its own session (process group) lets ``mlserve down`` stop it and its children even
    after the supervisor is gone. ``pass_fds``: open descriptors it inherits (listening
    sockets the supervisor keeps across the child's restarts).
    """
    argv = [str(a) for a in argv]
    program = argv[0] if os.path.isabs(argv[0]) else which(argv[0])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            return subprocess.Popen(
                [program, *argv[1:]],
                cwd=cwd,
                env=merged_env(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=tuple(pass_fds),
            )
        except OSError as exc:
            raise ToolError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data
