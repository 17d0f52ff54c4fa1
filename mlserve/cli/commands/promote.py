"""``mlserve promote ENDPOINT [--force]``: make the candidate of the current rollout the baseline."""

from __future__ import annotations

from typing import Annotated

import typer

from mlserve.cli.output import JsonFlag, get_state


def register(app: typer.Typer) -> None:
    @app.command("promote")
    def promote(
        ctx: typer.Context,
        endpoint: Annotated[str, typer.Argument(help="Endpoint name (from mlserve.toml).")],
        force: Annotated[
            bool, typer.Option("--force", help="Promote without a promote verdict (recorded in events and report).")
        ] = False,
        json_out: JsonFlag = False,
    ) -> None:
        """Send all traffic to the candidate and write `baseline = "V"` into mlserve.toml.

        Only on a promote verdict of the current rollout, unless --force.
        """
        state = get_state(ctx, json_out)
        from mlserve.cli.commands.rollout import show
        from mlserve.project import load_project
        from mlserve.rollout import service

        res = service.promote(load_project(state.project_dir), endpoint, force=force)
        state.emit(res.to_dict(), lambda c: show(c, res), exit_code=res.exit_code)
