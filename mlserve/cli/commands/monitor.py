from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlserve.cli.output import JsonFlag, get_state


def register(app: typer.Typer) -> None:
    @app.command("monitor")
    def monitor(
        ctx: typer.Context,
        endpoint: Annotated[str, typer.Argument(help="Endpoint to watch.")],
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Environment (default: the first local one).")
        ] = None,
        interval: Annotated[str, typer.Option("--interval", "-i", help="Time between refreshes (1s-1h).")] = "2s",
        window: Annotated[str, typer.Option("--window", "-w", help="Trailing window of the rates (5s-1d).")] = "1m",
        count: Annotated[
            int | None, typer.Option("--count", "-n", min=1, help="Stop after this many refreshes (default: Ctrl-C).")
        ] = None,
        json_out: JsonFlag = False,
    ) -> None:
        """Live view of an endpoint per version: requests/s, p50/p99, errors, drift, positive share, alerts.

        Ctrl-C stops it (exit 130, like every interrupted command); with --count it exits 0
        after that many refreshes. --json prints one sample and exits 0.
        """
        state = get_state(ctx, json_out)
        from mlserve.cli.monitoring import duration_option, source_for
        from mlserve.monitoring.alerts import read_alerts
        from mlserve.monitoring.view import prometheus_query, sample
        from mlserve.project import load_project

        project = load_project(state.project_dir)
        # what the user typed is checked before asking the environment (a usage error, exit 2)
        project.endpoint(endpoint, project.environment(env))
        every = duration_option(interval, "--interval", 1.0, 3600.0)
        span = duration_option(window, "--window", 5.0, 86400.0)
        src = source_for(project, env)
        ep = project.manifest.endpoints[endpoint]
        versions = list(ep.versions)
        threshold = ep.monitoring.psi_threshold if ep.monitoring else None
        query = prometheus_query(src.prometheus_url)

        def take() -> Any:
            try:
                alerts = read_alerts(src.prometheus_url)
            except Exception:  # alerts are extra: a view without them beats no view
                alerts = []
            return sample(
                query,
                endpoint,
                versions,
                window=span,
                source=src.source,
                namespace=src.namespace,
                drift_threshold=threshold,
                alerts=alerts,
            )

        if state.json:
            data = dataclasses.asdict(take())
            state.emit(data)
            return
        con = state.console()
        if con.is_terminal:
            from rich.live import Live

            with Live(_table(take()), console=con, auto_refresh=False, transient=False) as live:
                done = 1
                while count is None or done < count:
                    time.sleep(every)
                    live.update(_table(take()), refresh=True)
                    done += 1
            return
        for i in range(count or 1_000_000_000):
            if i:
                time.sleep(every)
            con.print(_table(take()))


def _num(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "ms":
        return f"{value * 1000:.1f}"
    if kind == "pct":
        return f"{value * 100:.2f}%"
    if kind == "rps":
        return f"{value:.1f}"
    return f"{value:.3f}"


def _table(s: Any) -> Table:
    from datetime import datetime

    at = datetime.fromtimestamp(s.at).strftime("%H:%M:%S")
    table = Table(
        title=f"{escape(s.endpoint)} at {at} (rates over {s.window_seconds:g}s, {escape(s.source)})",
        title_justify="left",
    )
    for col in (
        "version",
        "weight",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "input drift (PSI)",
        "pred. drift",
        "positives",
    ):
        table.add_column(col, justify="left" if col in ("version", "input drift (PSI)") else "right")
    thr = s.drift_threshold
    for r in s.versions:
        drift = _num(r.input_drift_psi, "psi")
        if r.input_drift_psi is not None:
            drift += f" {escape(r.input_drift_feature or '')}"
            if thr is not None and r.input_drift_psi > thr:
                drift = f"[red]{drift}[/]"
        pred = _num(r.prediction_drift_psi, "psi")
        if thr is not None and r.prediction_drift_psi is not None and r.prediction_drift_psi > thr:
            pred = f"[red]{pred}[/]"
        table.add_row(
            escape(r.version),
            "-" if r.weight is None else f"{r.weight:g}%",
            _num(r.requests_per_second, "rps"),
            _num(r.p50_seconds, "ms"),
            _num(r.p99_seconds, "ms"),
            _num(r.error_ratio, "pct"),
            drift,
            pred,
            _num(r.positive_share, "pct"),
        )
    firing = [a for a in s.alerts if a.get("state") == "firing"]
    table.caption = (
        "alerts: " + escape("; ".join(f"{a['name']} {a.get('variant') or ''} ({a.get('severity')})" for a in firing))
        if firing
        else "alerts: none firing"
    )
    table.caption_justify = "left"
    return table


def show(con: Console, s: Any) -> None:
    con.print(_table(s))
