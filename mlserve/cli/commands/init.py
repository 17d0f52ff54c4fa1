from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from mlserve.cli.output import JsonFlag, get_state


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        ctx: typer.Context,
        directory: Annotated[Path, typer.Argument(help="Where to create the project.")] = Path("."),
        force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
        json_out: JsonFlag = False,
    ) -> None:
        """Create a working project: manifest, two trained model versions, CI templates."""
        state = get_state(ctx, json_out)
        from mlserve.scaffold import scaffold

        with state.out.status("training the fraud models and the chat model ..."):
            result = scaffold(directory, force=force)

        def human(con: Console) -> None:
            con.print(f"[green]created[/] project [bold]{escape(result.project_name)}[/] in {escape(str(result.root))}")
            for rel in result.written:
                note = " [yellow](overwritten)[/]" if rel in result.overwritten else ""
                con.print(f"  {escape(rel)}{note}")
            for line in result.notes:
                con.print(f"[yellow]note:[/] {escape(line)}")
            con.print(f"\nnext: [bold]mlserve --project-dir {escape(shlex.quote(str(directory)))} validate[/]")

        state.emit(
            {
                "project": result.project_name,
                "directory": str(result.root),
                "written": result.written,
                "overwritten": result.overwritten,
                "notes": result.notes,
            },
            human,
        )
