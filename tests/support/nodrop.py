"""Helpers of the no-drop tests: a locust load kept on an endpoint (``mlserve loadtest``'s own
background load: real locust in a child process), what clients saw of an outage (from the
timestamped answers of :class:`tests.support.load.Load`), process ids, and scrape gaps read
back from the local Prometheus."""

from __future__ import annotations

import itertools
import json
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mlserve.project import load_project
from tests.support.load import Event


def state(root: Path) -> dict[str, Any]:
    return json.loads((root / ".mlserve/local/state.json").read_text())


def pid(root: Path, name: str) -> int:
    return int(state(root)["processes"][name]["pid"] or 0)  # 0: between a crash and its restart


def desired(root: Path) -> dict[str, Any]:
    return json.loads((root / ".mlserve/local/desired.json").read_text())


def locust(root: Path, endpoint: str, *, users: int = 4, duration: float = 300.0, rps: float | None = None) -> Any:
    """A bounded locust run against the local gateway, stopped by ``.stop()`` (which returns
    the summary: requests, failures, per variant)."""
    from mlserve.loadtest.core import BackgroundLoad, plan_loadtest

    plan = plan_loadtest(
        load_project(root), endpoint, users=users, spawn_rate=users, duration=duration, rps_cap=rps,
        out_dir=root / ".mlserve" / f"nodrop-load-{time.time_ns()}",
    )  # fmt: skip
    load = BackgroundLoad(plan)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # users spawned and answered at least once
        p = load.progress()
        if p is not None and p.requests >= users:
            break
        time.sleep(0.2)
    return load


def scrape_gaps(prom_url: str, job: str, since_unix: float) -> tuple[int, float, list[str]]:
    """(samples, largest gap in seconds, distinct values) of ``up{job=...}`` since ``since_unix``,
    from the raw samples Prometheus stored (a range selector returns them unaggregated)."""
    window = max(1, int(time.time() - since_unix) + 1)
    query = f'up{{job="{job}"}}[{window}s]'
    data = httpx.get(f"{prom_url}/api/v1/query?query={urllib.parse.quote(query)}", timeout=10, trust_env=False).json()
    assert data["status"] == "success", data
    samples = sorted(
        (float(ts), v) for series in data["data"]["result"] for ts, v in series["values"] if float(ts) >= since_unix
    )
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(samples)]
    return len(samples), max(gaps, default=0.0), sorted({v for _, v in samples})


def scraped(prom_url: str, job: str, timeout: float = 30.0) -> float:
    """Wait until Prometheus has scraped ``job`` (it applies new targets at most every 5 s, so a
    fresh Prometheus takes that long); the Unix time to count scrape gaps from."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = httpx.get(
            f"{prom_url}/api/v1/query", params={"query": f'up{{job="{job}"}}'}, timeout=10, trust_env=False
        ).json()
        if data.get("status") == "success" and data["data"]["result"]:
            return time.time()
        time.sleep(0.25)
    raise AssertionError(f"Prometheus did not scrape {job} within {timeout:g}s")


@dataclass(frozen=True)
class Outage:
    back: float  # seconds from the fault until a request sent after it was answered 200
    failed: int  # answered, but not 200
    lost: int  # no answer at all
    outcomes: dict[str, int]
    longest_wait: float  # the longest a request sent in the second after the fault waited
    sent: int


def outage(events: list[Event], t_fault: float) -> Outage:
    """What the clients saw of a fault at ``t_fault`` (monotonic time), from their events."""
    events = [e for e in events if e.end >= t_fault]
    ok_after = sorted(e.end for e in events if e.start >= t_fault and e.outcome == "200")
    bad = Counter(e.outcome for e in events if e.outcome != "200")
    lost = sum(n for o, n in bad.items() if o.startswith("no answer"))
    waits = [e.end - e.start for e in events if t_fault <= e.start <= t_fault + 1.0]
    return Outage(
        back=ok_after[0] - t_fault if ok_after else float("inf"),
        failed=sum(bad.values()) - lost,
        lost=lost,
        outcomes=dict(bad),
        longest_wait=max(waits, default=0.0),
        sent=len(events),
    )
