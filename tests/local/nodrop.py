"""Helpers of the no-drop tests: a locust load kept on an endpoint (``mlserve loadtest``'s own
background load: real locust in a child process), a timestamped thread load for outage
measurements, process ids, and scrape gaps read back from the local Prometheus."""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlserve.project import load_project


@contextlib.contextmanager
def deployed_copy(source: Path, root: Path, env: str = "local") -> Iterator[Path]:
    """A copy of the project ``source`` at ``root``, deployed; brought down afterwards."""
    from tests.conftest import run_cli

    shutil.copytree(source, root)
    mp = pytest.MonkeyPatch()
    mp.setenv("NO_COLOR", "1")
    mp.setenv("COLUMNS", "200")
    try:
        res = run_cli("deploy", "--env", env, cwd=root)
        assert res.exit_code == 0, res.output
        yield root
    finally:
        run_cli("down", cwd=root)
        mp.undo()


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


@dataclass
class Event:
    start: float
    end: float
    outcome: str  # "200", another status, or "no answer (ExceptionName)"


@dataclass
class ThreadLoad:
    """Clients posting to the gateway with keep-alive connections; every answer is kept with
    its time, so an outage can be measured (not only counted)."""

    url: str
    endpoint: str
    body: str
    threads: int = 4
    events: list[Event] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> ThreadLoad:
        self._workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)]
        for t in self._workers:
            t.start()
        return self

    def _work(self) -> None:
        cap = time.monotonic() + 300
        with httpx.Client(timeout=10, trust_env=False) as client:
            while not self._stop.is_set() and time.monotonic() < cap:
                t0 = time.monotonic()
                try:
                    r = client.post(
                        f"{self.url}/v2/models/{self.endpoint}/infer",
                        content=self.body,
                        headers={"content-type": "application/json"},
                    )
                    outcome = str(r.status_code)
                except httpx.HTTPError as exc:
                    outcome = f"no answer ({type(exc).__name__})"
                with self._lock:
                    self.events.append(Event(t0, time.monotonic(), outcome))
                if outcome != "200":
                    time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(15)

    def since(self, t: float) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.end >= t]

    def codes(self, events: list[Event]) -> Counter[str]:
        return Counter(e.outcome for e in events)


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
