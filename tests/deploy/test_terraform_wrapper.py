"""The python-terraform wrapper against the real terraform binary.

Most stacks here use only ``terraform_data`` (built into Terraform, no provider), so
they need neither the mirror nor moto; the mirror and AWS are exercised in
test_cluster_deploy.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlserve.errors import ToolError
from mlserve.tools import terraform as tfmod
from mlserve.tools.terraform import Terraform, summarize_plan
from tests.deploy.conftest import plugin_mirror

STACK = """
variable "size" {
  type    = string
  default = "small"
}
variable "generation" {
  type    = number
  default = 1
}
variable "token" {
  type      = string
  default   = "none"
  sensitive = true
}
resource "terraform_data" "web" {
  input = var.size
}
resource "terraform_data" "db" {
  input            = "db"
  triggers_replace = [var.generation]
}
output "size" {
  value = terraform_data.web.output
}
output "token" {
  value     = var.token
  sensitive = true
}
output "echo" {
  value = "${var.size}-echo"
}
"""


def write_stack(folder: Path, text: str = STACK) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.tf").write_text(text)
    return folder


pytestmark = pytest.mark.terraform


def test_full_cycle_argv_and_summaries(tmp_path: Path) -> None:
    folder = write_stack(tmp_path / "stack")
    lines: list[str] = []
    tf = Terraform(folder, workspace="staging", plugin_dir=plugin_mirror(), on_line=lines.append)
    calls = spy(tf)
    tf.init()
    assert (folder / "terraform.tfstate.d" / "staging").is_dir()  # one workspace per environment
    assert any("Initializing" in line for line in lines)  # output streamed line by line

    plan = tf.plan()
    assert plan.has_changes
    assert plan.by_type == {"terraform_data": {"add": 2, "change": 0, "destroy": 0, "replace": 0}}
    applied = tf.apply()
    assert (applied.added, applied.changed, applied.destroyed) == (2, 0, 0)
    # outputs parsed from `output -json`; sensitive values never returned
    assert applied.outputs == {"echo": "small-echo", "size": "small", "token": "(sensitive)"}
    assert (folder / "terraform.tfstate.d" / "staging" / "terraform.tfstate").is_file()
    assert not (folder / tfmod.PLAN_FILE).exists()  # the applied plan file is removed

    unchanged = tf.plan()
    assert not unchanged.has_changes  # unchanged: nothing to do
    assert unchanged.prior_outputs == applied.outputs == tf.outputs()

    changed = tf.plan(variables={"size": "large", "generation": 2})
    assert changed.by_type == {"terraform_data": {"add": 0, "change": 1, "destroy": 0, "replace": 1}}
    by_address = {c.address: c.action for c in changed.actionable}
    assert by_address == {"terraform_data.web": "change", "terraform_data.db": "replace"}
    assert changed.output_changes == ("echo", "size")
    assert "1 to change, 1 to replace" in changed.describe()

    destroyed = tf.destroy()
    assert destroyed.destroyed == 2
    assert tf.state_resources() == []

    # Terraform 1.x compatible argv: no -force, -auto-approve, -input=false and
    # -no-color everywhere, the directory never positional.
    destroy_argv = next(a for a in calls if a[1] == "destroy")
    assert "-force" not in destroy_argv and "-auto-approve" in destroy_argv
    for argv in calls:
        assert "-no-color" in argv, argv
        assert str(folder) not in argv
        if argv[1] in ("init", "plan", "apply", "destroy"):
            assert "-input=false" in argv, argv
    assert calls[1][1:] == ["workspace", "select", "-or-create", "-no-color", "staging"]


def spy(tf: Terraform) -> list[list[str]]:
    """Record every argv the wrapper runs (python-terraform builds them, our runner runs them)."""
    calls: list[list[str]] = []
    original = tf._run

    def record(argv: list[str]) -> tfmod._Run:
        calls.append(argv)
        return original(argv)

    tf._engine._runner = record
    return calls


def test_apply_argv_applies_saved_plan_with_auto_approve(tmp_path: Path) -> None:
    folder = write_stack(tmp_path / "stack")
    tf = Terraform(folder, plugin_dir=plugin_mirror())
    calls = spy(tf)
    tf.init()
    tf.plan(variables={"size": "medium"})
    tf.apply()
    apply = next(a for a in calls if a[1] == "apply")
    assert apply[-1] == tfmod.PLAN_FILE  # the only positional argument is the plan file
    assert not any(a.startswith("-var") for a in apply)  # variables were fixed at plan time
    assert any(a.startswith("-auto-approve") for a in apply)
    plan = next(a for a in calls if a[1] == "plan")
    var_files = [a for a in plan if a.startswith("-var-file=")]
    assert len(var_files) == 1 and not os.path.exists(var_files[0].split("=", 1)[1])  # temp var file cleaned
    assert tf.outputs()["size"] == "medium"


def test_secrets_are_scrubbed_from_streamed_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-value-that-must-not-leak"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    folder = write_stack(
        tmp_path / "stack",
        'resource "terraform_data" "x" {\n  input = "leak-s3cr3t-value-that-must-not-leak"\n}\n'
        'output "x" {\n  value = terraform_data.x.output\n}\n',
    )
    lines: list[str] = []
    tf = Terraform(folder, on_line=lines.append)
    tf.init()
    tf.plan()
    tf.apply()
    text = "\n".join(lines)
    assert secret not in text
    assert "leak-***" in text


def test_terraform_diagnostic_becomes_tool_error(tmp_path: Path) -> None:
    folder = write_stack(tmp_path / "stack", 'resource "terraform_data" "x" {\n  input = var.missing\n}\n')
    tf = Terraform(folder)
    tf.init()
    with pytest.raises(ToolError) as info:
        tf.plan()
    message = info.value.message
    assert "terraform plan failed" in message
    assert "Reference to undeclared input variable" in message  # terraform's own diagnostic
    assert "main.tf:2" in message


def test_missing_provider_names_the_provider(tmp_path: Path) -> None:
    folder = write_stack(
        tmp_path / "stack",
        'terraform {\n  required_providers {\n    helm = { source = "hashicorp/helm" }\n  }\n}\n',
    )
    tf = Terraform(folder, plugin_dir=plugin_mirror())
    with pytest.raises(ToolError) as info:
        tf.init()
    assert info.value.message.startswith("cannot install provider hashicorp/helm from the provider mirror")
    assert "terraform init failed" in info.value.message
    assert "provider registry.terraform.io/hashicorp/helm was not found" in info.value.message
    cfg = (folder / tfmod.CLI_CONFIG_NAME).read_text()
    assert "filesystem_mirror" in cfg and json.dumps(str(Path(plugin_mirror()).resolve())) in cfg


def test_terraform_missing_from_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolError) as info:
        Terraform(write_stack(tmp_path / "stack"))
    assert info.value.message == "terraform not found on PATH"
    assert info.value.hint and "install Terraform" in info.value.hint


def test_plugin_dir_from_env_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tfmod.PLUGIN_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(ToolError, match=r"MLSERVE_TF_PLUGIN_DIR=.* is not a directory"):
        Terraform(write_stack(tmp_path / "stack"))


def test_unreachable_aws_endpoint_fails_fast() -> None:
    from tests.deploy.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ToolError) as info:
        tfmod.check_aws_endpoint({"AWS_ENDPOINT_URL": url})
    assert f"the AWS endpoint {url} (AWS_ENDPOINT_URL) is not reachable" in info.value.message
    tfmod.check_aws_endpoint({})  # unset: nothing to check


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        (["create"], "add"),
        (["update"], "change"),
        (["delete"], "destroy"),
        (["delete", "create"], "replace"),
        (["create", "delete"], "replace"),
        (["no-op"], "no-op"),
        (["read"], "read"),
    ],
)
def test_summarize_plan_actions(actions: list[str], expected: str) -> None:
    doc = {"resource_changes": [{"address": "aws_vpc.this", "type": "aws_vpc", "change": {"actions": actions}}]}
    summary = summarize_plan(doc)
    assert summary.changes[0].action == expected
    assert summary.has_changes == (expected in ("add", "change", "destroy", "replace"))
