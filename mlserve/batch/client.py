"""The V2 client of a batch job: multi-row requests, bounded concurrency, retries.

A batch of rows becomes one V2 inference request whose input tensor has the rows as
its first dimension. What can be retried is retried with exponential backoff and full
jitter: 5xx, 408 and 429 answers, timeouts and dropped or refused connections. A 4xx
answer rejects the batch's content: the batch is halved until the rows the endpoint
refuses are found, and those become bad rows with the endpoint's message. When retries
run out the job stops with an error (its finished chunks are kept for the next run).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mlserve.batch.formats import dumps, loads
from mlserve.batch.rows import InputTensor, flatten
from mlserve.errors import TargetError
from mlserve.targets.base import Pin

VARIANT_HEADER = "x-mlserve-variant"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class EndpointUnavailable(TargetError):
    """Retries ran out: the endpoint is down or overloaded. Finished chunks are kept."""


class Rejected(Exception):
    """The endpoint refused the request's content (a 4xx answer other than 408/429)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ClientSettings:
    url: str  # the endpoint's base URL (a gateway or an ingress)
    endpoint: str
    version: str
    pin: Pin  # PATH: /v2/models/E/versions/V/infer (mlserve's gateway); HEADER: x-mlserve-variant
    tensor: InputTensor
    outputs: tuple[str, ...] = ()  # V2 outputs to ask for; () = the server's default
    batch_size: int = 1024
    concurrency: int = 4
    timeout: float = 30.0
    retries: int = 5
    backoff: float = 0.25
    backoff_max: float = 8.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "endpoint": self.endpoint,
            "version": self.version,
            "pin": str(self.pin),
            "tensor": {"name": self.tensor.name, "datatype": self.tensor.datatype, "row_shape": self.tensor.row_shape},
            "outputs": list(self.outputs),
            "batch_size": self.batch_size,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "retries": self.retries,
            "backoff": self.backoff,
            "backoff_max": self.backoff_max,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClientSettings:
        t = d["tensor"]
        return cls(
            url=d["url"],
            endpoint=d["endpoint"],
            version=d["version"],
            pin=Pin(d["pin"]),
            tensor=InputTensor(t["name"], t["datatype"], tuple(t["row_shape"])),
            outputs=tuple(d["outputs"]),
            batch_size=int(d["batch_size"]),
            concurrency=int(d["concurrency"]),
            timeout=float(d["timeout"]),
            retries=int(d["retries"]),
            backoff=float(d["backoff"]),
            backoff_max=float(d["backoff_max"]),
        )

    @property
    def infer_url(self) -> str:
        base = self.url.rstrip("/")
        if self.pin is Pin.PATH:
            return f"{base}/v2/models/{self.endpoint}/versions/{self.version}/infer"
        return f"{base}/v2/models/{self.endpoint}/infer"


@dataclass
class Outcome:
    """What one chunk's requests gave: a prediction dict per good row, or its rejection."""

    predictions: list[dict[str, Any] | None]
    rejected: dict[int, str] = field(default_factory=dict)  # position -> reason
    latencies: list[float] = field(default_factory=list)  # seconds per successful request
    retries: int = 0
    schema: list[tuple[str, int, str]] | None = None  # (output name, width, datatype)


def request_body(tensor: InputTensor, rows: Sequence[Sequence[Any]], outputs: Sequence[str]) -> bytes:
    data: list[Any] = []
    for r in rows:
        data.extend(r)
    body: dict[str, Any] = {
        "inputs": [
            {"name": tensor.name, "shape": tensor.request_shape(len(rows)), "datatype": tensor.datatype, "data": data}
        ]
    }
    if outputs:
        body["outputs"] = [{"name": o} for o in outputs]
    return dumps(body)


class MalformedAnswer(Exception):
    pass


def decode_response(payload: Any, n: int) -> tuple[list[dict[str, Any]], list[tuple[str, int, str]]]:
    """Per-row predictions from a V2 response: an output of width 1 is a scalar, else a list."""
    if not isinstance(payload, dict) or not isinstance(payload.get("outputs"), list) or not payload["outputs"]:
        raise MalformedAnswer('the answer has no "outputs" list')
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    schema = []
    for i, out in enumerate(payload["outputs"]):
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise MalformedAnswer(f"outputs[{i}] has no name")
        name = out["name"]
        shape = out.get("shape")
        if not isinstance(shape, list) or not shape or any(not isinstance(d, int) or d < 0 for d in shape):
            raise MalformedAnswer(f"output {name!r}: bad shape {shape!r}")
        if shape[0] != n:
            raise MalformedAnswer(f"output {name!r}: {shape[0]} rows in the answer for {n} sent")
        width = 1
        for d in shape[1:]:
            width *= d
        data = flatten(out.get("data"))
        if len(data) != n * width:
            raise MalformedAnswer(f"output {name!r}: {len(data)} values for shape {shape}")
        for r in range(n):
            rows[r][name] = data[r] if width == 1 else data[r * width : (r + 1) * width]
        schema.append((name, width, str(out.get("datatype", ""))))
    return rows, schema


