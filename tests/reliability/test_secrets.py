"""No credential is printed, logged, or written into rendered stacks.

The admin token of the local gateway is checked against a live deployment in
test_local_faults.py (it needs the running processes); here: the program wrapper and the
terraform wrapper with AWS credentials in the environment, rendering with credentials
around, credentials in the manifest, and ``sensitive`` on Terraform variables and outputs.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import hcl2
import pytest

from mlserve.errors import ToolError
from mlserve.tools import run
from mlserve.tools.terraform import Terraform
from tests.conftest import REPO, run_cli
from tests.reliability.conftest import Recorder

CREDS = {
    "AWS_ACCESS_KEY_ID": "AKIAMLSERVERELIAB001",
    "AWS_SECRET_ACCESS_KEY": "mlserve/reliability+secret/0123456789abcdefXYZ",
    "AWS_SESSION_TOKEN": "mlserve-reliability-session-token-0123456789",
}
SECRET_NAME = re.compile(r"(secret|token|password|passwd|credential|private_key|access_key|api_key)", re.I)


def leaked(text: str) -> list[str]:
    return [k for k, v in CREDS.items() if v in text]


def test_program_wrapper_scrubs_errors(reliability: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    script = 'echo "key=$AWS_ACCESS_KEY_ID"; echo "secret=$AWS_SECRET_ACCESS_KEY token=$AWS_SESSION_TOKEN" >&2; exit 3'
    with pytest.raises(ToolError) as info:
        run(["sh", "-c", script, CREDS["AWS_SECRET_ACCESS_KEY"]])
    err = info.value
    text = "\n".join([err.message, err.stdout or "", err.stderr or "", str(err.hint or "")])
    reliability.case(
        "secrets",
        "program run by mlserve/tools prints the AWS credentials from its environment and fails",
        expected="ToolError message, stdout, stderr and argv show *** instead of each value",
        measured=f"credentials visible: {leaked(text) or 'none'}; *** shown {text.count('***')} times",
    )
    assert not leaked(text), text
    assert text.count("***") >= 3


@pytest.mark.terraform
def test_terraform_logs_and_errors_carry_no_aws_credentials(tmp_path: Path, reliability: Recorder) -> None:
    """TF_LOG=DEBUG makes terraform and the AWS provider log request signing details; the plan
    fails (STS on a closed loopback port). Neither the streamed lines nor the error may show
    a credential."""
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "main.tf").write_text(
        'provider "aws" {\n  region = "eu-west-1"\n  max_retries = 1\n  skip_metadata_api_check = true\n'
        '  endpoints {\n    sts = "http://127.0.0.1:9"\n  }\n}\n'
        'data "aws_caller_identity" "me" {}\n',
        encoding="utf-8",
    )
    lines: list[str] = []
    tf = Terraform(stack, plugin_dir="/opt/tf-plugins", env={**CREDS, "TF_LOG": "DEBUG"}, on_line=lines.append)
    tf.init()
    with pytest.raises(ToolError) as info:
        tf.plan()
    err = info.value
    text = "\n".join([err.message, err.stdout or "", err.stderr or "", *lines])
    stars = text.count("***")
    reliability.case(
        "secrets",
        "terraform plan with AWS credentials in the environment, TF_LOG=DEBUG, failing on STS",
        expected="no credential in streamed lines, stdout, stderr or the error message",
        measured=f"{len(text)} characters of output; credentials visible: {leaked(text) or 'none'}; "
        f"{stars} occurrences replaced by ***",
    )
    assert "terraform plan failed" in err.message
    assert not leaked(text)
    assert stars > 0  # the raw output did carry them: the scrubbing is what kept them out


def test_rendered_stacks_carry_no_credentials_and_mark_secrets_sensitive(
    tmp_path: Path, reliability: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "stacks"
    res = run_cli("--project-dir", str(REPO), "render", "--all", "--out", str(out))
    assert res.exit_code == 0, res.output
    files = [p for p in out.rglob("*") if p.is_file()]
    found = [str(p.relative_to(out)) for p in files if leaked(p.read_text(encoding="utf-8", errors="replace"))]
    variables = outputs = 0
    secretish: list[str] = []
    not_sensitive: list[str] = []
    for p in files:
        if p.suffix != ".tf":
            continue
        parsed = hcl2.loads(p.read_text(encoding="utf-8"))
        for kind in ("variable", "output"):
            for block in parsed.get(kind, []):
                for name, body in block.items():
                    if kind == "variable":
                        variables += 1
                    else:
                        outputs += 1
                    if SECRET_NAME.search(name):
                        secretish.append(f"{kind}.{name}")
                        if body.get("sensitive") is not True:
                            not_sensitive.append(f"{p.relative_to(out)}: {kind}.{name}")
    reliability.case(
        "secrets",
        "`mlserve render --all` of the example with AWS credentials in the environment",
        expected="no credential in any rendered file or in the output; secret-carrying variables/outputs sensitive",
        measured=f"{len(files)} files, credentials found in {len(found)}; {variables} variables and {outputs} outputs, "
        f"{len(secretish)} carry secrets ({', '.join(sorted(set(secretish))) or 'none'}), "
        f"{len(not_sensitive)} of them not sensitive",
    )
    assert not found and not leaked(res.output)
    assert not not_sensitive, not_sensitive


@pytest.mark.parametrize(
    "where,line",
    [
        ("version env", 'env = { HF_TOKEN = "hf_reliabilitysecretvalue01" }'),
        ("version env", 'env = { DB_PASSWORD = "hf_reliabilitysecretvalue01" }'),
        ("version env", 'env = { OPENAI_API_KEY = "hf_reliabilitysecretvalue01" }'),
    ],
)
def test_credentials_in_the_manifest_are_refused_without_echo(
    project: Path, where: str, line: str, reliability: Recorder
) -> None:
    manifest = project / "mlserve.toml"
    text = manifest.read_text(encoding="utf-8")
    anchor = 'args = ["--max-model-len", "8192"]\n'
    manifest.write_text(text.replace(anchor, anchor + line + "\n", 1), encoding="utf-8")
    key = line.split("{ ")[1].split(" =")[0]
    outs = [run_cli("--project-dir", str(project), cmd, *extra) for cmd, *extra in (("validate",), ("render", "--all"))]
    reliability.case(
        "secrets",
        f"credential in the manifest ({where}: {key})",
        expected="validate and render exit 2 naming the key; the value is never printed; nothing rendered",
        measured="; ".join(f"exit {r.exit_code}" for r in outs)
        + f"; value printed: {any('reliabilitysecret' in r.output for r in outs)}",
    )
    for r in outs:
        assert r.exit_code == 2, r.output
        assert f"env.{key}: looks like a credential" in r.stderr
        assert "reliabilitysecret" not in r.output
    assert not (project / "stacks").exists() or not any(
        "reliabilitysecret" in p.read_text(errors="replace") for p in (project / "stacks").rglob("*") if p.is_file()
    )
    shutil.rmtree(project / "stacks", ignore_errors=True)
