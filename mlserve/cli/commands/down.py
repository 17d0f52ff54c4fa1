"""``mlserve down``: stop the project's local processes."""

from __future__ import annotations

import dataclasses
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from mlserve.cli.output import JsonFlag, get_state
from mlserve.status import ExitStatus


def register(app: typer.Typer) -> None:
    @app.command("down")
    def down(ctx: typer.Context, json_out: JsonFlag = False) -> None:
        """Stop every local process of this project (also after the supervisor was killed)."""
        state = get_state(ctx, json_out)
        from mlserve.project import load_project
        from mlserve.targets import open_target
        from mlserve.targets.base import Options

        project = load_project(state.project_dir)
        con = state.out
        result = open_target(project, None, Options(say=lambda m: con.print(escape(m)))).teardown()
        data = dataclasses.asdict(result)
        code = ExitStatus.ERROR if result.leftover else ExitStatus.OK
        state.emit(data, lambda c: _show(c, data), exit_code=code)


def _show(con: Console, r: dict[str, Any]) -> None:
    if r["leftover"]:
        con.print(f"[red]still running after SIGKILL:[/] pids {', '.join(map(str, r['leftover']))}")
    elif r["was_running"]:
        con.print(f"[green]stopped[/] {len(r['stopped'])} process(es); logs kept under .mlserve/logs/")
    else:
        con.print("nothing was running")
