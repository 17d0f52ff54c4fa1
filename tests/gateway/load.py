"""Small load helpers for the gateway tests.

aiohttp, not httpx, on the client side: it costs about a quarter of the CPU per request, and
the client shares two cores with the gateway and the upstreams.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable

import aiohttp

from tests.gateway.conftest import payload

Result = tuple[int, str | None, float]  # status, x-mlserve-variant, seconds
JSON = {"content-type": "application/json"}


async def _fire(url: str, n: int, concurrency: int, headers: Callable[[int], dict[str, str]] | None) -> list[Result]:
    results: list[Result] = []
    counter = iter(range(n))
    body = json.dumps(payload()).encode()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def worker() -> None:
            for i in counter:
                t0 = time.perf_counter()
                extra = headers(i) if headers else {}
                async with session.post(url, data=body, headers={**JSON, **extra}) as r:
                    await r.read()
                    results.append((r.status, r.headers.get("x-mlserve-variant"), time.perf_counter() - t0))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def fire(
    url: str, n: int, concurrency: int = 16, headers: Callable[[int], dict[str, str]] | None = None
) -> list[Result]:
    """n requests, ``concurrency`` at a time."""
    return asyncio.run(_fire(url, n, concurrency, headers))


async def paced(session: aiohttp.ClientSession, url: str, rate: float, seconds: float) -> list[Result]:
    """Open loop: one request every 1/rate s whatever the answers take."""
    body = json.dumps(payload()).encode()
    results: list[Result] = []

    async def one() -> None:
        t0 = time.perf_counter()
        async with session.post(url, data=body, headers=JSON) as r:
            await r.read()
            results.append((r.status, r.headers.get("x-mlserve-variant"), time.perf_counter() - t0))

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return results


def quantile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