class V2Client:
    """One connection pool per job; ``score`` may be called for several chunks at once."""

    def __init__(self, settings: ClientSettings, *, rng: random.Random | None = None) -> None:
        import httpx

        self.s = settings
        self.rng = rng or random.Random()
        limits = httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency)
        self.http = httpx.AsyncClient(timeout=settings.timeout, limits=limits, trust_env=False)
        self.sem = asyncio.Semaphore(settings.concurrency)
        self.headers = {"content-type": "application/json"}
        if settings.pin is Pin.HEADER:
            self.headers[VARIANT_HEADER] = settings.version

    async def close(self) -> None:
        await self.http.aclose()

    async def score(self, rows: Sequence[Sequence[Any]]) -> Outcome:
        """Predictions for ``rows`` in order, in batches of ``batch_size`` sent concurrently."""
        outcome = Outcome(predictions=[None] * len(rows))
        size = self.s.batch_size
        spans = [(i, min(i + size, len(rows))) for i in range(0, len(rows), size)]
        await asyncio.gather(*(self._span(rows, a, b, outcome) for a, b in spans))
        return outcome

    async def _span(self, rows: Sequence[Sequence[Any]], a: int, b: int, outcome: Outcome) -> None:
        try:
            preds, schema, seconds, retries = await self._send(rows[a:b])
        except Rejected as rej:
            if b - a == 1:
                outcome.rejected[a] = f"rejected by the endpoint (HTTP {rej.status}): {rej.message}"
                return
            mid = (a + b) // 2  # find the rows it refuses by halving
            await asyncio.gather(self._span(rows, a, mid, outcome), self._span(rows, mid, b, outcome))
            return
        outcome.latencies.append(seconds)
        outcome.retries += retries
        if outcome.schema is None:
            outcome.schema = schema
        outcome.predictions[a:b] = preds

    async def _send(self, rows: Sequence[Sequence[Any]]) -> tuple[list[dict[str, Any]], Any, float, int]:
        import httpx

        body = request_body(self.s.tensor, rows, self.s.outputs)
        last = ""
        for attempt in range(self.s.retries + 1):
            if attempt:
                delay = min(self.s.backoff_max, self.s.backoff * 2 ** (attempt - 1))
                await asyncio.sleep(self.rng.uniform(0, delay))
            async with self.sem:
                t0 = time.perf_counter()
                try:
                    resp = await self.http.post(self.s.infer_url, content=body, headers=self.headers)
                    content = resp.content
                except httpx.TimeoutException:
                    last = f"timed out after {self.s.timeout:g}s"
                    continue
                except httpx.TransportError as exc:
                    last = f"connection failed ({type(exc).__name__}: {exc})"
                    continue
                seconds = time.perf_counter() - t0
            status = resp.status_code
            if status in RETRY_STATUS:
                last = f"HTTP {status}: {_message(content)}"
                continue
            if status >= 400:
                raise Rejected(status, _message(content))
            answered = resp.headers.get(VARIANT_HEADER)
            if answered is not None and answered != self.s.version:
                raise EndpointUnavailable(
                    f"{self.s.infer_url} answered from version {answered!r}, not {self.s.version!r}",
                    hint="on a cluster, pinning a version needs the rendered header routes (x-mlserve-variant)",
                )
            try:
                preds, schema = decode_response(loads(content), len(rows))
            except (MalformedAnswer, ValueError) as exc:
                last = f"malformed answer: {exc}"
                continue
            return preds, schema, seconds, attempt
        raise EndpointUnavailable(
            f"{self.s.infer_url}: gave up after {self.s.retries + 1} attempts; last: {last}",
            hint="finished chunks are kept; run the same command again to resume once the endpoint answers",
        )


def _message(content: bytes) -> str:
    try:
        data = loads(content)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if isinstance(data.get(key), str):
                return _clip(data[key])
    return _clip(content.decode("utf-8", errors="replace").strip()) or "(no body)"


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
