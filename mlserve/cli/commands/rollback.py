"""``mlserve rollback ENDPOINT``: all traffic back to the baseline, now."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from mlserve.cli.output import JsonFlag, get_state


def register(app: typer.Typer) -> None:
    @app.command("rollback")
    def rollback(
        ctx: typer.Context,
        endpoint: Annotated[str, typer.Argument(help="Endpoint name (from mlserve.toml).")],
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Environment, when no rollout is on record.")
        ] = None,
        json_out: JsonFlag = False,
    ) -> None:
        """Return all traffic to the baseline. A rollout in progress is ended as rolled back."""
        state = get_state(ctx, json_out)
        from mlserve.cli.commands.rollout import _show
        from mlserve.project import load_project
        from mlserve.rollout import machine

        res = machine.rollback(load_project(state.project_dir), endpoint, env=env)
        if isinstance(res, dict):
            data: dict[str, Any] = res
            state.emit(data, lambda c: _plain(c, data))
            return
        state.emit(res.to_dict(), lambda c: _show(c, res), exit_code=0 if res.state["status"] == "rolled_back" else 4)


def _plain(con: Console, data: dict[str, Any]) -> None:
    weights = ", ".join(f"{v} {w}%" for v, w in data["weights"].items())
    con.print(f"{escape(data['endpoint'])} ({escape(data['env'])}): traffic reset to {escape(weights)}")
