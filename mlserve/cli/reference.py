"""The CLI reference (docs/cli.md), generated from the command tree so it cannot drift."""

from __future__ import annotations

from typing import Any

import typer


def _params(cmd: Any) -> list[str]:
    rows = []
    for p in cmd.params:
        if getattr(p, "hidden", False) or p.name == "help":
            continue
        if p.param_type_name == "argument":
            name = f"`{p.name.upper()}`" + ("..." if p.nargs == -1 else "")
            kind = "argument" + (" (required)" if p.required else "")
        else:
            name = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            kind = "flag" if p.is_flag else "option"
            if p.required:
                kind += " (required)"
            default = p.default
            if not p.is_flag and default not in (None, "", (), []) and not callable(default):
                kind += f", default `{default}`"
        help_text = (getattr(p, "help", "") or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| {name} | {kind} | {help_text} |")
    return rows


def _walk(cmd: Any, path: list[str], out: list[str]) -> None:
    name = " ".join(path)
    if path:
        out.append(f"## `{name}`\n")
        text = (cmd.help or "").strip()
        if text:
            out.append(text.replace("\b\n", "") + "\n")
        rows = _params(cmd)
        if rows:
            out.extend(["| parameter | kind | meaning |", "|---|---|---|", *rows, ""])
    sub = getattr(cmd, "commands", None)
    if sub:
        for child_name in cmd.list_commands(None):  # registration order
            _walk(sub[child_name], [*path, child_name], out)


def cli_reference_markdown(app: typer.Typer) -> str:
    root = typer.main.get_command(app)
    out = [
        "# CLI reference",
        "",
        "Generated from mlserve's command tree (`python scripts/gen_cli_reference.py`); do not edit by hand.",
        "Global options (`--project-dir`, `--json`, `--traceback`, `--no-color`, `--version`) go before the",
        "command; `--json` is also accepted after it. Exit codes are in the README.",
        "",
        "## `mlserve` (global options)",
        "",
        "| parameter | kind | meaning |",
        "|---|---|---|",
        *_params(root),
        "",
    ]
    _walk(root, [], out)
    return "\n".join(out).rstrip() + "\n"
