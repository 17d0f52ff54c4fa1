"""One chunk of a batch job scored: its rows read, sent, and turned into part-file lines.

Shared by both engines (the local asyncio engine in :mod:`mlserve.batch.core` and the Ray
actors of :mod:`mlserve.batch.ray_engine`), so a job started on one resumes on the other.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mlserve.batch.client import Outcome, V2Client
from mlserve.batch.formats import ROW_ID, ChunkRows, Layout, dumps, read_chunk
from mlserve.batch.journal import ChunkResult
from mlserve.batch.rows import InputTensor


def chunk_result(rows: ChunkRows, outcome: Outcome, out_id: str, row_numbers: bool) -> ChunkResult:
    """Result lines in input order, and every failed row (bad input or refused) with its reason."""
    lines = []
    bad = list(rows.bad)
    reserved = {out_id, *rows.kept[0]} if rows.kept else {out_id}
    if row_numbers:
        reserved.add(ROW_ID)
    for j, pred in enumerate(outcome.predictions):
        if pred is None:
            bad.append(
                {
                    "line": rows.lines[j],
                    "row": rows.rows[j],
                    "id": rows.ids[j],
                    "reason": outcome.rejected.get(j, "no prediction"),
                }
            )
            continue
        rec: dict[str, Any] = {out_id: rows.ids[j]}
        if row_numbers and out_id != ROW_ID:
            rec[ROW_ID] = rows.rows[j]
        rec.update(rows.kept[j])
        for name, value in pred.items():
            rec[f"{name}_prediction" if name in reserved else name] = value
        lines.append(dumps(rec))
    bad.sort(key=lambda b: b["row"])
    results = b"".join(x + b"\n" for x in lines)
    errors = b"".join(dumps(b) + b"\n" for b in bad)
    entry = {
        "rows": rows.spec.rows,
        "scored": len(lines),
        "failed": len(bad),
        "requests": len(outcome.latencies),
        "retries": outcome.retries,
        "latencies": [round(x, 6) for x in outcome.latencies],
        "schema": outcome.schema,
    }
    return ChunkResult(rows.spec.index, results, errors, entry)


async def score_chunk(
    client: V2Client, layout: Layout, spec: Any, tensor: InputTensor, row_numbers: bool
) -> ChunkResult:
    rows = await asyncio.to_thread(read_chunk, layout, spec, tensor)
    outcome = await client.score(rows.values)
    return await asyncio.to_thread(chunk_result, rows, outcome, layout.columns.out_id, row_numbers)
