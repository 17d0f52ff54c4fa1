"""``mlserve logs``: the end of a local process's log, or follow it."""

from __future__ import annotations

from typing import Annotated

import typer

from mlserve.cli.output import JsonFlag, get_state


def register(app: typer.Typer) -> None:
    @app.command("logs")
    def logs(
        ctx: typer.Context,
        endpoint: Annotated[str, typer.Argument(help="Endpoint (or gateway, prometheus, supervisor).")],
        version: Annotated[
            str | None,
            typer.Argument(help="Version, or a rollout arm such as control (default: every version and arm)."),
        ] = None,
        lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Lines from the end of each log.")] = 50,
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C stops).")] = False,
        json_out: JsonFlag = False,
    ) -> None:
        """Print the end of a locally deployed process's log (.mlserve/logs/)."""
        state = get_state(ctx, json_out)
        from mlserve.project import load_project
        from mlserve.targets import open_target
        from mlserve.targets.base import follow as follow_logs

        project = load_project(state.project_dir)
        files = open_target(project, None).logs(endpoint, version)
        tails = {f.label: f.tail(lines) if lines else "" for f in files}
        if state.json:
            data = {"logs": [{"name": f.label, "path": str(f.path), "tail": tails[f.label]} for f in files]}
            state.emit(data)
            return
        con = state.console()
        for f in files:
            if len(files) > 1 or follow:
                con.print(f"==> {f.label} ({f.path}) <==", markup=False, highlight=False)
            if tails[f.label]:
                con.print(tails[f.label], markup=False, highlight=False, soft_wrap=True)
        if follow:
            prefix = len(files) > 1
            for label, line in follow_logs(files):
                con.print(f"[{label}] {line}" if prefix else line, markup=False, highlight=False, soft_wrap=True)
