"""Load tests with locust: ``mlserve loadtest`` and a background load for rollouts.

How a run works. :func:`~mlserve.loadtest.core.plan_loadtest` checks the inputs (bounds:
duration 1 s .. 1 h, users 1 .. 1000; payload lines must be V2 inference requests; the
local target is reached on loopback only) and writes the run folder
(``experiments/ENDPOINT/loadtest-TIMESTAMP/`` by default): ``payloads.jsonl``, the
rendered ``locustfile.py`` (template ``templates/loadtest/locustfile.py.j2``; re-run it
with plain ``locust -f``) and ``run.json``. :func:`~mlserve.loadtest.core.run_loadtest`
then runs locust as a library (Environment + LocalRunner, headless) in a child process,
``python -m mlserve.loadtest.worker`` (see that module for why not in this process), and
reads back ``summary.json``. Requests are named ``"ENDPOINT [VARIANT]"`` after the
gateway's ``x-mlserve-variant`` header, so locust's report, its CSV files and the summary
all have one row per variant. Every run writes: ``report.html``, ``locust_stats.csv``,
``locust_stats_history.csv``, ``locust_failures.csv``, ``locust_exceptions.csv``,
``locust.log`` and ``summary.json`` (format ``mlserve.loadtest/v1``: requests, failures,
failure_ratio, requests_per_second, latency_ms p50/p95/p99/mean/max overall and per
variant, start/end time, target URL, and the SLO verdict against the endpoint's ``[slo]``).

SLO gate: :attr:`LoadResult.exit_code` is 0 when the failure ratio and the p99 are within
``[slo]`` (``error_rate``, ``p99_latency``), 3 when either is broken (the breaches name
it), 4 when no request completed (no data is never a pass).

Background load, for ``mlserve rollout run --load``::

    from mlserve.loadtest import start_background_load

    load = start_background_load(
        gateway_url, "fraud",
        out_dir=run_dir / "load",          # the run's reports go here
        users=10,                          # 1 .. 1000
        input_spec=endpoint.input,         # or payloads=[...] / payloads=Path("x.jsonl")
        rps_cap=None,                      # optional cap on requests/s over all users
        max_duration=policy.max_duration,  # hard bound, 1 s .. 24 h
        slo={"p99_latency": ..., "error_rate": ...},
    )
    try:
        ...                                # the rollout; load.progress() for live figures
    finally:
        result = load.stop()               # -> LoadResult: .summary (dict), .html_report,
                                           #    .variants, .slo, .exit_code

``start_background_load`` returns once the worker is started (it first probes the gateway
and raises TargetError when nothing answers). The worker stops on ``stop()``, at
``max_duration``, or when the process that started it exits; ``stop()`` waits (bounded)
for the reports. ``BackgroundLoad`` is also a context manager.
:func:`~mlserve.loadtest.summary.summary_markdown` turns a result into a Markdown section
(per-variant table, SLO verdict, link to the locust HTML report) for the rollout report.
"""

from __future__ import annotations

from mlserve.loadtest.core import (
    BackgroundLoad,
    LoadOptions,
    LoadPlan,
    LoadProcess,
    Progress,
    load_result,
    plan_loadtest,
    run_loadtest,
    start_background_load,
)
from mlserve.loadtest.summary import LoadResult, SloBreach, SloVerdict, check_slo, summary_markdown

__all__ = [
    "BackgroundLoad",
    "LoadOptions",
    "LoadPlan",
    "LoadProcess",
    "LoadResult",
    "Progress",
    "SloBreach",
    "SloVerdict",
    "check_slo",
    "load_result",
    "plan_loadtest",
    "run_loadtest",
    "start_background_load",
    "summary_markdown",
]
