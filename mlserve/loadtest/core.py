"""Load tests: plan a run (bounds, target, payloads, rendered locustfile), run locust in a
child process, read back its summary, and keep a background load for rollouts.

See :mod:`mlserve.loadtest` for the public API. Locust runs in a child process
(:mod:`mlserve.loadtest.worker`) because importing it gevent-patches the interpreter.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlserve.errors import MlserveError, StateError, TargetError, ToolError, UsageError
from mlserve.loadtest.layout import (
    HTML_FILE,
    LOCUSTFILE,
    LOG_FILE,
    PAYLOADS_FILE,
    PROGRESS_FILE,
    RUN_FILE,
    RUN_FORMAT,
    SUMMARY_FILE,
)
from mlserve.loadtest.payloads import read_payloads, synthesize, write_payloads
from mlserve.loadtest.render import TEMPLATE, render_locustfile
from mlserve.loadtest.summary import LoadResult, read_summary

# Bounds: a load test always ends, and never opens more users than a laptop can hold.
MIN_DURATION = 1.0
MAX_DURATION = 3600.0
MAX_BACKGROUND_DURATION = 24 * 3600.0
MIN_USERS = 1
MAX_USERS = 1000
MAX_SPAWN_RATE = 1000.0
MAX_RPS = 100_000.0
REQUEST_TIMEOUT = 30.0
STOP_TIMEOUT = REQUEST_TIMEOUT + 5.0  # users finish the request they are in before stopping
REPORT_GRACE = 60.0  # start-up and report writing, on top of duration + STOP_TIMEOUT
VARIANT_HEADER = "x-mlserve-variant"
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class LoadOptions:
    """Checked command-line values."""

    users: int
    spawn_rate: float
    duration: float
    rps_cap: float | None


def check_options(
    *,
    users: int,
    duration: float,
    spawn_rate: float | None = None,
    rps_cap: float | None = None,
    max_duration: float = MAX_DURATION,
) -> LoadOptions:
    """UsageError (exit 2) naming the option when a value is out of bounds."""
    if not MIN_DURATION <= duration <= max_duration:
        raise UsageError(
            f"--duration must be between {MIN_DURATION:g}s and {max_duration:g}s (got {duration:g}s)",
            hint="a load test is always bounded in time",
        )
    if isinstance(users, bool) or not MIN_USERS <= users <= MAX_USERS:
        raise UsageError(f"--users must be between {MIN_USERS} and {MAX_USERS} (got {users})")
    rate = float(users if spawn_rate is None else spawn_rate)
    if not 0 < rate <= MAX_SPAWN_RATE:
        raise UsageError(f"--spawn-rate must be above 0 and at most {MAX_SPAWN_RATE:g} users/s (got {rate:g})")
    if rps_cap is not None and not 0 < rps_cap <= MAX_RPS:
        raise UsageError(f"--rps must be above 0 and at most {MAX_RPS:g} (got {rps_cap:g})")
    return LoadOptions(users=users, spawn_rate=rate, duration=duration, rps_cap=rps_cap)


def parse_duration_option(text: str) -> float:
    from mlserve.manifest.units import parse_duration

    try:
        return parse_duration(text.strip())
    except ValueError as exc:
        raise UsageError(f"--duration: {exc}") from None


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, loopback_only: bool) -> str:
    try:
        parsed = urlparse(url)
        _ = parsed.port  # a port that is not a number in 0-65535 raises ValueError
    except ValueError as exc:  # 'http://[/]': an unbalanced IPv6 bracket
        raise UsageError(f"--url is not a valid URL: {exc} (got {url!r})") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(f"--url must be an http(s) URL like http://127.0.0.1:8080 (got {url!r})")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise UsageError(f"--url is the gateway's base URL, without a path (got {url!r})")
    if loopback_only and not is_loopback(parsed.hostname):
        raise UsageError(
            f"the local target is reached on loopback only; {parsed.hostname!r} is not a loopback address",
            hint="use http://127.0.0.1:PORT (the gateway's port is in `mlserve status`)",
        )
    return url.rstrip("/")


def resolve_target(project: Any, env_name: str, url: str | None) -> str:
    """The gateway URL for ``env_name``: the local deployment's, or ``--url``."""
    env = project.manifest.environments[env_name]
    if env.target == "local":
        if url is not None:
            return check_url(url, loopback_only=True)
        from mlserve.targets.local import LocalTarget

        return check_url(LocalTarget(project, env_name).gateway_url(), loopback_only=True)
    if url is None:
        raise UsageError(
            f"environment {env_name!r} has target = {env.target!r}; mlserve does not know its ingress URL",
            hint="pass --url with the endpoint's ingress (gateway) base URL",
        )
    return check_url(url, loopback_only=False)


