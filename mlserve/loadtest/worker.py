"""The load-test process: locust as a library (Environment + LocalRunner, headless).

Run by :mod:`mlserve.loadtest.core` as ``python -m mlserve.loadtest.worker RUN.json``, never
imported by the mlserve process itself: importing locust monkey-patches the whole
interpreter with gevent, which deadlocks when another thread is running at import time
and turns threads (a uvicorn server, a rollout poller) into greenlets that starve the
main loop. A child process keeps all of that out of the CLI, the rollout engine and the
test suite.

The worker loads the rendered locustfile from the run folder (the very file a user can
re-run with ``locust -f``), runs it for the requested duration, and writes, in the run
folder: ``progress.json`` (about twice a second), locust's CSV files and HTML report, and
``summary.json``. SIGTERM or SIGINT stops the test early but still writes every report,
and so does the parent going away. Users stop gracefully (``stop_timeout``), so every
request the gateway counted is also counted here.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import sys
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlserve.loadtest.layout import (
    CSV_PREFIX,
    HTML_FILE,
    LOG_FILE,
    PAYLOADS_FILE,
    PROGRESS_FILE,
    RUN_FORMAT,
    SUMMARY_FILE,
)
from mlserve.loadtest.summary import SUMMARY_FORMAT, check_slo

PROGRESS_INTERVAL = 0.5


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _latency(entry: Any) -> dict[str, float | None]:
    if not entry.num_requests:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    return {
        "p50": float(entry.get_response_time_percentile(0.50)),
        "p95": float(entry.get_response_time_percentile(0.95)),
        "p99": float(entry.get_response_time_percentile(0.99)),
        "mean": round(float(entry.avg_response_time), 3),
        "max": round(float(entry.max_response_time), 3),
    }


def variant_of(name: str, endpoint: str) -> str:
    """``"fraud [v2]"`` -> ``"v2"``; a name the locustfile made up otherwise stays as it is."""
    prefix = f"{endpoint} ["
    if name.startswith(prefix) and name.endswith("]"):
        return name[len(prefix) : -1]
    return name


def _llm_section(run: dict[str, Any], out_dir: Path | None) -> dict[str, Any]:
    """LLM endpoints: per-variant TTFT, inter-token and tokens-per-second percentiles."""
    if run.get("protocol") != "openai" or out_dir is None:
        return {}
    from mlserve.loadtest import llm

    return {"protocol": "openai", "llm": llm.summarize(llm.read_records(out_dir / llm.REQUESTS_FILE))}


def build_summary(
    env: Any, run: dict[str, Any], start: float, end: float, stop_reason: str, out_dir: Path | None = None
) -> dict[str, Any]:
    stats = env.stats
    elapsed = max(end - start, 1e-9)
    total = stats.total
    variants: dict[str, dict[str, Any]] = {}
    for entry in sorted(stats.entries.values(), key=lambda e: e.name):
        name = variant_of(entry.name, run["endpoint"])
        variants[name] = {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "failure_ratio": entry.num_failures / entry.num_requests if entry.num_requests else None,
            "requests_per_second": round(entry.num_requests / elapsed, 3),
            "latency_ms": _latency(entry),
        }
    errors = [
        {
            "variant": variant_of(err.name, run["endpoint"]),
            "error": str(err.error)[:500],
            "occurrences": err.occurrences,
        }
        for err in sorted(stats.errors.values(), key=lambda e: -e.occurrences)[:20]
    ]
    latency = _latency(total)
    slo = run.get("slo") or {}
    verdict = check_slo(
        total.num_requests,
        total.num_failures,
        latency["p99"],
        p99_latency=slo.get("p99_latency"),
        error_rate=slo.get("error_rate"),
    )
    return {
        "format": SUMMARY_FORMAT,
        "endpoint": run["endpoint"],
        "environment": run.get("environment"),
        "target_url": run["host"],
        "infer_path": run["infer_path"],
        "started_at": _iso(start),
        "ended_at": _iso(end),
        "start_time": round(start, 3),
        "end_time": round(end, 3),
        "duration_seconds": round(elapsed, 3),
        "stop_reason": stop_reason,
        "users": run["users"],
        "spawn_rate": run["spawn_rate"],
        "requested_duration_seconds": run["duration"],
        "rps_cap": run.get("rps_cap"),
        "requests": total.num_requests,
        "failures": total.num_failures,
        "failure_ratio": total.num_failures / total.num_requests if total.num_requests else None,
        "requests_per_second": round(total.num_requests / elapsed, 3),
        "latency_ms": latency,
        "variants": variants,
        "errors": errors,
        "slo": verdict.to_dict(),
        **_llm_section(run, out_dir),
        "files": {
            "locustfile": run["locustfile"],
            "payloads": PAYLOADS_FILE,
            "html": HTML_FILE,
            "stats_csv": f"{CSV_PREFIX}_stats.csv",
            "history_csv": f"{CSV_PREFIX}_stats_history.csv",
            "failures_csv": f"{CSV_PREFIX}_failures.csv",
            "exceptions_csv": f"{CSV_PREFIX}_exceptions.csv",
            "log": LOG_FILE,
        },
    }


def _user_classes(locustfile: Path) -> list[type]:
    from locust import User

    spec = importlib.util.spec_from_file_location("mlserve_locustfile", locustfile)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{locustfile}: cannot load")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    classes = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, User)
        and obj.__module__ == module.__name__
        and not getattr(obj, "abstract", False)
    ]
    if not classes:
        raise SystemExit(f"{locustfile}: defines no locust User class")
    return classes


def run(run_file: Path) -> int:
    # A stop asked for while locust is still importing (a second or two) is kept, not lost:
    # the test then starts and stops at once, and every report is still written.
    stop: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append("stopped"))
    signal.signal(signal.SIGINT, lambda *_: stop.append("stopped"))

    import logging

    import gevent
    from locust.env import Environment
    from locust.html import get_html_report
    from locust.stats import PERCENTILES_TO_REPORT, StatsCSV, StatsCSVFileWriter, stats_history

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = json.loads(run_file.read_text(encoding="utf-8"))
    if spec.get("format") != RUN_FORMAT:
        raise SystemExit(f"{run_file}: not a {RUN_FORMAT} document")
    out = run_file.parent
    locustfile = out / spec["locustfile"]
    parent = int(spec.get("parent_pid") or os.getppid())

    env = Environment(
        user_classes=_user_classes(locustfile),
        host=spec["host"],
        stop_timeout=float(spec["stop_timeout"]),
        locustfile=locustfile.name,
    )
    runner = env.create_local_runner()
    csv_writer = StatsCSVFileWriter(env, PERCENTILES_TO_REPORT, str(out / CSV_PREFIX), full_history=True)
    history = gevent.spawn(stats_history, runner)
    writer = gevent.spawn(csv_writer)

    gevent.signal_handler(signal.SIGTERM, lambda: stop.append("stopped"))
    gevent.signal_handler(signal.SIGINT, lambda: stop.append("stopped"))

    duration = float(spec["duration"])
    start = time.time()
    runner.start(int(spec["users"]), spawn_rate=float(spec["spawn_rate"]))
    reason = "duration"
    window: deque[tuple[float, int]] = deque(maxlen=int(4 / PROGRESS_INTERVAL))  # recent (time, requests)
    while True:
        elapsed = time.time() - start
        if elapsed >= duration:
            break
        if stop:
            reason = stop[0]
            break
        if os.getppid() != parent:
            reason = "parent-exited"
            break
        total = env.stats.total
        now = time.time()
        window.append((now, total.num_requests))
        t0, n0 = window[0]
        rps = (total.num_requests - n0) / (now - t0) if now > t0 else 0.0
        _write_json(
            out / PROGRESS_FILE,
            {
                "state": "running",
                "elapsed": round(elapsed, 2),
                "duration": duration,
                "users": runner.user_count,
                "requests": total.num_requests,
                "failures": total.num_failures,
                "rps": round(rps, 2),
            },
        )
        gevent.sleep(min(PROGRESS_INTERVAL, max(0.0, duration - elapsed)))
    _write_json(out / PROGRESS_FILE, {"state": "stopping", "elapsed": round(time.time() - start, 2)})
    runner.stop()  # users finish the request they are in (stop_timeout), then stop
    end = time.time()

    # Final CSV rows: one last history row, then the end-of-run tables written whole.
    writer.kill(block=True)
    history.kill(block=True)
    csv_writer._stats_history_data_rows(csv_writer.stats_history_csv_writer, end)
    csv_writer.close_files()
    final = StatsCSV(env, PERCENTILES_TO_REPORT)
    for suffix, write in (
        ("stats", final.requests_csv),
        ("failures", final.failures_csv),
        ("exceptions", final.exceptions_csv),
    ):
        with open(out / f"{CSV_PREFIX}_{suffix}.csv", "w", newline="", encoding="utf-8") as fh:
            write(csv.writer(fh))
    (out / HTML_FILE).write_text(get_html_report(env, show_download_link=False), encoding="utf-8")
    _write_json(out / SUMMARY_FILE, build_summary(env, spec, start, end, reason, out))
    runner.quit()
    _write_json(out / PROGRESS_FILE, {"state": "done", "elapsed": round(end - start, 2)})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m mlserve.loadtest.worker RUN.json\n")
        return 2
    return run(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
