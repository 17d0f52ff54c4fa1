from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlserve import format as fmt
from mlserve.cli.output import JsonFlag, get_state

if TYPE_CHECKING:
    from mlserve.batch.core import Progress


def split_list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


EnvOpt = Annotated[str | None, typer.Option("--env", "-e", help="Environment (default: the first local one).")]
InputOpt = Annotated[
    Path, typer.Option("--input", "-i", help="Rows to score: .jsonl, .csv or .parquet.", show_default=False)
]
IdOpt = Annotated[
    str, typer.Option("--id-column", help="Input column copied beside the predictions (absent: the row number).")
]
FeaturesOpt = Annotated[
    str | None, typer.Option("--features", help="Feature columns in order, comma-separated (default: all but id).")
]
ExcludeOpt = Annotated[str | None, typer.Option("--exclude", help="Columns that are not features, comma-separated.")]
OutputsOpt = Annotated[
    str | None,
    typer.Option("--outputs", help="V2 outputs to ask for, comma-separated, e.g. predict_proba (default: server's)."),
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Rows per V2 request.")]
ChunkSizeOpt = Annotated[int, typer.Option("--chunk-size", help="Rows per resumable chunk (one part file each).")]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", "-c", help="Requests in flight at once.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds one request may take before it is retried.")]
RetriesOpt = Annotated[
    int, typer.Option("--retries", help="Retries per request on 5xx, 408, 429, timeouts and dropped connections.")
]
UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="Endpoint base URL (default: the local gateway; required for a cluster environment)."),
]
EngineOpt = Annotated[str, typer.Option("--engine", help="local (asyncio in this process) or ray (Ray Data).")]
RayAddressOpt = Annotated[
    str | None, typer.Option("--ray-address", help="--engine ray: join this Ray cluster (host:port or 'auto').")
]
RayActorsOpt = Annotated[int, typer.Option("--ray-actors", help="--engine ray: actors scoring chunks in parallel.")]
StateDirOpt = Annotated[
    Path | None, typer.Option("--state-dir", help="Where resumable job state lives (default: .mlserve/batch/).")
]


def register(app: typer.Typer) -> None:
    @app.command("batch")
    def batch(
        ctx: typer.Context,
        endpoint: Annotated[str, typer.Argument(help="Endpoint to score with (a name in mlserve.toml).")],
        input_path: InputOpt,
        output: Annotated[
            Path,
            typer.Option("--output", "-o", help="Predictions, in the format its name says.", show_default=False),
        ],
        version: Annotated[
            str | None, typer.Option("--version", "-v", help="Version to score with (default: the baseline).")
        ] = None,
        env: EnvOpt = None,
        errors: Annotated[
            Path | None,
            typer.Option("--errors", help="Bad rows with line number and reason (default: OUTPUT.errors.jsonl)."),
        ] = None,
        input_format: Annotated[
            str | None, typer.Option("--input-format", help="jsonl, csv or parquet (default: from the name).")
        ] = None,
        output_format: Annotated[
            str | None, typer.Option("--output-format", help="jsonl, csv or parquet (default: from the name).")
        ] = None,
        id_column: IdOpt = "id",
        features: FeaturesOpt = None,
        exclude: ExcludeOpt = None,
        keep: Annotated[
            str | None, typer.Option("--keep", help="Input columns copied into the output, comma-separated.")
        ] = None,
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
        rayjob: Annotated[
            Path | None,
            typer.Option(
                "--rayjob",
                help="Write a KubeRay RayJob (and ConfigMap) that runs this job on a cluster environment; send nothing.",
            ),
        ] = None,
        json_out: JsonFlag = False,
    ) -> None:
        """Score a file of rows through an endpoint: resumable, streaming; exit 1 if any row failed."""
        state = get_state(ctx, json_out)
        from mlserve.batch.core import BatchOptions, plan_batch, run_batch
        from mlserve.project import load_project

        project = load_project(state.project_dir)
        options = BatchOptions(
            endpoint=endpoint,
            version=version,
            env=env,
            input=input_path,
            output=output,
            input_format=input_format,
            output_format=output_format,
            errors=errors,
            id_column=id_column,
            features=split_list(features) or None,
            exclude=split_list(exclude),
            keep=split_list(keep),
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
        )
        if rayjob is not None:
            from mlserve.batch.rayjob import write_rayjob

            written = write_rayjob(project, options, rayjob)
            state.emit(
                written.to_dict(), lambda c: c.print(f"wrote {escape(str(rayjob))}: {escape(written.describe())}")
            )
            return
        con = state.out
        plan = plan_batch(project, options, say=lambda m: con.print(escape(m)))
        lay = plan.layout
        con.print(
            f"batch [bold]{escape(endpoint)}[/] {escape(plan.version)} at {escape(plan.settings.infer_url)}: "
            f"{fmt.count(lay.rows)} rows in {len(lay.chunks)} chunk(s) of "
            f"{fmt.count(lay.chunks[0].rows if lay.chunks else 0)}, "
            f"{plan.settings.batch_size} rows per request, {plan.settings.concurrency} in flight, engine {escape(engine)}"
        )
        with ProgressView(con, f"{endpoint}/{plan.version}") as view:
            summary = run_batch(plan, view.update)
        data = summary.to_dict()
        state.emit(data, lambda c: show_summary(c, data), exit_code=summary.exit_code)


