"""``rollout run --load``: a bounded locust load at the target's entry point for the whole run.

Offered only where the target's metrics source says it can (``capabilities.background_load``:
the local gateway); on a cluster, traffic comes from real users.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mlserve.errors import UsageError
from mlserve.project import Project
from mlserve.rollout.machine import Machine
from mlserve.rollout.record import LoadRecord
from mlserve.targets.base import Environment


def start_load(machine: Machine, project: Project, env: Environment, users: int) -> Any:
    from mlserve.loadtest.core import start_background_load

    url = env.target.entry_url() if env.metrics.capabilities.background_load else None
    if url is None:
        raise UsageError("--load drives the local gateway only; on a cluster, traffic comes from real users")
    record = machine.record
    ep = project.manifest.endpoints[record.endpoint]
    payloads = project.root / "payloads" / f"{record.endpoint}.jsonl"
    remaining = max(60.0, record.deadline - machine.ports.clock() + 30.0)
    out_dir = machine.dir.root / "load"
    load = start_background_load(
        url,
        record.endpoint,
        out_dir=out_dir,
        users=users,
        payloads=payloads if payloads.is_file() else None,
        # an LLM endpoint streams chat requests: prompts from the payload file, else synthesised
        input_spec=None if payloads.is_file() or ep.api == "openai" else ep.input,
        max_duration=min(remaining, 6 * 3600.0),
        environment=record.env,
        protocol=ep.api,
    )
    machine.event("load_started", users=users, out_dir=str(out_dir))
    return load


def finish_load(machine: Machine, load: Any) -> None:
    try:
        result = load.stop()
    except Exception as exc:  # the rollout's outcome matters more than the load's report
        machine.event("load_failed", reason=str(exc)[:300])
        return
    summary = result.to_dict()
    try:
        from mlserve.loadtest.summary import summary_markdown

        markdown = summary_markdown(result, link_from=machine.dir.root)
    except Exception:  # the table is a nicety; the figures below are kept either way
        markdown = ""
    record = LoadRecord(
        markdown=markdown,
        requests=summary.get("requests"),
        failures=summary.get("failures"),
        variants=summary.get("variants") or {},
        out_dir=summary.get("out_dir"),
        html=str(result.html_report),
    )
    reports = {k: str(v) for k, v in machine.dir.report_paths().items()}
    machine.save(replace(machine.record, load=record, reports=reports))
    machine.event("load_stopped", requests=summary.get("requests"))
    machine.write_reports()