def probe(url: str, endpoint: str, timeout: float = 5.0) -> None:
    """Fail fast, before a minute of connection errors, when nothing answers at ``url``."""
    import httpx

    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            resp = client.get(f"{url}/v2/health/live")
    except httpx.HTTPError as exc:
        raise TargetError(
            f"nothing answers at {url} ({type(exc).__name__})",
            hint="is the environment deployed? `mlserve status` shows what runs",
        ) from None
    if resp.status_code >= 500:
        raise TargetError(f"{url}/v2/health/live answered {resp.status_code}; the gateway is not healthy")


def default_out_dir(project: Any, endpoint: str, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = project.experiments_dir / endpoint / f"loadtest-{stamp}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


@dataclass(frozen=True)
class LoadPlan:
    """Everything a run needs, already on disk in ``out_dir``."""

    out_dir: Path
    endpoint: str
    environment: str | None
    url: str
    options: LoadOptions
    payload_source: str  # the file, or "synthesised from [endpoints.X.input]"
    payload_count: int
    slo: dict[str, float | None]

    @property
    def locustfile(self) -> Path:
        return self.out_dir / LOCUSTFILE

    @property
    def run_file(self) -> Path:
        return self.out_dir / RUN_FILE

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "endpoint": self.endpoint,
            "environment": self.environment,
            "url": self.url,
            "users": self.options.users,
            "spawn_rate": self.options.spawn_rate,
            "duration_seconds": self.options.duration,
            "rps_cap": self.options.rps_cap,
            "payloads": self.payload_source,
            "payload_count": self.payload_count,
            "slo": self.slo,
        }


def write_plan(
    *,
    out_dir: Path,
    url: str,
    endpoint: str,
    options: LoadOptions,
    payloads: Sequence[dict[str, Any]],
    payload_source: str,
    environment: str | None = None,
    slo: dict[str, float | None] | None = None,
    project_root: Path | None = None,
    protocol: str = "v2",
) -> LoadPlan:
    """Write the run folder: payloads.jsonl, the rendered locustfile.py and run.json.

    ``protocol = "openai"``: the payloads are chat requests, streamed by the LLM locustfile."""
    from mlserve.loadtest import llm

    path = "/v1/chat/completions" if protocol == "openai" else f"/v2/models/{endpoint}/infer"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out_dir}: cannot create the output folder: {exc.strerror or exc}") from None
    plan = LoadPlan(
        out_dir=out_dir.resolve(),
        endpoint=endpoint,
        environment=environment,
        url=url,
        options=options,
        payload_source=payload_source,
        payload_count=len(payloads),
        slo=dict(slo or {"p99_latency": None, "error_rate": None}),
    )
    write_payloads(out_dir / PAYLOADS_FILE, payloads)
    source = render_locustfile(
        {
            "endpoint": endpoint,
            "infer_path": path,
            "host": url,
            "variant_header": VARIANT_HEADER,
            "rps_cap": options.rps_cap,
            "request_timeout": REQUEST_TIMEOUT,
            "users": options.users,
            "spawn_rate": f"{options.spawn_rate:g}",
            "duration_s": f"{options.duration:g}",
        },
        project_root,
        llm.TEMPLATE if protocol == "openai" else TEMPLATE,
    )
    plan.locustfile.write_text(source, encoding="utf-8")
    for stale in (SUMMARY_FILE, PROGRESS_FILE, llm.REQUESTS_FILE):
        (out_dir / stale).unlink(missing_ok=True)
    run = {
        "format": RUN_FORMAT,
        "endpoint": endpoint,
        "environment": environment,
        "host": url,
        "infer_path": path,
        "protocol": protocol,
        "locustfile": plan.locustfile.name,
        "users": options.users,
        "spawn_rate": options.spawn_rate,
        "duration": options.duration,
        "rps_cap": options.rps_cap,
        "stop_timeout": STOP_TIMEOUT,
        "slo": plan.slo,
        "parent_pid": os.getpid(),
    }
    plan.run_file.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    return plan


