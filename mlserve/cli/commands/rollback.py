"""``mlserve rollback ENDPOINT``: all traffic back to the baseline, now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from mlserve.cli.output import JsonFlag, get_state

if TYPE_CHECKING:
    from mlserve.rollout.service import TrafficReset


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
        from mlserve.cli.commands.rollout import show
        from mlserve.project import load_project
        from mlserve.rollout import service

        res = service.rollback(load_project(state.project_dir), endpoint, env=env)
        reset = res.reset
        if reset is not None:
            state.emit(res.to_dict(), lambda c: _plain(c, reset), exit_code=res.exit_code)
            return
        state.emit(res.to_dict(), lambda c: show(c, res), exit_code=res.exit_code)


def _plain(con: Console, reset: TrafficReset) -> None:
    from mlserve import format as fmt

    con.print(f"{escape(reset.endpoint)} ({escape(reset.env)}): traffic reset to {escape(fmt.weights(reset.weights))}")
