from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlserve.cli.output import JsonFlag, get_state

if TYPE_CHECKING:
    from mlserve.loadtest.core import Progress


def register(app: typer.Typer) -> None:
    @app.command("loadtest")
    def loadtest(
        ctx: typer.Context,
        endpoint: Annotated[str, typer.Argument(help="Endpoint to load (a name in mlserve.toml).")],
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Environment (default: the first local one).")
        ] = None,
        users: Annotated[int, typer.Option("--users", "-u", help="Concurrent simulated users (1-1000).")] = 10,
        spawn_rate: Annotated[
            float | None, typer.Option("--spawn-rate", "-r", help="Users started per second (default: all at once).")
        ] = None,
        duration: Annotated[
            str, typer.Option("--duration", "-t", help="How long to load: 30s, 5m, 1h (1s-1h).")
        ] = "60s",
        rps: Annotated[float | None, typer.Option("--rps", help="Cap on requests per second over all users.")] = None,
        payload: Annotated[
            Path | None,
            typer.Option(
                "--payload", help="JSONL file of V2 inference requests (default: synthesised from the declared input)."
            ),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option("--out", "-o", help="Output folder (default: experiments/ENDPOINT/loadtest-TIMESTAMP/)."),
        ] = None,
        url: Annotated[
            str | None,
            typer.Option("--url", help="Gateway base URL (default: the deployed environment's; loopback for local)."),
        ] = None,
        json_out: JsonFlag = False,
    ) -> None:
        """Load-test an endpoint with locust; exit 3 when it breaks its SLO (p99 latency, error rate)."""
        state = get_state(ctx, json_out)
        from mlserve.loadtest.core import parse_duration_option, plan_loadtest, run_loadtest
        from mlserve.project import load_project

        project = load_project(state.project_dir)
        plan = plan_loadtest(
            project,
            endpoint,
            env=env,
            users=users,
            spawn_rate=spawn_rate,
            duration=parse_duration_option(duration),
            rps_cap=rps,
            payload_file=payload,
            out_dir=out,
            url=url,
        )
        con = state.out
        cap = f", at most {plan.options.rps_cap:g} req/s" if plan.options.rps_cap else ""
        con.print(
            f"load test [bold]{escape(endpoint)}[/] at {escape(plan.url)}: {plan.options.users} users "
            f"for {plan.options.duration:g}s{cap}; payloads {escape(plan.payload_source)}"
        )
        try:
            with _ProgressView(con, plan.options.duration) as view:
                result = run_loadtest(plan, view.update)
        except KeyboardInterrupt:
            con.print(f"stopped early; the reports so far are in {escape(str(plan.out_dir))}")
            raise
        data = result.to_dict()
        state.emit(data, lambda c: _show(c, data), exit_code=result.exit_code)


class _ProgressView:
    """A live bar on a terminal; a line every few seconds otherwise (CI logs)."""

    def __init__(self, con: Console, duration: float) -> None:
        self.con = con
        self.duration = duration
        self.live = con.is_terminal
        self.every = max(5.0, duration / 10.0)
        self._next = 1.0  # the first line once requests flow
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _ProgressView:
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[elapsed]}"),
                TextColumn("users {task.fields[users]}"),
                TextColumn("{task.fields[rps]} req/s"),
                TextColumn("failures {task.fields[failures]}"),
                console=self.con,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "locust", total=self.duration, elapsed="starting", users=0, rps="0", failures=0
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, p: Progress) -> None:
        if p.state != "running":
            if self._progress is not None:
                self._progress.update(self._task, description="writing reports", completed=self.duration)
            return
        elapsed = f"{p.elapsed:.0f}/{p.duration:g}s"
        failures = f"{p.failures} ({p.failures / p.requests:.1%})" if p.requests else "0"
        if self._progress is not None:
            self._progress.update(
                self._task, completed=p.elapsed, elapsed=elapsed, users=p.users, rps=f"{p.rps:.1f}", failures=failures
            )
        elif p.elapsed >= self._next:
            self._next = p.elapsed + self.every
            self.con.print(
                f"  {elapsed}  users {p.users}  {p.rps:.1f} req/s  requests {p.requests}  failures {failures}"
            )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _show_llm(con: Console, llm: dict[str, Any]) -> None:
    table = Table(title="Token streams (per request)", title_justify="left")
    for col in ("variant", "streams", "failed", "TTFT p50 ms", "TTFT p95 ms", "ITL p50 ms", "tok/s p10", "tok/s p50"):
        table.add_column(col, justify="left" if col == "variant" else "right")

    def r(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    for name, v in llm.items():
        table.add_row(
            escape(name),
            str(v["requests"]),
            str(v["failed_streams"]),
            r(v["ttft_ms"]["p50"]),
            r(v["ttft_ms"]["p95"]),
            r(v["itl_ms"]["p50"]),
            r(v["tokens_per_second"]["p10"]),
            r(v["tokens_per_second"]["p50"]),
            style="bold" if name == "all" else None,
        )
    con.print(table)


def _show(con: Console, r: dict[str, Any]) -> None:
    table = Table(title=f"Load test: {escape(r['endpoint'])} at {escape(r['target_url'])}", title_justify="left")
    for col in ("variant", "requests", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(col, justify="left" if col == "variant" else "right")

    def row(name: str, v: dict[str, Any], style: str | None = None) -> None:
        ratio = v["failure_ratio"]
        lat = v["latency_ms"]
        table.add_row(
            escape(name),
            str(v["requests"]),
            f"{v['failures']} ({ratio:.2%})" if ratio is not None else str(v["failures"]),
            f"{v['requests_per_second']:.1f}",
            _ms(lat["p50"]),
            _ms(lat["p95"]),
            _ms(lat["p99"]),
            style=style,
        )

    for name, v in r["variants"].items():
        row(name, v)
    row("all", r, style="bold")
    con.print(table)
    if r.get("llm"):
        _show_llm(con, r["llm"])
    con.print(
        f"{r['duration_seconds']:.1f}s from {escape(r['started_at'])} to {escape(r['ended_at'])} "
        f"({escape(r['stop_reason'])})"
    )
    for err in r["errors"][:5]:
        con.print(f"[yellow]failure[/] {escape(err['variant'])}: {escape(err['error'])} x{err['occurrences']}")
    slo = r["slo"]
    limits = []
    if slo["p99_latency_seconds"] is not None:
        limits.append(f"p99 <= {slo['p99_latency_seconds'] * 1000:g} ms")
    if slo["error_rate"] is not None:
        limits.append(f"errors <= {slo['error_rate']:.2%}")
    if not limits:
        con.print("SLO: none declared in \\[slo]; nothing to check")
    elif slo["passed"] is None:
        con.print("[yellow]SLO: no request completed; nothing measured, so no pass[/]")
    elif slo["passed"]:
        con.print(f"[green]SLO met[/]: {escape(', '.join(limits))}")
    else:
        for b in slo["breaches"]:
            con.print(f"[bold red]SLO broken[/] {escape(b['message'])}")
    out = Path(r["out_dir"])
    con.print(f"report  {escape(str(out / r['files']['html']))}")
    con.print(f"files   {escape(str(out))}/ (summary.json, locust CSVs, locustfile.py to re-run with `locust -f`)")
