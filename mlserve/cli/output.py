"""How commands speak: a rich console for people, a versioned JSON envelope for CI.

Every command ends in ``State.emit``: with ``--json`` it prints exactly one JSON
document on stdout, ``{"mlserve": 1, "command", "ok", "exit_code", "result"}``, or
``"error"`` instead of ``"result"`` when the command failed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mlserve.errors import MlserveError

ENVELOPE_VERSION = 1

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document (versioned envelope) on stdout.")]


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=_default, allow_nan=False, ensure_ascii=False)


@dataclasses.dataclass
class State:
    project_dir: Path = Path(".")
    json: bool = False
    traceback: bool = False
    no_color: bool = False
    command: str = ""

    def console(self, stderr: bool = False) -> Console:
        no_color = self.no_color or "NO_COLOR" in os.environ
        return Console(
            file=sys.stderr if stderr else sys.stdout,
            no_color=no_color,
            highlight=False,
            soft_wrap=not (sys.stderr if stderr else sys.stdout).isatty(),
        )

    @property
    def out(self) -> Console:
        """Where progress goes: stderr under --json, so stdout stays one document."""
        return self.console(stderr=self.json)

    def emit(self, result: Any, human: Callable[[Console], None] | None = None, exit_code: int = 0) -> None:
        if self.json:
            envelope = {
                "mlserve": ENVELOPE_VERSION,
                "command": self.command,
                "ok": True,
                "exit_code": exit_code,
                "result": result,
            }
            sys.stdout.write(to_json(envelope) + "\n")
        elif human is not None:
            human(self.console())
        if exit_code:
            raise typer.Exit(exit_code)

    def emit_error(self, err: MlserveError) -> None:
        if self.json:
            envelope = {
                "mlserve": ENVELOPE_VERSION,
                "command": self.command,
                "ok": False,
                "exit_code": err.exit_code,
                "error": err.to_dict(),
            }
            sys.stdout.write(to_json(envelope) + "\n")
            return
        con = self.console(stderr=True)
        con.print(f"[bold red]error:[/] {_escape(err.message)}")
        if err.hint:
            con.print(f"[yellow]hint:[/] {_escape(err.hint)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def get_state(ctx: typer.Context, json_flag: bool = False) -> State:
    """The global state, with a command-level ``--json`` folded in."""
    root = ctx.find_root()
    state = root.obj if isinstance(root.obj, State) else State()
    root.obj = state
    if json_flag:
        state.json = True
    state.command = " ".join(_command_path(ctx))
    return state


def _command_path(ctx: typer.Context) -> list[str]:
    names: list[str] = []
    node: Any = ctx
    while node is not None and node.parent is not None:
        if node.info_name:
            names.append(node.info_name)
        node = node.parent
    return list(reversed(names))