def plan_loadtest(
    project: Any,
    endpoint: str,
    *,
    env: str | None = None,
    users: int = 10,
    spawn_rate: float | None = None,
    duration: float = 60.0,
    rps_cap: float | None = None,
    payload_file: Path | None = None,
    out_dir: Path | None = None,
    url: str | None = None,
) -> LoadPlan:
    """Check everything a user gave (exit 2 on bad input) and write the run folder."""
    env_name = project.environment(env)
    project.endpoint(endpoint, env_name)
    options = check_options(users=users, duration=duration, spawn_rate=spawn_rate, rps_cap=rps_cap)
    ep = project.manifest.endpoints[endpoint]
    protocol = ep.api
    if protocol == "openai":
        from mlserve.loadtest import llm

        if payload_file is not None:
            path = payload_file if payload_file.is_absolute() else Path.cwd() / payload_file
            payloads = llm.read_prompts(path)
            source = str(payload_file)
        else:
            payloads = llm.synthesize_prompts()
            source = f"{len(payloads)} synthesised chat prompts"
    elif payload_file is not None:
        path = payload_file if payload_file.is_absolute() else Path.cwd() / payload_file
        payloads = read_payloads(path)
        source = str(payload_file)
    else:
        spec = ep.input
        payloads = synthesize(spec.name, spec.datatype, spec.shape)
        source = f"synthesised from [endpoints.{endpoint}.input] ({spec.name}, {spec.datatype}, {list(spec.shape)})"
    target = resolve_target(project, env_name, url)
    return write_plan(
        out_dir=out_dir if out_dir is not None else default_out_dir(project, endpoint),
        url=target,
        endpoint=endpoint,
        options=options,
        payloads=payloads,
        payload_source=source,
        environment=env_name,
        slo={"p99_latency": ep.slo.p99_latency, "error_rate": ep.slo.error_rate},
        project_root=project.root,
        protocol=protocol,
    )


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    state: str
    elapsed: float
    duration: float
    users: int
    requests: int
    failures: int
    rps: float


