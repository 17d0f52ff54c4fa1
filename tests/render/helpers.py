"""Shared helpers for the render tests: rendering into a folder, running terraform offline."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlserve.tools import run

PLUGIN_MIRROR = Path("/opt/tf-plugins")


def terraform_cli_config(directory: Path) -> Path:
    """A CLI config that installs hashicorp/aws from the machine's mirror, never the network."""
    path = directory / "terraformrc"
    path.write_text(
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f'    path    = "{PLUGIN_MIRROR}"\n'
        '    include = ["registry.terraform.io/hashicorp/aws"]\n'
        "  }\n"
        "}\n",
        encoding="utf-8",
    )
    return path


def terraform_validate(layer_dir: Path, work: Path) -> str:
    """init -backend=false + validate in a temporary copy of ``layer_dir``; returns validate's output."""
    copy = work / "layer"
    shutil.copytree(layer_dir, copy)
    env = {"TF_CLI_CONFIG_FILE": str(terraform_cli_config(work)), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    run(["terraform", "init", "-backend=false", "-input=false", "-no-color"], cwd=copy, env=env, timeout=300)
    return run(["terraform", "validate", "-no-color"], cwd=copy, env=env, timeout=300).stdout


def write_layers(layers: dict[str, dict[str, str]], root: Path) -> None:
    for files in layers.values():
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
