"""Build the four reports of a rollout run from its state and events."""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlserve import format as fmt
from mlserve import fsutil
from mlserve.report.data import ReportData, StepRow, Summary
from mlserve.report.model import RunView, StepView
from mlserve.stats.agreement import AgreementResult
from mlserve.stats.engine import Result
from mlserve.status import Status, Verdict
from mlserve.timefmt import parse_utc

STATUS_WORDS = {
    Status.PROMOTED: "PROMOTED",
    Status.ROLLED_BACK: "ROLLED BACK",
    Status.HALTED: "HALTED (sample-ratio mismatch)",
    Status.INCONCLUSIVE: "INCONCLUSIVE",
    Status.ABORTED: "ABORTED",
    Status.PAUSED: "PAUSED",
    Status.RUNNING: "RUNNING",
}
STATUS_COLOURS = {Status.PROMOTED: "#1a7f37", Status.ROLLED_BACK: "#cf222e", Status.HALTED: "#9a6700"}


def _summary(run: RunView) -> Summary:
    d = run.decision
    analysed = d is not None and d.verdict is not Verdict.HELD
    return Summary(
        run_id=run.run_id,
        endpoint=run.endpoint,
        env=run.env,
        target=run.target or None,
        baseline=run.baseline,
        candidate=run.candidate,
        strategy=run.strategy,
        status=run.status,
        verdict=d.verdict if d else None,
        reason=(run.outcome.reason if run.outcome else "") or (d.reason if d else ""),
        forced=run.forced,
        started=run.started or None,
        finished=run.outcome.at if run.outcome else None,
        looks=sum(len(st.looks) for st in run.steps),
        held_looks=sum(st.held for st in run.steps),
        last_hold=run.last_hold.to_dict() if run.last_hold else None,
        alpha=run.policy.alpha,
        min_requests=run.policy.min_requests,
        interval_seconds=run.interval,
        srm=d.srm.to_dict() if d is not None and analysed else {},
        agreement=d.agreement.to_dict() if d is not None and d.agreement is not None else None,
        control=(d.compared_with or None) if d is not None else None,
        control_mode=run.policy.control,
        test_unit=d.test_unit if d is not None else "",
        arms=tuple(a.to_dict() for a in d.arms) if d is not None else (),
    )


def compared_line(s: Summary) -> str:
    """Which arm the candidate was compared with, in words."""
    if s.control:
        return (
            f"candidate compared with the control arm {s.control!r} (a fresh instance of {s.baseline} started for "
            f"the rollout, with the candidate's share of traffic); the primary {s.baseline} is watched for health"
        )
    if s.strategy == "shadow":
        return f"candidate compared with {s.baseline} on mirrored copies of the same requests"
    return f"candidate compared with the primary {s.baseline} (control = {s.control_mode!r})"


ARMS_HEAD = ["arm", "role", "version", "weight", "requests", "errors", "error rate", "p50", "p99"]


def _arm_row(a: Mapping[str, Any]) -> list[str]:
    rate = a.get("error_rate")
    return [
        str(a.get("name")), str(a.get("role")), str(a.get("version")),
        "-" if a.get("weight") is None else f"{float(a['weight']):g}%",
        f"{int(a.get('requests') or 0):,}", f"{int(a.get('errors') or 0):,}",
        "-" if rate is None else f"{100 * float(rate):.3g}%",
        fmt.value(a.get("p50"), "s"), fmt.value(a.get("p99"), "s"),
    ]  # fmt: skip


def _srm_arms(srm: Mapping[str, Any]) -> str:
    arms = srm.get("arms") or {}
    return "; ".join(
        f"{name} {fmt.value(x.get('share'))} (expected {fmt.value(x.get('expected'))})" for name, x in arms.items()
    )


def _step_row(st: StepView) -> StepRow:
    last = st.looks[-1].look.variants if st.looks else {}
    return StepRow(
        step=st.index + 1,
        phase=st.phase,
        weights=st.traffic.weights,
        shadow_percent=st.traffic.mirror_percent,
        looks=len(st.looks),
        held=st.held,
        requests={v: x.requests for v, x in last.items()},
        errors={v: x.errors for v, x in last.items()},
        verdict=st.decision.verdict if st.decision else None,
        reason=st.decision.reason if st.decision else "",
    )


