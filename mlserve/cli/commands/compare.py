from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlserve import format as fmt
from mlserve.cli.commands.batch import (
    BatchSizeOpt,
    ChunkSizeOpt,
    ConcurrencyOpt,
    EngineOpt,
    EnvOpt,
    ExcludeOpt,
    FeaturesOpt,
    IdOpt,
    InputOpt,
    OutputsOpt,
    ProgressView,
    RayActorsOpt,
    RayAddressOpt,
    RetriesOpt,
    StateDirOpt,
    TimeoutOpt,
    UrlOpt,
    split_list,
)
from mlserve.cli.output import JsonFlag, get_state


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare(
        ctx: typer.Context,
        endpoint: Annotated[str, typer.Argument(help="Endpoint whose versions are compared.")],
        baseline: Annotated[str, typer.Argument(help="The version serving now (V1).")],
        candidate: Annotated[str, typer.Argument(help="The version that would replace it (V2).")],
        input_path: InputOpt,
        labels: Annotated[
            str | None, typer.Option("--labels", help="Column holding the true label or target (metric deltas).")
        ] = None,
        max_disagreement: Annotated[
            float | None,
            typer.Option("--max-disagreement", help="Gate: fail when more than this share of rows disagree (0.02)."),
        ] = None,
        min_delta: Annotated[
            list[str] | None,
            typer.Option(
                "--min-delta",
                help="Gate: METRIC=VALUE (accuracy, auc, log_loss, rmse); fail unless the lower confidence bound "
                "of the candidate's improvement is >= VALUE. Repeatable.",
            ),
        ] = None,
        confidence: Annotated[float, typer.Option("--confidence", help="Confidence level of the intervals.")] = 0.95,
        prediction: Annotated[
            str | None, typer.Option("--prediction", help="Output to compare (default: predict, else the first).")
        ] = None,
        task: Annotated[str, typer.Option("--task", help="auto, classification or regression.")] = "auto",
        rtol: Annotated[float, typer.Option("--rtol", help="Regression: relative tolerance of agreement.")] = 1e-6,
        atol: Annotated[float, typer.Option("--atol", help="Regression: absolute tolerance of agreement.")] = 1e-9,
        sample: Annotated[int, typer.Option("--sample", help="Disagreeing rows shown in the report.")] = 20,
        out: Annotated[
            Path | None,
            typer.Option("--out", help="Folder for scores and reports (default: experiments/ENDPOINT/compare-...)."),
        ] = None,
        env: EnvOpt = None,
        id_column: IdOpt = "id",
        features: FeaturesOpt = None,
        exclude: ExcludeOpt = None,
        outputs: OutputsOpt = None,
        batch_size: BatchSizeOpt = 1024,
        chunk_size: ChunkSizeOpt = 8192,
        concurrency: ConcurrencyOpt = 4,
        timeout: TimeoutOpt = 30.0,
        retries: RetriesOpt = 5,
        url: UrlOpt = None,
        engine: EngineOpt = "local",
        ray_address: RayAddressOpt = None,
        ray_actors: RayActorsOpt = 2,
        state_dir: StateDirOpt = None,
        json_out: JsonFlag = False,
    ) -> None:
        """Score two versions on the same rows and compare them; exit 3 when a gate threshold is missed."""
        state = get_state(ctx, json_out)
        from mlserve.batch.compare import CompareOptions, parse_min_delta, run_compare
        from mlserve.batch.core import BatchOptions
        from mlserve.project import load_project

        project = load_project(state.project_dir)
        options = CompareOptions(
            batch=BatchOptions(
                endpoint=endpoint,
                env=env,
                input=input_path,
                output=Path("unused.jsonl"),
                id_column=id_column,
                features=split_list(features) or None,
                exclude=split_list(exclude),
                outputs=split_list(outputs),
                batch_size=batch_size,
                chunk_size=chunk_size,
                concurrency=concurrency,
                timeout=timeout,
                retries=retries,
                url=url,
                engine=engine,
                ray_address=ray_address,
                ray_actors=ray_actors,
                state_dir=state_dir,
            ),
            baseline=baseline,
            candidate=candidate,
            labels=labels,
            prediction=prediction,
            task=task,
            rtol=rtol,
            atol=atol,
            sample=sample,
            confidence=confidence,
            max_disagreement=max_disagreement,
            min_delta=parse_min_delta(min_delta or []),
            out_dir=out,
        )
        con = state.out
        views: dict[str, ProgressView] = {}

        def progress(version: str, p: Any) -> None:
            if version not in views:
                for v in views.values():
                    v.__exit__()
                views[version] = ProgressView(con, f"{endpoint}/{version}").__enter__()
            views[version].update(p)

        try:
            result = run_compare(project, options, say=lambda m: con.print(escape(m)), progress=progress)
        finally:
            for v in views.values():
                v.__exit__()
        data = result.to_dict()
        state.emit(data, lambda c: show(c, data), exit_code=result.exit_code)


def show(con: Console, r: dict[str, Any]) -> None:
    from mlserve.batch.report import latency_ms, metric_cells, short

    a = r["agreement"]
    con.print(
        f"[bold]{escape(r['endpoint'])}[/] {escape(r['baseline'])} vs {escape(r['candidate'])}: "
        f"{fmt.count(r['compared'])} rows compared ({r['task']}, output {escape(r['prediction'])})"
    )
    con.print(
        f"agreement {fmt.share(a['agreement'], 3)} "
        f"[{fmt.share(a['interval']['low'], 3)}, {fmt.share(a['interval']['high'], 3)}]: "
        f"{fmt.count(a['disagree'])} row(s) disagree ({escape(a['rule'])})"
    )
    if r["metrics"]:
        table = Table(title="Metrics (difference = candidate - baseline)", title_justify="left")
        for col in ("metric", "baseline", "candidate", "difference", f"{fmt.share(r['confidence'], 0)} interval", "p"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for m in r["metrics"]:
            if "unavailable" in m:
                continue
            table.add_row(*(escape(c) for c in (m["metric"], *metric_cells(m))))
        con.print(table)
    lat = Table(title="Latency per version", title_justify="left")
    for col in ("version", "rows/s", "requests", "p50", "p95", "p99", "failed rows"):
        lat.add_column(col, justify="left" if col == "version" else "right")
    for v, x in r["latency"].items():
        q = x["latency_ms"]
        lat.add_row(
            escape(v),
            fmt.rate(x["rows_per_second"]),
            fmt.count(x["requests"]),
            *(latency_ms(q[k]) for k in ("p50", "p95", "p99")),
            fmt.count(x["failed_rows"]),
        )
    con.print(lat)
    for d in r["disagreements"][:5]:
        rest = ", ".join(f"{k} {short(v)}" for k, v in d.items() if k not in ("row", "id"))
        con.print(f"  disagree: row {d['row']} id {escape(str(d['id']))}: {escape(rest)}")
    for n in r["notes"]:
        con.print(f"[yellow]note[/] {escape(n)}")
    for g in r["gate"]:
        mark = "[green]pass[/]" if g["passed"] else "[bold red]FAIL[/]"
        con.print(f"{mark} {escape(g['name'])}: {escape(g['detail'])}")
    if r["gate"]:
        con.print("[green]gate passed[/]" if r["passed"] else f"[bold red]gate failed[/] (exit {r['exit_code']})")
    con.print(f"report  {escape(r['files'].get('html', ''))}")
