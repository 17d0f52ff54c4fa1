"""Deploy failure paths: each a clear message, exit 1, and no half-written state.

"No half-written state" is checked three ways: no deployment record, no Terraform
state (nor working files that a later run could take for state), and nothing created
behind the endpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlserve.tools import terraform as tfmod
from tests.conftest import run_cli
from tests.deploy.conftest import aws_env_for, free_port, start_moto, stop

pytestmark = [pytest.mark.terraform]


def _assert_nothing_written(project: Path, layer: str = "cluster") -> None:
    assert not (project / ".mlserve/deployments/staging.json").exists()
    folder = project / ".mlserve/deploy/staging/terraform" / layer
    assert not list(folder.rglob("*.tfstate")), list(folder.rglob("*.tfstate"))
    for name in (".terraform", ".terraform.lock.hcl", "terraform.tfstate.d", tfmod.PLAN_FILE):
        assert not (folder / name).exists(), name


@pytest.fixture
def offline_aws(monkeypatch: pytest.MonkeyPatch) -> str:
    """AWS settings pointing at a loopback port where nothing listens (moto not running)."""
    url = f"http://127.0.0.1:{free_port()}"
    for key, value in aws_env_for(url).items():
        monkeypatch.setenv(key, value)
    return url


def test_moto_not_running(project: Path, offline_aws: str) -> None:
    res = run_cli("deploy", "--env", "staging", "--layer", "cluster", "--yes", cwd=project)
    assert res.exit_code == 1
    assert f"the AWS endpoint {offline_aws} (AWS_ENDPOINT_URL) is not reachable" in res.stderr
    assert "Traceback" not in res.output
    _assert_nothing_written(project)


def test_terraform_missing_from_path(project: Path, offline_aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")  # reachability is not what fails here
    monkeypatch.setenv("PATH", str(project / "no-such-bin"))
    res = run_cli("deploy", "--env", "staging", "--layer", "cluster", "--yes", cwd=project)
    assert res.exit_code == 1
    assert "terraform not found on PATH" in res.stderr
    assert "hint: install Terraform 1.x" in res.stderr
    _assert_nothing_written(project)


@pytest.mark.parametrize("command", ["deploy", "plan"])
def test_platform_layer_provider_cannot_be_installed(project: Path, offline_aws: str, command: str) -> None:
    """The platform layer needs hashicorp/helm and hashicorp/kubernetes, which the mirror lacks."""
    args = [command, "--env", "staging", "--layer", "platform"] + (["--yes"] if command == "deploy" else [])
    res = run_cli(*args, cwd=project)
    assert res.exit_code == 1, res.output
    err = res.stderr
    assert "cannot install provider hashicorp/helm, hashicorp/kubernetes from the provider mirror" in err
    assert "provider registry.terraform.io/hashicorp/helm was not found in any of the search locations" in err
    assert "last " in err and "lines of output" in err  # the tail of terraform's output
    _assert_nothing_written(project, "platform")


@pytest.mark.moto
def test_invalid_credentials(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto accepts any key unless IAM auth is on; with INITIAL_NO_AUTH_ACTION_COUNT=0 an
    unknown access key is refused (403) as AWS would refuse it."""
    server, proc = start_moto(tmp_path / "moto-auth.log", {"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        for key, value in aws_env_for(server.url).items():
            monkeypatch.setenv(key, value)
        res = run_cli("deploy", "--env", "staging", "--layer", "cluster", "--yes", cwd=project)
        assert res.exit_code == 1, res.output
        assert "terraform plan failed" in res.stderr
        assert "validating provider credentials" in res.stderr and "StatusCode: 403" in res.stderr
        assert os.environ["AWS_SECRET_ACCESS_KEY"] not in res.output  # secrets never printed
        _assert_nothing_written(project)  # the plan failed, so no apply ever ran
    finally:
        stop(proc)
