from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mlserve.cli.output import JsonFlag, get_state


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def validate(ctx: typer.Context, json_out: JsonFlag = False) -> None:
        """Check mlserve.toml and summarise endpoints, environments, GPUs and rollout policies."""
        state = get_state(ctx, json_out)
        from mlserve.manifest.summary import summarize
        from mlserve.project import load_project

        project = load_project(state.project_dir)
        summary = summarize(project.manifest, project.root)
        summary["manifest"] = str(project.manifest_path)
        state.emit(summary, lambda con: _show(con, summary))


def _show(con: Console, s: dict[str, Any]) -> None:
    con.print(f"[green]valid[/] {escape(s['manifest'])}: project [bold]{escape(s['project'])}[/]")
    eps = Table(title="Endpoints", title_justify="left")
    for col in ("endpoint", "runtime", "baseline", "versions", "resources", "replicas", "SLO"):
        eps.add_column(col)
    for e in s["endpoints"]:
        res = f"{e['cpu']} CPU, {e['memory']}"
        if e["gpu"]:
            res += f", {e['gpu']}x {e['gpu_type'] or 'GPU'}"
        slo = []
        if e["slo"]["p99_latency_seconds"] is not None:
            slo.append(f"p99<={e['slo']['p99_latency_seconds'] * 1000:g}ms")
        if e["slo"]["error_rate"] is not None:
            slo.append(f"errors<={e['slo']['error_rate'] * 100:g}%")
        eps.add_row(
            *_plain(
                e["name"],
                e["runtime"],
                e["baseline"],
                ", ".join(e["versions"]),
                res,
                f"{e['replicas'][0]}-{e['replicas'][1]}",
                ", ".join(slo) or "-",
            )
        )
    con.print(eps)
    envs = Table(title="Environments", title_justify="left")
    for col in ("environment", "target", "serving", "cluster", "namespace", "endpoints"):
        envs.add_column(col)
    for e in s["environments"]:
        envs.add_row(
            *_plain(
                e["name"],
                e["target"],
                e["serving"] or "-",
                e["cluster"] or "-",
                e["namespace"] or "-",
                ", ".join(e["endpoints"]),
            )
        )
    con.print(envs)
    pol = Table(title="Rollout policies", title_justify="left")
    for col in ("endpoint", "strategy", "steps", "interval", "alpha", "min requests", "metrics"):
        pol.add_column(col)
    for e in s["endpoints"]:
        r = e["rollout"]
        metrics = []
        for m in r["metrics"]:
            label = m["name"] + (f" (q={m['quantile']})" if m["quantile"] else "")
            metrics.append(f"{label} margin {m['margin']}" + (" [critical]" if m["critical"] else ""))
        pol.add_row(
            *_plain(
                e["name"],
                r["strategy"],
                " ".join(f"{x}%" for x in r["steps"]),
                r["interval"],
                f"{r['alpha']:g}",
                str(r["min_requests"]),
                "\n".join(metrics),
            )
        )
    con.print(pol)
    if s["gpus"]:
        con.print(f"GPUs per replica across endpoints: {escape(str(s['gpus']))}")
    for w in s["warnings"]:
        con.print(f"[yellow]warning:[/] {escape(w)}")


def _plain(*cells: str) -> list[Text]:
    """Table cells shown as written: a metric marked ``[critical]`` or a name with brackets is
    not read as rich markup."""
    return [Text(c) for c in cells]
