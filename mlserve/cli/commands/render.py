from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from mlserve.cli.output import JsonFlag, get_state
from mlserve.status import ExitStatus


def register(app: typer.Typer) -> None:
    @app.command("render")
    def render(
        ctx: typer.Context,
        env: Annotated[
            str | None,
            typer.Option("--env", "-e", help="Environment to render (default: every kubernetes environment)."),
        ] = None,
        all_envs: Annotated[bool, typer.Option("--all", help="Render every environment.")] = False,
        out: Annotated[
            Path | None, typer.Option("--out", help="Stacks folder (default: stacks/ in the project).")
        ] = None,
        check: Annotated[
            bool, typer.Option("--check", help="Render to a temporary folder and exit 1 when stacks/ is stale.")
        ] = False,
        json_out: JsonFlag = False,
    ) -> None:
        """Render Terraform and Kubernetes stacks (stacks/ENV/...) from mlserve.toml."""
        state = get_state(ctx, json_out)
        from mlserve.project import load_project
        from mlserve.render import check_environments, environments_to_render, render_environment
        from mlserve.rollout.service import live_rollouts
        from mlserve.targets.live import live_traffic

        project = load_project(state.project_dir)
        names = environments_to_render(project, env, all_envs)
        out_dir = out if out is None or out.is_absolute() else Path.cwd() / out
        if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
            from mlserve.errors import UsageError

            raise UsageError(f"--out {out}: is a file, not a folder", hint="--out names the folder the stacks go in")
        # A rollout in progress: its live traffic is rendered, not the manifest's stable split.
        live = {n: live_traffic(project, n, live_rollouts(project, n)) for n in names}
        traffic = {n: {ep: item.traffic for ep, item in found.items()} for n, found in live.items() if found}
        notes = [item.describe() for found in live.values() for item in found.values()]
        if check:
            result = check_environments(project, names, out_dir, traffic_by_env=traffic)
            data: dict[str, Any] = {
                "up_to_date": result.up_to_date,
                "environments": result.environments,
                "files": result.files,
                "differences": [{"path": d.path, "status": d.status, "diff": d.diff} for d in result.differences],
                "rollouts": notes,
            }
            state.emit(
                data,
                lambda con: _show_check(con, data),
                exit_code=ExitStatus.OK if result.up_to_date else ExitStatus.ERROR,
            )
            return
        results = [render_environment(project, n, out_dir, traffic=traffic.get(n)) for n in names]
        payload = {
            "rollouts": notes,
            "environments": [
                {
                    "environment": r.environment,
                    "dir": str(r.env_dir),
                    "layers": r.layers,
                    "written": r.written,
                    "unchanged": r.unchanged,
                    "removed": r.removed,
                }
                for r in results
            ],
        }
        state.emit(payload, lambda con: _show(con, payload))


def _show(con: Console, data: dict[str, Any]) -> None:
    for note in data.get("rollouts") or []:
        con.print(escape(note))
    for r in data["environments"]:
        if not r["layers"]:
            con.print(f"[dim]{escape(r['environment'])}: local environment, nothing to render[/]")
            continue
        total = sum(len(v) for v in r["layers"].values())
        con.print(
            f"[green]rendered[/] {escape(r['environment'])} -> {escape(r['dir'])}: {total} files "
            f"({len(r['written'])} written, {len(r['unchanged'])} unchanged, {len(r['removed'])} removed)"
        )
        for layer, files in r["layers"].items():
            con.print(f"  {layer}: {len(files)} files")
        for f in r["removed"]:
            con.print(f"  [yellow]removed[/] {escape(f)}")


def _show_check(con: Console, data: dict[str, Any]) -> None:
    for note in data.get("rollouts") or []:
        con.print(escape(note))
    if data["up_to_date"]:
        con.print(f"[green]up to date[/]: {data['files']} files in {', '.join(data['environments'])}")
        return
    con.print(f"[red]stale[/]: {len(data['differences'])} of the rendered files differ; run `mlserve render`")
    for d in data["differences"]:
        con.print(f"  {d['status']:<8} {escape(d['path'])}")
    for d in data["differences"]:
        if d["diff"]:
            con.print(d["diff"], markup=False, highlight=False)
