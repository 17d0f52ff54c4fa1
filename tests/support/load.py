"""A steady background load on the local gateway: a few threads posting the project's
payloads until stopped (bounded in time), every answer tallied by status code (what a user
would have seen) and kept with its time (the last ``EVENTS`` of them), so that an outage
can be measured, not only counted; :class:`ChatLoad` streams an LLM endpoint's chat requests
the same way."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Event:
    start: float  # monotonic time the request was sent
    end: float  # ... and answered (or failed)
    outcome: str  # "200", another status, or "no answer (ExceptionName)"


class Load:
    EVENTS = 200_000

    def __init__(
        self,
        url: str,
        bodies: list[str],
        threads: int = 4,
        *,
        endpoint: str = "fraud",
        cap_seconds: float = 400.0,
        backoff: float = 0.02,
    ) -> None:
        self.url = url
        self.bodies = bodies
        self.endpoint = endpoint
        self.backoff = backoff
        self.n_threads = threads
        self.stop_at = time.monotonic() + cap_seconds
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.codes: Counter[str] = Counter()
        self.events: deque[Event] = deque(maxlen=self.EVENTS)
        self.threads = [threading.Thread(target=self._work, args=(i, threads), daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def _work(self, i: int, step: int) -> None:
        k = i
        with httpx.Client(timeout=10, trust_env=False) as client:
            while not self.done.is_set() and time.monotonic() < self.stop_at:
                body = self.bodies[k % len(self.bodies)]
                t0 = time.monotonic()
                try:
                    r = client.post(
                        f"{self.url}/v2/models/{self.endpoint}/infer",
                        content=body,
                        headers={"content-type": "application/json", "x-user-id": f"user-{k}"},
                    )
                    code = str(r.status_code)
                except httpx.HTTPError as exc:
                    code = f"no answer ({type(exc).__name__})"
                    time.sleep(self.backoff)
                with self.lock:
                    self.codes[code] += 1
                    self.events.append(Event(t0, time.monotonic(), code))
                k += step

    @property
    def sent(self) -> int:
        with self.lock:
            return sum(self.codes.values())

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.codes)

    def since(self, t: float) -> list[Event]:
        """The answers that came at or after monotonic time ``t``."""
        with self.lock:
            return [e for e in self.events if e.end >= t]

    @staticmethod
    def outcomes(events: list[Event]) -> Counter[str]:
        return Counter(e.outcome for e in events)

    def stop(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(timeout=15)


class ChatLoad:
    """Two threads streaming chat requests (``prompts``: JSON bodies, one a line) to an LLM
    endpoint through the gateway's OpenAI route, reading every answer to its end, until stopped
    (bounded in time).

    ``pause``: seconds each thread waits after an answer. Without it the load is closed-loop at
    the routed server's pace and keeps it busy; a shadow of the same speed on the same cores
    then gets its copies as fast as it can serve them (utilisation one), so its queue, and the
    latency the gateway measures for it, grows for as long as the load runs."""

    def __init__(
        self,
        url: str,
        prompts: list[str],
        threads: int = 2,
        *,
        model: str = "chat",
        cap_seconds: float = 240.0,
        pause: float = 0.0,
    ) -> None:
        self.url = url
        self.prompts = prompts
        self.model = model
        self.pause = pause
        self.stop_at = time.monotonic() + cap_seconds
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._work, args=(i, threads), daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def _work(self, i: int, step: int) -> None:
        k = i
        with httpx.Client(timeout=30, trust_env=False) as client:
            while not self.done.is_set() and time.monotonic() < self.stop_at:
                body = {**json.loads(self.prompts[k % len(self.prompts)]), "model": self.model, "stream": True}
                try:
                    with client.stream("POST", f"{self.url}/v1/chat/completions", json=body) as resp:
                        for _ in resp.iter_raw():
                            pass
                except httpx.HTTPError:
                    time.sleep(0.05)
                if self.pause:
                    self.done.wait(self.pause)
                k += step

    def stop(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(timeout=30)
