"""``--engine ray``: the same job on Ray Data, for inputs that outgrow one machine.

The driver (this process) keeps what makes the job resumable: the scan, the journal, the
part files and the assembly. Ray Data schedules the work: a dataset of the unfinished
chunks' descriptors, mapped by a pool of actors, each of which reads its chunk from the
input (so on a cluster the input must be on storage every node can read), sends its
batches to the endpoint with the same V2 client as the local engine, and returns the
chunk's result and error lines. The driver commits each chunk as it streams back, in
whatever order they finish. Scheduling, retries of failed tasks and back-pressure are
Ray's; mlserve has no scheduler of its own.

Here Ray runs locally and bounded (``ray.init(num_cpus=2, include_dashboard=False)``);
``--ray-address`` joins an existing cluster instead (``auto`` inside a KubeRay job).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from mlserve.batch.journal import ChunkResult
from mlserve.errors import MlserveError, UsageError

LOCAL_CPUS = 2
ACTOR_CPUS = 0.5


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise UsageError(
            "--engine ray needs Ray Data, which is not installed", hint="pip install 'mlserve[ray]'"
        ) from None
    return ray


class ChunkScorer:
    """A Ray actor: one event loop and one connection pool for all the chunks it is given."""

    def __init__(self, job: str) -> None:
        from mlserve.batch.client import ClientSettings, V2Client
        from mlserve.batch.formats import Layout

        spec = json.loads(job)
        self.layout = Layout.from_dict(spec["layout"])
        self.settings = ClientSettings.from_dict(spec["settings"])
        self.row_numbers = bool(spec["row_numbers"])
        self.loop = asyncio.new_event_loop()
        self.client = self.loop.run_until_complete(_client(V2Client, self.settings))

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from mlserve.batch.chunks import score_chunk
        from mlserve.batch.formats import ChunkSpec

        out: dict[str, list[Any]] = {"index": [], "results": [], "errors": [], "entry": []}
        for text in batch["chunk"]:
            spec = ChunkSpec.from_dict(json.loads(str(text)))
            result = self.loop.run_until_complete(
                score_chunk(self.client, self.layout, spec, self.settings.tensor, self.row_numbers)
            )
            out["index"].append(result.index)
            out["results"].append(result.results)
            out["errors"].append(result.errors)
            out["entry"].append(json.dumps(result.entry))
        return out


async def _client(factory: Any, settings: Any) -> Any:
    return factory(settings)  # created inside the actor's loop, which it then belongs to


def run_ray(plan: Any, pending: Sequence[Any], commit: Callable[[ChunkResult], None]) -> float:
    """Score ``pending`` chunks on Ray; return the seconds from ``ray.init`` to the first
    chunk committed (start-up: Ray itself, the actor pool, and one chunk)."""
    ray = _ray()
    t0 = time.perf_counter()
    started_here = not ray.is_initialized()
    if started_here:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "error"}
        if plan.options.ray_address:
            kwargs["address"] = plan.options.ray_address
        else:
            kwargs["num_cpus"] = LOCAL_CPUS
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise MlserveError(
                f"cannot start or reach Ray ({type(exc).__name__}: {exc})",
                hint="check --ray-address (host:port of the cluster's GCS, or 'auto')",
            ) from None
    first: float | None = None
    try:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        job = json.dumps(
            {
                "layout": plan.layout.to_dict(),
                "settings": plan.settings.to_dict(),
                "row_numbers": plan.options.row_numbers,
            }
        )
        ds = ray.data.from_items(
            [{"chunk": json.dumps(c.to_dict())} for c in pending], override_num_blocks=len(pending)
        )
        scored = ds.map_batches(
            ChunkScorer,
            fn_constructor_kwargs={"job": job},
            batch_size=1,
            concurrency=min(plan.options.ray_actors, len(pending)),
            num_cpus=ACTOR_CPUS,
            batch_format="default",
        )
        for row in scored.iter_rows():
            commit(
                ChunkResult(
                    index=int(row["index"]),
                    results=bytes(row["results"]),
                    errors=bytes(row["errors"]),
                    entry=json.loads(str(row["entry"])),
                )
            )
            if first is None:
                first = time.perf_counter() - t0
    except MlserveError:
        raise
    except Exception as exc:  # a task's own error arrives wrapped by Ray
        cause = _unwrap(exc)
        if isinstance(cause, MlserveError):
            raise cause from None
        raise MlserveError(f"the Ray job failed: {type(cause).__name__}: {cause}") from None
    finally:
        if started_here:
            ray.shutdown()
    return first if first is not None else time.perf_counter() - t0


def _unwrap(exc: BaseException) -> BaseException:
    """The user-facing error inside Ray's task and actor error wrappers."""
    seen = 0
    while seen < 10:
        seen += 1
        inner = getattr(exc, "cause", None) or exc.__cause__
        if inner is None or inner is exc:
            break
        exc = inner
        if isinstance(exc, MlserveError):
            break
    return exc
