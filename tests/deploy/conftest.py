"""Fixtures for deploying stacks: a moto server on loopback, the provider mirror, a kubectl stand-in.

One moto server per test module (it starts in about two seconds); the AWS provider
reaches it through ``AWS_ENDPOINT_URL`` (read by hashicorp/aws 5.x) with fake keys.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlserve.tools import spawn

REGION = "eu-west-1"
FAKE_KEY_ID = "AKIAMLSERVETESTKEY01"
FAKE_SECRET = "mlserve-test-secret-value-0123456789"


def plugin_mirror() -> str:
    """The local provider mirror (hashicorp/aws): MLSERVE_TF_PLUGIN_DIR or the image's /opt/tf-plugins."""
    return os.environ.get("MLSERVE_TF_PLUGIN_DIR") or "/opt/tf-plugins"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Moto:
    url: str
    port: int
    log: Path

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def client(self, service: str):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=FAKE_KEY_ID,
            aws_secret_access_key=FAKE_SECRET,
        )


def start_moto(log: Path, extra_env: dict[str, str] | None = None) -> tuple[Moto, object]:
    port = free_port()
    env = {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true", **(extra_env or {})}
    proc = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log_path=log, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)
    return Moto(url, port, log), proc


def stop(proc: object) -> None:
    pid = proc.pid  # type: ignore[attr-defined]
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)  # type: ignore[attr-defined]
    except Exception:
        os.killpg(pid, signal.SIGKILL)
        proc.wait()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """A moto server for this module, with AWS-managed IAM policies loaded."""
    server, proc = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server
    finally:
        stop(proc)


def aws_env_for(url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "MLSERVE_TF_PLUGIN_DIR": plugin_mirror(),
    }


@pytest.fixture
def aws_env(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> Moto:
    """Point the AWS provider (and boto3) at this module's moto server."""
    for key, value in aws_env_for(moto.url).items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "TF_CLI_CONFIG_FILE", "TF_WORKSPACE"):
        monkeypatch.delenv(key, raising=False)
    return moto


# ---------------------------------------------------------------------------
# kubectl stand-in
# ---------------------------------------------------------------------------

STANDIN = """#!{python}
# A recording stand-in for kubectl: appends its argv (JSON) to $FAKE_KUBECTL_LOG and
# exits with $FAKE_KUBECTL_EXIT_<SUBCOMMAND> (default 0), printing $FAKE_KUBECTL_STDERR then.
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_KUBECTL_LOG"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
rest = list(args)
if rest[:1] == ["--context"]:
    rest = rest[2:]
sub = rest[0] if rest else ""
code = int(os.environ.get("FAKE_KUBECTL_EXIT_" + sub.upper(), "0"))
if sub == "get":
    sys.stdout.write(os.environ.get("FAKE_KUBECTL_GET", '{{"items": []}}'))
if code:
    sys.stderr.write(os.environ.get("FAKE_KUBECTL_STDERR", "error: stand-in failure") + "\\n")
sys.exit(code)
"""


@dataclass
class FakeKubectl:
    log: Path
    monkeypatch: pytest.MonkeyPatch

    def calls(self) -> list[list[str]]:
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def exit_with(self, subcommand: str, code: int, stderr: str | None = None) -> None:
        self.monkeypatch.setenv(f"FAKE_KUBECTL_EXIT_{subcommand.upper()}", str(code))
        if stderr is not None:
            self.monkeypatch.setenv("FAKE_KUBECTL_STDERR", stderr)


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKubectl:
    """A `kubectl` first on PATH that records argv and exits as told."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    script = bindir / "kubectl"
    script.write_text(STANDIN.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "kubectl-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBECTL_LOG", str(log))
    for key in list(os.environ):
        if key.startswith("FAKE_KUBECTL_EXIT_"):
            monkeypatch.delenv(key)
    return FakeKubectl(log, monkeypatch)
