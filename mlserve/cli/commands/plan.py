"""``mlserve plan``: what a deploy of a kubernetes environment would change, layer by layer.

Also home of the display shared by ``plan``, ``deploy`` and ``destroy`` on kubernetes
environments: a spinner per layer fed by Terraform's streamed output, and the tail of
that output when a layer fails.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlserve.cli.output import JsonFlag, State, get_state

if TYPE_CHECKING:
    from mlserve.project import Project
    from mlserve.targets.base import LayeredTarget

LayerOpt = Annotated[
    str | None,
    typer.Option("--layer", "-l", help="Only this layer: cluster, platform or kubernetes (default: all, in order)."),
]
PluginDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--plugin-dir",
        help="Terraform provider mirror to install providers from (default: $MLSERVE_TF_PLUGIN_DIR).",
        envvar="MLSERVE_TF_PLUGIN_DIR",
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
EnvOpt = Annotated[str, typer.Option("--env", "-e", help="A kubernetes environment of mlserve.toml.")]
TAIL_LINES = 20


class LayerProgress:
    """A spinner naming the layer and its step, with the latest Terraform line under it."""

    def __init__(self, con: Console, err: Console | None = None) -> None:
        self.con = con
        self.err = err or con
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.phase = ""
        self._status: Any = None

    def say(self, message: str) -> None:
        self.phase = message
        if self._status is not None:
            self._status.update(f"[bold]{escape(message)}[/]")
        else:
            self.con.print(escape(message))

    def line(self, layer: str, text: str) -> None:
        self.tail.append(f"{layer}: {text}")
        if self._status is not None:
            self._status.update(f"[bold]{escape(self.phase)}[/]\n  [dim]{escape(text[:110])}[/]")

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the spinner while a question is asked."""
        if self._status is None:
            yield
            return
        self._status.stop()
        try:
            yield
        finally:
            self._status.start()

    @contextmanager
    def running(self) -> Iterator[LayerProgress]:
        from mlserve.errors import ToolError

        try:
            if self.con.is_terminal:
                with self.con.status("starting", spinner="dots") as status:
                    self._status = status
                    yield self
            else:
                yield self
        except ToolError:
            if self.tail:
                self.err.print(f"[dim]last {len(self.tail)} lines of output:[/]")
                for line in self.tail:
                    self.err.print(f"  [dim]{escape(line)}[/]")
            raise
        finally:
            self._status = None


def layered_target(
    state: State, project: Project, env: str, plugin_dir: Path | None, progress: LayerProgress
) -> LayeredTarget:
    """The target of ``--env`` for the commands that work layer by layer (plan, destroy)."""
    from mlserve.errors import UsageError
    from mlserve.rollout.service import live_rollouts
    from mlserve.targets import open_target
    from mlserve.targets.base import Options

    name = project.environment(env)
    options = Options(
        say=progress.say, on_line=progress.line, plugin_dir=plugin_dir, rollouts=live_rollouts(project, name)
    )
    target = open_target(project, name, options)
    if not target.layered:
        raise UsageError(
            f"environment {name!r} is local: `mlserve {state.command or 'plan'}` works on kubernetes environments",
            hint="`mlserve deploy` / `mlserve down` run and stop a local environment",
        )
    return cast("LayeredTarget", target)


def result_data(result: Any) -> dict[str, Any]:
    return dataclasses.asdict(result)


def confirm_or_refuse(
    yes: bool, what: str, progress: LayerProgress | None = None
) -> Callable[[str, dict[str, Any]], bool] | None:
    """None when --yes; else a prompt, or a usage error (exit 2) when nobody can answer it."""
    from mlserve.errors import UsageError

    if yes:
        return None
    if not sys.stdin.isatty():
        raise UsageError(f"{what} needs --yes when not run from a terminal (nothing was changed)")

    def ask(layer: str, changes: dict[str, Any]) -> bool:
        summary = _describe(changes)
        if progress is None:
            return typer.confirm(f"{what}: {layer} layer ({summary}). Go ahead?", default=False, err=True)
        with progress.paused():
            return typer.confirm(f"{what}: {layer} layer ({summary}). Go ahead?", default=False, err=True)

    return ask


def deploy_layered(
    state: State,
    target: LayeredTarget,
    progress: LayerProgress,
    *,
    layer: str | None,
    yes: bool,
    timeout: float | None,
) -> None:
    """`mlserve deploy` of a layered target: per layer init, plan, apply only on changes."""
    from mlserve.targets.base import DeployRequest

    target.select(layer)  # a bad --layer is a usage error before anything runs
    confirm = confirm_or_refuse(yes, f"deploy {target.env_name}", progress)
    state.out.print(f"deploying environment [bold]{escape(str(target.env_name))}[/] (target {target.kind})")
    with progress.running():
        result = target.deploy(DeployRequest(timeout=timeout, layer=layer, confirm=confirm))
    data = result_data(result)
    state.emit(data, lambda con: show_result(con, data))


