from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlserve.cli.output import JsonFlag, get_state


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status(
        ctx: typer.Context,
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Environment (default: the first local one).")
        ] = None,
        json_out: JsonFlag = False,
    ) -> None:
        """Show what runs: endpoint, version, pid, port, health, traffic weight, Prometheus target health, alerts.

        Exit 0 whether or not anything is deployed (the JSON says which).
        """
        state = get_state(ctx, json_out)
        from mlserve.project import load_project
        from mlserve.rollout.service import live_rollouts
        from mlserve.targets import open_target
        from mlserve.targets.base import Options

        project = load_project(state.project_dir)
        name = project.environment(env)
        # a kubernetes environment's drift is judged against the traffic of its rollouts in progress
        target = open_target(project, name, Options(rollouts=live_rollouts(project, name)))
        data = dataclasses.asdict(target.status())
        if target.layered:
            from mlserve.cli.commands.plan import show_status

            state.emit(data, lambda con: show_status(con, data))
            return
        data["requested_env"] = target.env_name
        state.emit(data, lambda c: _show(c, data))


def _show(con: Console, s: dict[str, Any]) -> None:
    if not s["deployed"]:
        con.print(f"environment {escape(s['requested_env'])} is not deployed locally (`mlserve deploy` starts it)")
        return
    if s["env"] != s["requested_env"]:
        con.print(f"[yellow]note:[/] the local deployment runs environment {escape(str(s['env']))}")
    from rich import box

    table = Table(
        title=f"Local deployment: {escape(str(s['env']))}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    for col in ("endpoint", "version", "pid", "port", "status", "health", "weight", "scrape", "restarts"):
        table.add_column(col, no_wrap=True)
    colours = {"ok": "green", "failing": "red", "down": "red", "up": "green"}
    for r in s["rows"]:
        endpoint = r["endpoint"] or r["name"]
        health = r["health"]
        target = r["prometheus_target"] or "-"
        table.add_row(
            escape(endpoint),
            escape(r["version"] or "-"),
            str(r["pid"] or "-"),
            str(r["port"]),
            escape(r["status"]),
            f"[{colours.get(health, 'yellow')}]{escape(str(health))}[/]",
            f"{r['weight']}%" if r["weight"] is not None else "-",
            f"[{colours.get(target, 'yellow')}]{escape(str(target))}[/]" if target != "-" else "-",
            str(r["restarts"]),
        )
    con.print(table)
    con.print("scrape: the Prometheus target's health (up/down)")
    for ep, t in s["traffic"].items():
        extra = f", shadow {t['shadow']['percent']}% to {t['shadow']['version']}" if t.get("shadow") else ""
        con.print(f"traffic {escape(ep)}: mode {escape(str(t['mode']))}{escape(extra)}")
    con.print(f"gateway     {escape(str(s['gateway_url']))}")
    con.print(f"prometheus  {escape(str(s['prometheus_url']))}")
    sup = f"pid {s['supervisor_pid']}" if s["supervisor_alive"] else "[red]not running[/]"
    con.print(f"supervisor  {sup}")
    _alerts(con, s.get("alerts") or [])
    for p in s["problems"]:
        con.print(f"[yellow]warning:[/] {escape(p)}")


def _alerts(con: Console, alerts: list[dict[str, Any]]) -> None:
    firing = [a for a in alerts if a["state"] == "firing"]
    pending = len(alerts) - len(firing)
    if not firing:
        con.print(f"alerts      none firing{f' ({pending} pending)' if pending else ''}")
        return
    from rich import box

    table = Table(
        title=f"Firing alerts: {len(firing)}{f' ({pending} pending)' if pending else ''}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    for col in ("alert", "severity", "endpoint", "version", "since", "details"):
        table.add_column(col, no_wrap=col != "details")
    for a in firing:
        extra = ", ".join(
            f"{k}={v}" for k, v in sorted(a["labels"].items()) if k in ("long_window", "short_window", "feature")
        )
        colour = "red" if a["severity"] == "page" else "yellow"
        table.add_row(
            f"[{colour}]{escape(a['name'])}[/]",
            escape(a["severity"]),
            escape(a["endpoint"]),
            escape(a["variant"] or "-"),
            escape(a["since"][:19].replace("T", " ")),
            escape(a["summary"] + (f" [{extra}]" if extra else "")),
        )
    con.print(table)
