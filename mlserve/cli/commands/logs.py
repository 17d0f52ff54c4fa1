from __future__ import annotations

from typing import Annotated

import typer

from mlserve.cli.output import JsonFlag, get_state


def register(app: typer.Typer) -> None:
    @app.command("logs")
    def logs(
        ctx: typer.Context,
        endpoint: Annotated[str, typer.Argument(help="Endpoint (or gateway, prometheus, supervisor).")],
        version: Annotated[str | None, typer.Argument(help="Version (default: every version).")] = None,
        lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Lines from the end of each log.")] = 50,
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C stops).")] = False,
        json_out: JsonFlag = False,
    ) -> None:
        """Print the end of a locally deployed process's log (.mlserve/logs/)."""
        state = get_state(ctx, json_out)
        from mlserve.local.lifecycle import follow as follow_logs
        from mlserve.local.lifecycle import log_files, log_tail
        from mlserve.project import load_project

        project = load_project(state.project_dir)
        files = log_files(project, endpoint, version)
        tails = {label: log_tail(path, lines) if lines else "" for label, path in files}
        if state.json:
            data = {"logs": [{"name": label, "path": str(path), "tail": tails[label]} for label, path in files]}
            state.emit(data)
            return
        con = state.console()
        for label, path in files:
            if len(files) > 1 or follow:
                con.print(f"==> {label} ({path}) <==", markup=False, highlight=False)
            if tails[label]:
                con.print(tails[label], markup=False, highlight=False, soft_wrap=True)
        if follow:
            prefix = len(files) > 1
            for label, line in follow_logs(files):
                con.print(f"[{label}] {line}" if prefix else line, markup=False, highlight=False, soft_wrap=True)
