"""``mlserve destroy``: tear a kubernetes environment down, last layer first."""

from __future__ import annotations

import typer

from mlserve.cli.commands.plan import (
    EnvOpt,
    LayerOpt,
    LayerProgress,
    PluginDirOpt,
    YesOpt,
    layered_target,
    result_data,
    show_result,
)
from mlserve.cli.output import JsonFlag, get_state


def register(app: typer.Typer) -> None:
    @app.command("destroy")
    def destroy(
        ctx: typer.Context,
        env: EnvOpt,
        layer: LayerOpt = None,
        yes: YesOpt = False,
        plugin_dir: PluginDirOpt = None,
        json_out: JsonFlag = False,
    ) -> None:
        """Destroy a kubernetes environment's layers in reverse order (kubernetes, platform, cluster).

        Asks first unless --yes; without a terminal and without --yes it refuses (exit 2).
        """
        state = get_state(ctx, json_out)
        import sys

        from mlserve.errors import MlserveError, UsageError
        from mlserve.project import load_project

        project = load_project(state.project_dir)
        progress = LayerProgress(state.out, state.console(stderr=True))
        target = layered_target(state, project, env, plugin_dir, progress)
        chosen = list(reversed(target.select(layer)))
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("destroy needs --yes when not run from a terminal (nothing was destroyed)")
            question = f"Destroy the {', '.join(chosen)} layer(s) of environment {target.env_name}?"
            if not typer.confirm(question, default=False, err=True):
                raise MlserveError("destroy cancelled: nothing was destroyed")
        with progress.running():
            result = target.teardown(layer)
        data = result_data(result)
        state.emit(data, lambda con: show_result(con, data))