class ProgressView:
    """A live bar (rows, rows/s, ETA) on a terminal; a line every few seconds otherwise."""

    def __init__(self, con: Console, label: str) -> None:
        self.con = con
        self.label = label
        self.live = con.is_terminal
        self._progress: Any = None
        self._task: Any = None
        self._next = 0.0

    def __enter__(self) -> ProgressView:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("rows"),
                TextColumn("{task.fields[rate]} rows/s"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("failed {task.fields[failed]}"),
                console=self.con,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(escape(self.label), total=None, rate="-", failed=0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, p: Progress) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, total=p.rows_total, completed=p.rows_done, rate=fmt.rate(p.rows_per_second), failed=p.failed
            )
            return
        now = time.monotonic()
        if now < self._next and p.rows_done < p.rows_total:
            return
        self._next = now + 5.0
        eta = (p.rows_total - p.rows_done) / p.rows_per_second if p.rows_per_second > 0 else None
        self.con.print(
            f"  {fmt.count(p.rows_done)}/{fmt.count(p.rows_total)} rows ({p.chunks_done}/{p.chunks_total} chunks)  "
            f"{fmt.rate(p.rows_per_second)} rows/s  ETA {'-' if eta is None else fmt.fixed(eta, 0) + 's'}  "
            f"failed {fmt.count(p.failed)}"
        )


def show_summary(con: Console, r: dict[str, Any]) -> None:
    title = f"Batch: {r['endpoint']}/{r['version']} ({r['engine']})"
    table = Table(title=escape(title), title_justify="left")
    for col in ("rows", "scored", "failed", "rows/s", "seconds", "requests", "p50", "p95", "p99"):
        table.add_column(col, justify="right")
    from mlserve.batch.report import latency_ms

    lat = r["latency_ms"]
    table.add_row(
        fmt.count(r["rows"]),
        fmt.count(r["scored"]),
        fmt.count(r["failed"]),
        fmt.rate(r["rows_per_second"]),
        fmt.fixed(r["seconds"], 1),
        fmt.count(r["requests"]),
        latency_ms(lat["p50"]),
        latency_ms(lat["p95"]),
        latency_ms(lat["p99"]),
    )
    con.print(table)
    if r["chunks_resumed"]:
        con.print(f"resumed: {r['chunks_resumed']} of {r['chunks']} chunks were already scored by an earlier run")
    if r.get("engine_start_seconds") is not None:
        con.print(f"engine start-up (to the first chunk): {fmt.fixed(r['engine_start_seconds'], 1)}s")
    con.print(f"output  {escape(r['output'])}")
    if r["failed"]:
        con.print(f"[yellow]{fmt.count(r['failed'])} row(s) failed[/]; listed in {escape(str(r['errors_file']))}")
        for b in r["failures_sample"]:
            con.print(f"  line {b['line']}: {escape(str(b['reason']))}")