def build_data(run: RunView, events: Sequence[Mapping[str, Any]]) -> ReportData:
    start = run.started_at
    weights: list[dict[str, Any]] = [{"t": 0.0, "weights": {run.baseline: 100, run.candidate: 0}}]
    for t in run.transitions:
        if t.weights:
            weights.append({"t": parse_utc(t.at) - start, "weights": dict(t.weights), "action": t.action})
    history = [
        {
            "t": parse_utc(sl.look.at) - start,
            "step": st.index + 1,
            "look": n,
            "at": sl.look.at,
            "verdict": sl.verdict,
            "metrics": [m.to_dict() for m in sl.metrics],
        }
        for st in run.steps
        for n, sl in enumerate(st.looks, start=1)
    ]
    cum = run.cumulative_snapshot()
    hists: dict[str, dict[str, Any]] = {}
    if cum.looks:
        for v, stats in cum.looks[-1].variants.items():
            if stats.latency is not None:
                hists[v] = stats.latency.to_dict()
    gpu: dict[str, dict[str, float]] = {}
    for st in run.steps:
        gpu.update({k: dict(v) for k, v in st.gpu.items()})
    keys = ("at", "event", "step", "look", "verdict", "reason", "action", "status", "seq")
    return ReportData(
        summary=_summary(run),
        metrics=tuple(run.decision.metrics) if run.decision else (),
        steps=tuple(_step_row(st) for st in run.steps),
        timeline=[{k: e.get(k) for k in keys if k in e} for e in events],
        weights=weights,
        history=history,
        histograms=hists,
        gpu=gpu,
        load=run.load.to_dict() if run.load else None,
        queries=[
            {"step": int(e.get("step", 0)) + 1, "look": e.get("look"), "queries": list(e["queries"])}
            for e in events
            if e.get("event") == "look" and e.get("queries")
        ],
        shadow_samples=next((tuple(dict(x) for x in st.samples) for st in reversed(run.steps) if st.samples), ()),
    )


# ---------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------


def write_reports(
    root: Path, run: RunView, events: Sequence[Mapping[str, Any]], *, html_report: bool = True
) -> dict[str, Path]:
    data = build_data(run, events)
    out = report_paths(root, html_report=html_report)
    fsutil.atomic_write_text(out["json"], json.dumps(data.to_dict(), indent=1, allow_nan=False, default=_none) + "\n")
    fsutil.atomic_write_text(out["markdown"], markdown(data))
    fsutil.atomic_write_text(out["junit"], junit(data))
    if html_report:
        fsutil.atomic_write_text(out["html"], html_page(data))
    return out


def report_paths(root: Path, *, html_report: bool = True) -> dict[str, Path]:
    """Where :func:`write_reports` writes, by kind."""
    out = {"json": root / "report.json", "markdown": root / "report.md", "junit": root / "junit.xml"}
    if html_report:
        out["html"] = root / "report.html"
    return out


def _none(_value: Any) -> None:
    return None


def _metric_row(m: Result) -> list[str]:
    if isinstance(m, AgreementResult):
        return [
            "agreement",
            m.verdict,
            f"{m.agree:,}/{m.compared:,} agree",
            fmt.value(m.estimate),
            fmt.interval(m.ci, m.kind),
            f">= {m.bound}",
            fmt.p_value(m.p_value),
        ]
    return [
        m.name,
        m.verdict,
        f"{fmt.value(m.baseline, m.unit)} -> {fmt.value(m.candidate, m.unit)}",
        fmt.change(m.estimate),
        fmt.interval(m.ci),
        m.margin,
        fmt.p_value(m.p_value_holm),
    ]


def _sample_row(x: Mapping[str, Any]) -> list[str]:
    """One example pair of an LLM shadow: prompt, the two generations, and how they compared."""
    similarity = x.get("similarity")
    return [
        str(x.get("prompt", "")),
        str(x.get("routed_text", "")),
        str(x.get("shadow_text", "")),
        "yes" if x.get("agree") else "no",
        "-" if not isinstance(similarity, int | float) else f"{similarity:.3f}",
    ]