def show_status(con: Console, s: dict[str, Any]) -> None:
    if not s["deployed"]:
        con.print(f"environment {escape(s['env'])} is not deployed (`mlserve deploy --env {escape(s['env'])}`)")
    table = Table(title=f"Kubernetes environment: {escape(s['env'])}", title_justify="left")
    for col in ("layer", "deployed", "applied at", "drift"):
        table.add_column(col)
    for layer in s["layers"]:
        drift = "; ".join(layer["drift"]) if layer["deployed"] else "-"
        table.add_row(
            layer["layer"],
            "yes" if layer["deployed"] else "no",
            escape(layer["applied_at"] or "-"),
            f"[yellow]{escape(drift)}[/]" if layer["deployed"] and layer["drift"] else escape(drift or "in sync"),
        )
    con.print(table)
    for layer in s["layers"]:
        for name, value in layer["outputs"].items():
            con.print(f"{layer['layer']}.{escape(name)} = {escape(str(value))}")
    for ep in s["endpoints"]:
        weights = ", ".join(f"{k} {v}%" for k, v in ep["weights"].items()) or "-"
        ready = "[green]ready[/]" if ep["ready"] else "[red]not ready[/]"
        con.print(f"endpoint {escape(str(ep['name']))}: {ready}; weights {escape(weights)}")
    for p in s["problems"]:
        con.print(f"[yellow]warning:[/] {escape(p)}")


def _describe(changes: dict[str, Any] | None) -> str:
    if not changes:
        return ""
    if "add" not in changes:
        return "changes" if changes.get("has_changes") else "no changes"
    if not changes["has_changes"]:
        return "no changes"
    parts = [f"{changes[a]} to {a}" for a in ("add", "change", "replace", "destroy") if changes.get(a)]
    if not parts and changes.get("output_changes"):
        parts.append(f"{len(changes['output_changes'])} output(s) to update")
    return ", ".join(parts)


def show_result(con: Console, r: dict[str, Any]) -> None:
    verb = {"plan": "plan for", "deploy": "deployed", "destroy": "destroyed"}[r["operation"]]
    for layer in r["layers"]:
        name, action = layer["layer"], layer["action"]
        changes = layer.get("changes")
        if action == "planned":
            con.print(f"[bold]{name}[/] ({layer['tool']}): {escape(_describe(changes))}")
        elif action == "unchanged":
            con.print(f"[bold]{name}[/]: [green]no changes[/], nothing applied")
        elif action == "applied":
            if layer["tool"] == "terraform":
                con.print(
                    f"[bold]{name}[/]: [green]applied[/] {layer['added']} added, {layer['changed']} changed, "
                    f"{layer['destroyed']} destroyed in {layer['seconds']:.1f}s"
                )
            else:
                con.print(f"[bold]{name}[/]: [green]applied[/] (kubectl apply --server-side), endpoints ready")
        elif action == "destroyed":
            count = f"{layer['destroyed']} resources " if layer["tool"] == "terraform" else ""
            con.print(f"[bold]{name}[/]: [green]destroyed[/] {count}in {layer['seconds']:.1f}s")
        elif action == "absent":
            con.print(f"[bold]{name}[/]: nothing deployed, nothing to destroy")
        if changes and changes.get("by_type") and action in ("planned", "applied"):
            table = Table(show_edge=False, pad_edge=False, box=None)
            for col in ("resource type", "add", "change", "replace", "destroy"):
                table.add_column(col, justify="left" if col == "resource type" else "right")
            for rtype, row in changes["by_type"].items():
                table.add_row(
                    escape(rtype), *(str(row[a]) if row[a] else "-" for a in ("add", "change", "replace", "destroy"))
                )
            con.print(table)
            if action == "planned":
                for res in changes["resources"]:
                    why = f" (forced by {', '.join(res['replace_paths'])})" if res["replace_paths"] else ""
                    con.print(f"  {res['action']:<8} {escape(res['address'])}{escape(why)}")
    if r["operation"] == "deploy" and not r["changed"]:
        con.print(f"[green]up to date[/] {escape(r['env'])}: nothing changed, nothing applied")
    elif r["operation"] == "plan" and not r["changed"]:
        con.print(f"{escape(r['env'])}: no changes; a deploy would apply nothing")
    elif r["operation"] != "plan":
        con.print(f"{verb} {escape(r['env'])} in {r['seconds']:.1f}s")


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan(
        ctx: typer.Context,
        env: EnvOpt,
        layer: LayerOpt = None,
        plugin_dir: PluginDirOpt = None,
        json_out: JsonFlag = False,
    ) -> None:
        """Show what `mlserve deploy` would change, per layer (terraform plan, kubectl diff). Changes nothing."""
        state = get_state(ctx, json_out)
        from mlserve.project import load_project

        project = load_project(state.project_dir)
        progress = LayerProgress(state.out, state.console(stderr=True))
        target = layered_target(state, project, env, plugin_dir, progress)
        with progress.running():
            result = target.plan(layer)
        data = result_data(result)
        state.emit(data, lambda con: show_result(con, data))