def _read_progress(out_dir: Path, duration: float) -> Progress | None:
    try:
        data = json.loads((out_dir / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Progress(
        state=str(data.get("state", "running")),
        elapsed=float(data.get("elapsed", 0.0)),
        duration=float(data.get("duration", duration)),
        users=int(data.get("users", 0)),
        requests=int(data.get("requests", 0)),
        failures=int(data.get("failures", 0)),
        rps=float(data.get("rps", 0.0)),
    )


def _log_tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:].strip()
    except OSError:
        return ""


class LoadProcess:
    """A running worker; ``stop()`` ends it early, ``wait()`` collects its summary. Bounded:
    past duration + stop timeout + a grace period the worker is killed."""

    def __init__(self, plan: LoadPlan) -> None:
        from mlserve.tools import spawn

        self.plan = plan
        self.log_path = plan.out_dir / LOG_FILE
        self.log_path.unlink(missing_ok=True)
        self.started = time.monotonic()
        self.deadline = self.started + plan.options.duration + STOP_TIMEOUT + REPORT_GRACE
        self._proc: subprocess.Popen[bytes] = spawn(
            [sys.executable, "-m", "mlserve.loadtest.worker", str(plan.run_file)],
            log_path=self.log_path,
            cwd=plan.out_dir,
            env={"PYTHONUNBUFFERED": "1"},
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def running(self) -> bool:
        return self._proc.poll() is None

    def progress(self) -> Progress | None:
        return _read_progress(self.plan.out_dir, self.plan.options.duration)

    def stop(self) -> None:
        """Ask the worker to stop now; it still writes every report."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGTERM)

    def kill(self) -> None:
        if self.running():
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self._proc.kill()
        self._proc.wait()

    def wait(
        self,
        on_progress: Callable[[Progress], None] | None = None,
        *,
        poll: float = 0.25,
        deadline: float | None = None,
    ) -> LoadResult:
        """Block until the worker exits (or the deadline passes: then kill it) and read its summary."""
        deadline = self.deadline if deadline is None else min(deadline, self.deadline)
        try:
            while self.running():
                if time.monotonic() > deadline:
                    self.kill()
                    raise ToolError(
                        f"the load test did not finish in time and was killed (log: {self.log_path})",
                        stderr=_log_tail(self.log_path),
                    )
                if on_progress is not None:
                    p = self.progress()
                    if p is not None:
                        on_progress(p)
                time.sleep(poll)
        except BaseException:
            # Interrupted (Ctrl-C) or failed: stop the worker, let it write its reports, re-raise.
            if self.running():
                self.stop()
                try:
                    self._proc.wait(timeout=STOP_TIMEOUT + 15)
                except subprocess.TimeoutExpired:
                    self.kill()
            raise
        code = self._proc.returncode
        if code != 0 or not (self.plan.out_dir / SUMMARY_FILE).exists():
            tail = _log_tail(self.log_path)
            raise ToolError(
                f"the load test (locust) exited with {code} before writing its summary; log: {self.log_path}"
                + (f"\n{tail}" if tail else ""),
                stderr=tail,
                returncode=code,
            )
        return read_summary(self.plan.out_dir)


def run_loadtest(plan: LoadPlan, on_progress: Callable[[Progress], None] | None = None) -> LoadResult:
    """Run a planned load test to the end; the result's ``exit_code`` is the SLO gate."""
    probe(plan.url, plan.endpoint)
    return LoadProcess(plan).wait(on_progress)


# ---------------------------------------------------------------------------
# Background load (rollouts)
# ---------------------------------------------------------------------------


class BackgroundLoad:
    """A load kept on an endpoint while something else happens (``mlserve rollout run --load``).

    Bounded three ways: ``max_duration``, ``stop()``, and the worker stopping on its own when
    this process goes away. Use as a context manager or call ``stop()`` exactly once.
    """

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self._process = LoadProcess(plan)
        self._result: LoadResult | None = None

    @property
    def out_dir(self) -> Path:
        return self.plan.out_dir

    @property
    def html_report(self) -> Path:
        return self.plan.out_dir / HTML_FILE

    def running(self) -> bool:
        return self._process.running()

    def progress(self) -> Progress | None:
        return self._process.progress()

    def stop(self, timeout: float = STOP_TIMEOUT + 30.0) -> LoadResult:
        """Stop the load (if still running), wait for the reports, return the summary."""
        if self._result is None:
            self._process.stop()
            self._result = self._process.wait(deadline=time.monotonic() + timeout)
        return self._result

    def __enter__(self) -> BackgroundLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        except MlserveError:
            if exc[0] is None:
                raise


def start_background_load(
    url: str,
    endpoint: str,
    *,
    out_dir: Path,
    users: int = 10,
    spawn_rate: float | None = None,
    payloads: Sequence[dict[str, Any]] | Path | None = None,
    input_spec: Any | None = None,
    rps_cap: float | None = None,
    max_duration: float = 3600.0,
    slo: dict[str, float | None] | None = None,
    environment: str | None = None,
    loopback_only: bool = True,
    protocol: str = "v2",
) -> BackgroundLoad:
    """Start a bounded load on ``url`` for ``endpoint`` and return at once (see BackgroundLoad)."""
    options = check_options(
        users=users, duration=max_duration, spawn_rate=spawn_rate, rps_cap=rps_cap, max_duration=MAX_BACKGROUND_DURATION
    )
    target = check_url(url, loopback_only=loopback_only)
    if protocol == "openai":
        from mlserve.loadtest import llm

        if isinstance(payloads, Path):
            bodies, source = llm.read_prompts(payloads), str(payloads)
        elif payloads is not None:
            bodies, source = list(payloads), "given"
        else:
            bodies, source = llm.synthesize_prompts(), "synthesised chat prompts"
    elif isinstance(payloads, Path):
        bodies, source = read_payloads(payloads), str(payloads)
    elif payloads is not None:
        from mlserve.loadtest.payloads import PayloadProblem, check_request

        bodies = list(payloads)
        for i, req in enumerate(bodies):
            try:
                check_request(req)
            except PayloadProblem as exc:
                raise UsageError(f"payloads[{i}]: not a V2 inference request: {exc}") from None
        if not bodies:
            raise UsageError("payloads: empty")
        source = "given"
    elif input_spec is not None:
        bodies = synthesize(input_spec.name, input_spec.datatype, input_spec.shape)
        source = "synthesised from the declared input"
    else:
        raise UsageError("start_background_load needs payloads or input_spec")
    plan = write_plan(
        out_dir=out_dir,
        url=target,
        endpoint=endpoint,
        options=options,
        payloads=bodies,
        payload_source=source,
        environment=environment,
        slo=slo,
        protocol=protocol,
    )
    probe(target, endpoint)
    return BackgroundLoad(plan)


def load_result(out_dir: Path) -> LoadResult:
    """Read a finished run's summary (for reports that link to an earlier load test)."""
    if not (Path(out_dir) / SUMMARY_FILE).exists():
        raise StateError(f"{out_dir}: no {SUMMARY_FILE}: not a finished load test")
    return read_summary(Path(out_dir))