METRIC_HEAD = ["metric", "verdict", "baseline -> candidate", "change", "confidence interval", "margin", "p (fail)"]


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    def cell(x: str) -> str:
        return x.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(d: ReportData) -> str:
    s = d.summary
    parts = [
        f"# Rollout {s.run_id}: {s.endpoint} {s.baseline} -> {s.candidate}",
        "",
        f"**{STATUS_WORDS.get(s.status, s.status)}**"
        + (" (forced by hand with `--force`)" if s.forced else "")
        + f" - strategy {s.strategy}, environment {s.env}",
        "",
        s.reason or "",
        "",
        f"- started {s.started}, finished {s.finished or '-'}",
        f"- {s.looks} looks, {s.held_looks} held; alpha {s.alpha}, min_requests {s.min_requests}, "
        f"interval {s.interval_seconds}s",
    ]
    if s.last_hold:
        parts.append(f"- last hold: {s.last_hold['reason']}")
    srm = s.srm
    parts.append(f"- {compared_line(s)}" + (f"; test unit: {s.test_unit}" if s.test_unit else ""))
    if srm.get("p_value") is not None:
        every = _srm_arms(srm)
        parts.append(
            f"- sample ratio: candidate share {fmt.value(srm.get('candidate_share'))} vs expected "
            f"{fmt.value(srm.get('expected_share'))}, p = {fmt.p_value(srm.get('p_value'))} "
            f"({'ok' if srm.get('ok') else 'MISMATCH'})" + (f"; every arm: {every}" if every else "")
        )
    parts += ["", "## Metrics (latest analysis)", "", _md_table(METRIC_HEAD, [_metric_row(m) for m in d.metrics])]
    notes = [f"- {m.name}: {m.note}" for m in d.metrics if getattr(m, "note", "")]
    if notes:  # the quantile compared and its resolution, warnings about coarse buckets
        parts += ["", *notes]
    if s.arms:
        parts += ["", "## Arms (latest analysis; the primary is watched, not compared)", ""]
        parts.append(_md_table(ARMS_HEAD, [_arm_row(a) for a in s.arms]))
    parts += ["", "## Steps", ""]
    rows = []
    for st in d.steps:
        w = fmt.weights(st.weights)
        if st.phase == "shadow":
            w += f" (+{st.shadow_percent}% mirrored)"
        req = ", ".join(f"{v} {n:,}" for v, n in st.requests.items())
        rows.append([str(st.step), st.phase, w, str(st.looks), str(st.held), req, str(st.verdict)])
    parts.append(_md_table(["step", "phase", "weights", "looks", "held", "requests", "verdict"], rows))
    if d.shadow_samples:
        parts += ["", "## Example generations (shadow)", ""]
        head = ["prompt", s.baseline, s.candidate, "agree", "similarity"]
        parts.append(_md_table(head, [_sample_row(x) for x in d.shadow_samples]))
    if d.gpu:
        parts += ["", "## GPU", ""]
        for v, figures in d.gpu.items():
            parts.append(f"- {v}: " + ", ".join(f"{k} {val:.3g}" for k, val in figures.items()))
    if d.load:
        parts += ["", "## Load test", ""]
        if d.load.get("markdown"):
            parts.append(str(d.load["markdown"]).strip())
        else:
            parts += ["```json", json.dumps({k: v for k, v in d.load.items() if k != "markdown"}, indent=1), "```"]
    if d.queries:
        parts += [
            "",
            "## Queries",
            "",
            "Each look ran these PromQL queries (at the look's time and at its step's anchor):",
            "",
        ]
        groups: list[tuple[int, list[Any], list[str]]] = []
        for q in d.queries:
            if groups and groups[-1][0] == q["step"] and groups[-1][2] == q["queries"]:
                groups[-1][1].append(q["look"])
            else:
                groups.append((q["step"], [q["look"]], q["queries"]))
        for step, looks, queries in groups:
            span = f"look {looks[0]}" if len(looks) == 1 else f"looks {looks[0]}-{looks[-1]}"
            parts.append(f"- step {step}, {span}:")
            parts += [f"  - `{text}`" for text in queries]
    parts += ["", "## Events", ""]
    for e in d.timeline:
        extra = " ".join(f"{k}={e[k]}" for k in ("step", "look", "verdict", "action", "status") if k in e)
        parts.append(f"- {e.get('at')} {e.get('event')} {extra}".rstrip())
    return "\n".join(parts) + "\n"


