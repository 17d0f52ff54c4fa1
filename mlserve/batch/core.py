"""``mlserve batch``: plan a job, score its unfinished chunks, assemble the output.

``plan_batch`` checks every argument and scans the input (columns, rows, chunks, the
job's identity) before a request is sent; ``run_batch`` scores the chunks the journal
does not list as finished, with the local engine (asyncio, bounded concurrency) or
Ray Data (:mod:`mlserve.batch.ray_engine`), commits each chunk as it finishes, then
streams the part files into the output in input order. Both engines share the chunk
(:mod:`mlserve.batch.chunks`), part and journal code, so a job started on one can be
resumed on the other.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve.batch.chunks import score_chunk
from mlserve.batch.client import ClientSettings, V2Client
from mlserve.batch.formats import ColumnOptions, Layout, assemble, dumps, format_of, scan
from mlserve.batch.journal import ChunkResult, Job, job_key
from mlserve.batch.rows import InputTensor
from mlserve.errors import UsageError
from mlserve.status import ExitStatus

ENGINES = ("local", "ray")
SUMMARY_FORMAT = "mlserve.batch-summary/v1"
MAX_CHUNK = 1_000_000
MAX_BATCH = 100_000
MAX_CONCURRENCY = 256


@dataclass(frozen=True)
class BatchOptions:
    """Checked command-line values of one job."""

    endpoint: str
    version: str | None = None
    env: str | None = None
    input: Path = Path()
    output: Path = Path()
    input_format: str | None = None
    output_format: str | None = None
    errors: Path | None = None
    id_column: str = "id"
    features: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    labels: str | None = None  # a label column (compare): excluded from the features, kept
    outputs: tuple[str, ...] = ()
    batch_size: int = 1024
    chunk_size: int = 8192
    concurrency: int = 4
    timeout: float = 30.0
    retries: int = 5
    url: str | None = None
    engine: str = "local"
    ray_address: str | None = None
    ray_actors: int = 2
    state_dir: Path | None = None
    row_numbers: bool = False  # also write the 1-based row number (compare aligns on it)


@dataclass(frozen=True)
class Progress:
    rows_done: int
    rows_total: int
    failed: int
    elapsed: float
    rows_per_second: float
    chunks_done: int
    chunks_total: int


@dataclass(frozen=True)
class BatchPlan:
    options: BatchOptions
    env: str
    version: str
    layout: Layout
    settings: ClientSettings
    output_format: str
    errors_path: Path
    job: Job
    scan_seconds: float


@dataclass(frozen=True)
class BatchSummary:
    endpoint: str
    version: str
    env: str
    url: str
    engine: str
    input: str
    output: str
    errors_file: str | None
    rows: int
    scored: int
    failed: int
    chunks: int
    chunks_resumed: int
    requests: int
    retries: int
    seconds: float
    scan_seconds: float
    rows_per_second: float
    latency_ms: dict[str, float | None]
    engine_start_seconds: float | None
    job_id: str
    outputs: list[dict[str, Any]]
    failures_sample: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitStatus:
        return ExitStatus.OK if self.failed == 0 else ExitStatus.ERROR

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": SUMMARY_FORMAT}
        out.update({k: getattr(self, k) for k in self.__dataclass_fields__})
        out["exit_code"] = int(self.exit_code)
        return out


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise UsageError(f"{name}: must be between {lo:g} and {hi:g} (got {value:g})")


def plan_batch(project: Any, options: BatchOptions, say: Callable[[str], None] = lambda _m: None) -> BatchPlan:
    """Everything checked and the input scanned; nothing sent yet."""
    from mlserve.batch.target import endpoint_base

    o = options
    env_name = project.environment(o.env)
    project.endpoint(o.endpoint, env_name)
    ep = project.manifest.endpoints[o.endpoint]
    version = o.version or ep.baseline
    if version not in ep.versions:
        raise UsageError(
            f"--version: endpoint {o.endpoint!r} has no version {version!r} (versions: {', '.join(ep.versions)})"
        )
    if o.engine not in ENGINES:
        raise UsageError(f"--engine: must be one of {', '.join(ENGINES)} (got {o.engine!r})")
    _check_range("--batch-size", o.batch_size, 1, MAX_BATCH)
    _check_range("--chunk-size", o.chunk_size, 1, MAX_CHUNK)
    _check_range("--concurrency", o.concurrency, 1, MAX_CONCURRENCY)
    _check_range("--timeout", o.timeout, 0.1, 3600)
    _check_range("--retries", o.retries, 0, 100)
    _check_range("--ray-actors", o.ray_actors, 1, 1024)
    if o.ray_address is not None and o.engine != "ray":
        raise UsageError("--ray-address: only with --engine ray")
    in_path, out_path = Path(o.input), Path(o.output)
    in_fmt = format_of(in_path, o.input_format, "input")
    out_fmt = format_of(out_path, o.output_format, "output")
    if in_path.exists() and out_path.exists() and in_path.resolve() == out_path.resolve():
        raise UsageError(f"--output: {out_path} is the input file; write the results elsewhere")
    errors_path = Path(o.errors) if o.errors else out_path.with_name(out_path.stem + ".errors.jsonl")
    if errors_path.resolve() in (in_path.resolve(), out_path.resolve()):
        raise UsageError(f"--errors: {errors_path} is the input or the output file")
    if out_path.is_dir():
        raise UsageError(f"--output: {out_path} is a directory; name a file")
    tensor = InputTensor.from_spec(ep.input)
    base, pin = endpoint_base(project, env_name, o.url)
    settings = ClientSettings(
        url=base,
        endpoint=o.endpoint,
        version=version,
        pin=pin,
        tensor=tensor,
        outputs=o.outputs,
        batch_size=o.batch_size,
        concurrency=o.concurrency,
        timeout=o.timeout,
        retries=o.retries,
    )
    t0 = time.perf_counter()
    say(f"reading {in_path}")
    layout = scan(
        in_path,
        in_fmt,
        tensor,
        ColumnOptions(id_column=o.id_column, features=o.features, exclude=o.exclude, keep=o.keep, labels=o.labels),
        o.chunk_size,
        o.endpoint,
    )
    scan_seconds = time.perf_counter() - t0
    identity = {
        "input_sha256": layout.sha256,
        "input_size": layout.size,
        "input_format": in_fmt,
        "columns": layout.columns.to_dict(),
        "chunk_size": o.chunk_size,
        "endpoint": o.endpoint,
        "version": version,
        "env": env_name,
        "tensor": settings.to_dict()["tensor"],
        "outputs": list(o.outputs),
        "output": str(out_path.resolve()),
        "output_format": out_fmt,
        "row_numbers": o.row_numbers,
    }
    state_dir = Path(o.state_dir) if o.state_dir else project.state_dir / "batch"
    job = Job(state_dir / job_key(identity)[:20], identity)
    return BatchPlan(o, env_name, version, layout, settings, out_fmt, errors_path, job, scan_seconds)


async def _local_engine(plan: BatchPlan, pending: Sequence[Any], commit: Callable[[ChunkResult], None]) -> None:
    """Chunks read in a thread, their batches sent with at most ``concurrency`` requests in
    flight over all chunks, at most ``concurrency + 1`` chunks held in memory."""
    client = V2Client(plan.settings)
    window = asyncio.Semaphore(plan.settings.concurrency + 1)
    tensor = plan.settings.tensor
    tasks: list[asyncio.Task[None]] = []

    async def one(spec: Any) -> None:
        try:
            result = await score_chunk(client, plan.layout, spec, tensor, plan.options.row_numbers)
            await asyncio.to_thread(commit, result)
        finally:
            window.release()

    try:
        for spec in pending:
            await window.acquire()
            failed = [t for t in tasks if t.done() and t.exception() is not None]
            if failed:
                window.release()
                break
            tasks.append(asyncio.create_task(one(spec)))
        for t in asyncio.as_completed(tasks):
            await t
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


def run_batch(plan: BatchPlan, progress: Callable[[Progress], None] = lambda _p: None) -> BatchSummary:
    """Score what is left of the job, then write the output and the errors file."""
    t0 = time.perf_counter()
    layout = plan.layout
    done = plan.job.open()
    try:
        pending = [c for c in layout.chunks if c.index not in done]
        resumed = len(done)
        state = {
            "rows": sum(int(e["rows"]) for e in done.values()),
            "failed": sum(int(e["failed"]) for e in done.values()),
        }
        entries = dict(done)
        fresh_rows = 0

        def commit(result: ChunkResult) -> None:
            nonlocal fresh_rows
            plan.job.commit(result)
            entries[result.index] = result.entry
            state["rows"] += int(result.entry["rows"])
            state["failed"] += int(result.entry["failed"])
            fresh_rows += int(result.entry["rows"])
            elapsed = time.perf_counter() - t0
            progress(
                Progress(
                    state["rows"],
                    layout.rows,
                    state["failed"],
                    elapsed,
                    fresh_rows / elapsed if elapsed > 0 else 0.0,
                    len(entries),
                    len(layout.chunks),
                )
            )

        progress(Progress(state["rows"], layout.rows, state["failed"], 0.0, 0.0, len(entries), len(layout.chunks)))
        engine_start: float | None = None
        if pending:
            if plan.options.engine == "ray":
                from mlserve.batch.ray_engine import run_ray

                engine_start = run_ray(plan, pending, commit)
            else:
                asyncio.run(_local_engine(plan, pending, commit))
        _check_schemas(entries)
        parts = [plan.job.part(c.index) for c in layout.chunks]
        out_path = Path(plan.options.output)
        for stale in out_path.parent.glob(f".{out_path.name}.*.tmp"):  # an assembly cut short by a kill
            stale.unlink(missing_ok=True)
        assemble(plan.output_format, out_path, parts)
        failed = sum(int(e["failed"]) for e in entries.values())
        sample = _write_errors(plan, failed)
        seconds = time.perf_counter() - t0
        latencies = [float(x) for e in entries.values() for x in e.get("latencies", [])]
        schema = next((e.get("schema") for e in entries.values() if e.get("schema")), None) or []
        summary = BatchSummary(
            endpoint=plan.options.endpoint,
            version=plan.version,
            env=plan.env,
            url=plan.settings.infer_url,
            engine=plan.options.engine,
            input=str(plan.options.input),
            output=str(plan.options.output),
            errors_file=str(plan.errors_path) if failed else None,
            rows=layout.rows,
            scored=sum(int(e["scored"]) for e in entries.values()),
            failed=failed,
            chunks=len(layout.chunks),
            chunks_resumed=resumed,
            requests=sum(int(e.get("requests", 0)) for e in entries.values()),
            retries=sum(int(e.get("retries", 0)) for e in entries.values()),
            seconds=round(seconds, 3),
            scan_seconds=round(plan.scan_seconds, 3),
            rows_per_second=round(fresh_rows / seconds, 1) if seconds > 0 else 0.0,
            latency_ms=latency_summary(latencies),
            engine_start_seconds=None if engine_start is None else round(engine_start, 3),
            job_id=plan.job.dir.name,
            outputs=[{"name": n, "width": w, "datatype": d} for n, w, d in schema],
            failures_sample=sample,
        )
    except BaseException:
        plan.job.close()
        raise
    plan.job.remove()
    return summary


def _check_schemas(entries: dict[int, dict[str, Any]]) -> None:
    from mlserve.errors import TargetError

    seen = {json_key(e.get("schema")) for e in entries.values() if e.get("schema")}
    if len(seen) > 1:
        raise TargetError(
            "the endpoint answered with different outputs in different chunks (was it redeployed mid-job?)",
            hint="remove the job's state under .mlserve/batch/ and run the job again",
        )


def json_key(value: Any) -> str:
    return dumps(value).decode()


def _write_errors(plan: BatchPlan, failed: int) -> list[dict[str, Any]]:
    from mlserve.batch.formats import loads
    from mlserve.fsutil import atomic_writer

    path = plan.errors_path
    if not failed:
        path.unlink(missing_ok=True)  # a stale list from an earlier run would mislead
        return []
    sample: list[dict[str, Any]] = []
    with atomic_writer(path) as fh:
        for c in plan.layout.chunks:
            with open(plan.job.errors_part(c.index), "rb") as src:
                data = src.read()
            fh.write(data)
            if len(sample) < 5 and data:
                sample.extend(loads(line) for line in data.splitlines()[: 5 - len(sample)])
    return sample


def latency_summary(latencies: Sequence[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    xs = sorted(latencies)

    def q(p: float) -> float:
        # nearest rank: the smallest latency with at least p of the requests at or below it
        return xs[max(0, math.ceil(p * len(xs)) - 1)] * 1000

    return {
        "p50": round(q(0.50), 2),
        "p95": round(q(0.95), 2),
        "p99": round(q(0.99), 2),
        "max": round(xs[-1] * 1000, 2),
        "mean": round(sum(xs) / len(xs) * 1000, 2),
    }