def junit(d: ReportData) -> str:
    s = d.summary
    suite = ET.Element(
        "testsuite",
        name=f"mlserve rollout {s.endpoint} {s.baseline}->{s.candidate}",
        tests=str(len(d.metrics)),
        failures=str(sum(1 for m in d.metrics if m.verdict == "fail")),
        skipped=str(sum(1 for m in d.metrics if m.verdict in ("inconclusive", "no_data"))),
        errors="0",
    )
    props = ET.SubElement(suite, "properties")
    for key in ("run_id", "status", "verdict", "strategy", "baseline", "candidate", "control", "test_unit", "env",
                "forced"):  # fmt: skip
        ET.SubElement(props, "property", name=key, value=str(getattr(s, key)))
    ET.SubElement(props, "property", name="reason", value=str(s.reason or ""))
    for m in d.metrics:
        case = ET.SubElement(suite, "testcase", classname=f"rollout.{s.endpoint}", name=m.name)
        row = dict(zip(METRIC_HEAD, _metric_row(m), strict=True))
        text = "; ".join(f"{k}: {v}" for k, v in row.items())
        verdict = m.verdict
        if verdict == "fail":
            ET.SubElement(case, "failure", message=f"{m.name} worse than the baseline beyond its margin").text = text
        elif verdict in ("inconclusive", "no_data"):
            ET.SubElement(case, "skipped", message=f"{m.name}: {verdict}").text = text
        else:
            ET.SubElement(case, "system-out").text = text
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def html_page(d: ReportData) -> str:
    from mlserve.report.plots import histogram_png, metric_png, weights_png

    s = d.summary
    esc = html.escape
    images = [("Traffic weights over time", weights_png(d))]
    names = [m.name for m in d.metrics]
    for name in names:
        png = metric_png(d, name)
        if png:
            images.append((f"{name}: estimate and confidence interval per look", png))
    hist = histogram_png(d)
    if hist:
        images.append(("Latency: baseline vs candidate (whole run)", hist))
    head = "".join(f"<th>{esc(h)}</th>" for h in METRIC_HEAD)
    rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in _metric_row(m)) + "</tr>" for m in d.metrics)
    step_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{esc(str(c))}</td>"
            for c in (
                st.step,
                st.phase,
                fmt.weights(st.weights),
                st.looks,
                st.held,
                ", ".join(f"{v} {n:,}" for v, n in st.requests.items()),
                st.verdict,
            )
        )
        + "</tr>"
        for st in d.steps
    )
    figs = "".join(
        f'<figure><img alt="{esc(title)}" src="data:image/png;base64,{png}"/><figcaption>{esc(title)}</figcaption></figure>'
        for title, png in images
    )
    colour = STATUS_COLOURS.get(s.status, "#57606a")
    forced = " (forced with --force)" if s.forced else ""
    events = "".join(
        f"<li>{esc(str(e.get('at')))} {esc(str(e.get('event')))} "
        + esc(" ".join(f"{k}={e[k]}" for k in ("step", "look", "verdict", "action", "status") if k in e))
        + "</li>"
        for e in d.timeline
    )
    pairs = ""
    if d.shadow_samples:
        cells = "".join(
            "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in _sample_row(x)) + "</tr>" for x in d.shadow_samples
        )
        pairs = (
            f"<h2>Example generations (shadow)</h2><table><tr><th>prompt</th><th>{esc(s.baseline)}</th>"
            f"<th>{esc(s.candidate)}</th><th>agree</th><th>similarity</th></tr>{cells}</table>"
        )
    load = ""
    if d.load and d.load.get("variants"):
        cells = "".join(
            f"<tr><td>{esc(v)}</td><td>{x.get('requests')}</td><td>{x.get('failures')}</td>"
            + "".join(f"<td>{esc(str((x.get('latency_ms') or {}).get(q, '-')))}</td>" for q in ("p50", "p95", "p99"))
            + "</tr>"
            for v, x in d.load["variants"].items()
        )
        load = (
            "<h2>Load test</h2><table><tr><th>variant</th><th>requests</th><th>failures</th><th>p50 ms</th>"
            f"<th>p95 ms</th><th>p99 ms</th></tr>{cells}</table>"
        )
    notes = "".join(f"<li>{esc(m.name)}: {esc(m.note)}</li>" for m in d.metrics if getattr(m, "note", ""))
    notes = f"<ul>{notes}</ul>" if notes else ""
    arms = ""
    if s.arms:
        arm_head = "".join(f"<th>{esc(h)}</th>" for h in ARMS_HEAD)
        arm_rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in _arm_row(a)) + "</tr>" for a in s.arms)
        arms = f"<h2>Arms (the primary is watched, not compared)</h2><table><tr>{arm_head}</tr>{arm_rows}</table>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rollout {esc(s.run_id)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#24292f}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #d0d7de;padding:4px 8px;text-align:left}}
.verdict{{font-size:1.4em;font-weight:bold;color:{colour}}}figure{{margin:1.5em 0}}img{{max-width:100%}}</style>
</head><body>
<h1>Rollout of {esc(s.endpoint)}: {esc(s.baseline)} &rarr; {esc(s.candidate)}</h1>
<p class="verdict">{esc(STATUS_WORDS.get(s.status, s.status))}{esc(forced)}</p>
<p>{esc(s.reason or "")}</p>
<p>run {esc(s.run_id)}, strategy {esc(s.strategy)}, environment {esc(s.env)}; {s.looks} looks,
{s.held_looks} held; alpha {esc(str(s.alpha))}</p>
<p>{esc(compared_line(s))}{esc("; test unit: " + s.test_unit if s.test_unit else "")}</p>
<h2>Metrics</h2><table><tr>{head}</tr>{rows}</table>
{notes}
{arms}
<h2>Steps</h2><table><tr><th>step</th><th>phase</th><th>weights</th><th>looks</th><th>held</th><th>requests</th>
<th>verdict</th></tr>{step_rows}</table>
<h2>Plots</h2>{figs}
{pairs}
{load}
<h2>Events</h2><ul>{events}</ul>
</body></html>
"""
