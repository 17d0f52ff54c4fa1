"""Build the four reports of a rollout run from its state and events."""

from __future__ import annotations

import html
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlserve import fsutil

REPORT_FORMAT = "mlserve.rollout-report/v1"
STATUS_WORDS = {
    "promoted": "PROMOTED",
    "rolled_back": "ROLLED BACK",
    "halted": "HALTED (sample-ratio mismatch)",
    "inconclusive": "INCONCLUSIVE",
    "aborted": "ABORTED",
    "paused": "PAUSED",
    "running": "RUNNING",
}


@dataclass(frozen=True)
class ReportData:
    """Everything the reports show, as plain data (report.json is exactly ``to_dict``)."""

    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    weights: list[dict[str, Any]]  # [{"t": seconds since start, "weights": {...}}]
    history: list[dict[str, Any]]  # per look: {"t", "step", "metrics": [...]}
    histograms: dict[str, dict[str, Any]]  # variant -> latency_seconds (cumulative over the run)
    gpu: dict[str, dict[str, float]]
    load: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "summary": self.summary,
            "metrics": self.metrics,
            "steps": self.steps,
            "timeline": self.timeline,
            "weights": self.weights,
            "looks": self.history,
            "latency_histograms": self.histograms,
            "gpu": self.gpu,
            "load": self.load,
        }


def _ts(at: str) -> float:
    import datetime as dt

    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(at, fmt).replace(tzinfo=dt.UTC).timestamp()
        except ValueError:
            continue
    return math.nan


def build_data(state: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> ReportData:
    from mlserve.rollout.machine import cumulative_snapshot

    start = float(state["started_at"])
    decision = state.get("decision") or {}
    outcome = state.get("outcome") or {}
    forced = bool(state.get("forced"))
    status = state["status"]
    summary = {
        "run_id": state["run_id"],
        "endpoint": state["endpoint"],
        "env": state["env"],
        "target": state.get("target"),
        "baseline": state["baseline"],
        "candidate": state["candidate"],
        "strategy": state["strategy"],
        "status": status,
        "verdict": decision.get("verdict"),
        "reason": outcome.get("reason") or decision.get("reason", ""),
        "forced": forced,
        "started": state.get("started"),
        "finished": outcome.get("at"),
        "looks": sum(len(st["looks"]) for st in state["steps"]),
        "held_looks": sum(int(st.get("held", 0)) for st in state["steps"]),
        "last_hold": state.get("last_hold"),
        "alpha": state["policy"].get("alpha"),
        "min_requests": state["policy"].get("min_requests"),
        "interval_seconds": state.get("interval"),
        "srm": decision.get("srm", {}),
        "agreement": decision.get("agreement"),
        # LLM shadows: a few (routed, mirrored) generation pairs, redacted and truncated
        "shadow_samples": next((list(st["samples"]) for st in reversed(state["steps"]) if st.get("samples")), []),
    }
    steps = []
    for st in state["steps"]:
        last = st["looks"][-1]["variants"] if st["looks"] else {}
        d = st.get("decision") or {}
        steps.append(
            {
                "step": int(st["index"]) + 1,
                "phase": st["phase"],
                "weights": st["traffic"]["weights"],
                "shadow_percent": st["traffic"].get("shadow_percent", 0),
                "looks": len(st["looks"]),
                "held": int(st.get("held", 0)),
                "requests": {v: int(x["requests"]) for v, x in last.items()},
                "errors": {v: int(x["errors"]) for v, x in last.items()},
                "verdict": d.get("verdict"),
                "reason": d.get("reason", ""),
            }
        )
    weights: list[dict[str, Any]] = [{"t": 0.0, "weights": {state["baseline"]: 100, state["candidate"]: 0}}]
    for t in state.get("transitions", []):
        at = _ts(t["at"]) - start
        w = t.get("weights")
        if w:
            weights.append({"t": at, "weights": dict(w), "action": t.get("action")})
    history = []
    for st in state["steps"]:
        for h in st.get("history", []):
            history.append({"t": _ts(h["at"]) - start, "step": int(st["index"]) + 1, **h})
    cum = cumulative_snapshot(state)
    hists: dict[str, dict[str, Any]] = {}
    if cum["looks"]:
        for v, stats in cum["looks"][-1]["variants"].items():
            if "latency_seconds" in stats:
                hists[v] = stats["latency_seconds"]
    gpu: dict[str, dict[str, float]] = {}
    for st in state["steps"]:
        gpu.update(st.get("gpu") or {})
    timeline = [
        {k: e.get(k) for k in ("at", "event", "step", "look", "verdict", "reason", "action", "status", "seq") if k in e}
        for e in events
    ]
    return ReportData(
        summary=summary,
        metrics=list(decision.get("metrics", [])),
        steps=steps,
        timeline=timeline,
        weights=weights,
        history=history,
        histograms=hists,
        gpu=gpu,
        load=state.get("load"),
    )


# ---------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------


def _atomic_text(path: Path, text: str) -> None:
    fsutil.atomic_write_text(path, text, 0o644)


def write_reports(
    root: Path, state: Mapping[str, Any], events: Sequence[Mapping[str, Any]], *, html_report: bool = True
) -> dict[str, Path]:
    data = build_data(state, events)
    out = {
        "json": root / "report.json",
        "markdown": root / "report.md",
        "junit": root / "junit.xml",
    }
    _atomic_text(out["json"], json.dumps(data.to_dict(), indent=1, allow_nan=False, default=_none) + "\n")
    _atomic_text(out["markdown"], markdown(data))
    _atomic_text(out["junit"], junit(data))
    if html_report:
        out["html"] = root / "report.html"
        _atomic_text(out["html"], html_page(data))
    return out


def _none(_value: Any) -> None:
    return None


def _pct(x: Any) -> str:
    return "-" if not isinstance(x, int | float) or not math.isfinite(x) else f"{x * 100:+.2f}%"


def _num(x: Any, unit: str = "") -> str:
    if not isinstance(x, int | float) or not math.isfinite(x):
        return "-"
    if unit == "s":
        return f"{x * 1000:.3g} ms"
    if unit == "errors/request":
        return f"{x * 100:.3g}%"
    return f"{x:.4g}"


def _p(x: Any) -> str:
    return "-" if not isinstance(x, int | float) else f"{x:.3g}"


def _ci(ci: Any, kind: str = "") -> str:
    if not ci or len(ci) != 2:
        return "-"
    lo, hi = ci
    if kind == "agreement":
        return f"[{_num(lo)}, {_num(hi)}]"
    return f"[{_pct(lo) if lo is not None else '-inf'}, {_pct(hi) if hi is not None else '+inf'}]"


def _metric_row(m: Mapping[str, Any]) -> list[str]:
    kind = str(m.get("kind", ""))
    unit = str(m.get("unit", ""))
    if kind == "agreement":
        return [
            "agreement",
            str(m.get("verdict")),
            f"{m.get('agree', 0):,}/{m.get('compared', 0):,} agree",
            _num(m.get("estimate")),
            _ci(m.get("ci"), kind),
            f">= {m.get('bound')}",
            _p(m.get("p_value")),
        ]
    return [
        str(m.get("name")),
        str(m.get("verdict")),
        f"{_num(m.get('baseline'), unit)} -> {_num(m.get('candidate'), unit)}",
        _pct(m.get("estimate")),
        _ci(m.get("ci")),
        str(m.get("margin", "")),
        _p(m.get("p_value_holm", m.get("p_value"))),
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
        f"# Rollout {s['run_id']}: {s['endpoint']} {s['baseline']} -> {s['candidate']}",
        "",
        f"**{STATUS_WORDS.get(s['status'], s['status'])}**"
        + (" (forced by hand with `--force`)" if s["forced"] else "")
        + f" - strategy {s['strategy']}, environment {s['env']}",
        "",
        s["reason"] or "",
        "",
        f"- started {s['started']}, finished {s['finished'] or '-'}",
        f"- {s['looks']} looks, {s['held_looks']} held; alpha {s['alpha']}, min_requests {s['min_requests']}, "
        f"interval {s['interval_seconds']}s",
    ]
    if s.get("last_hold"):
        parts.append(f"- last hold: {s['last_hold']['reason']}")
    srm = s.get("srm") or {}
    if srm.get("p_value") is not None:
        parts.append(
            f"- sample ratio: candidate share {_num(srm.get('candidate_share'))} vs expected "
            f"{_num(srm.get('expected_share'))}, p = {_p(srm.get('p_value'))} ({'ok' if srm.get('ok') else 'MISMATCH'})"
        )
    parts += ["", "## Metrics (latest analysis)", "", _md_table(METRIC_HEAD, [_metric_row(m) for m in d.metrics])]
    parts += ["", "## Steps", ""]
    rows = []
    for st in d.steps:
        w = ", ".join(f"{v} {p}%" for v, p in st["weights"].items())
        if st["phase"] == "shadow":
            w += f" (+{st['shadow_percent']}% mirrored)"
        req = ", ".join(f"{v} {n:,}" for v, n in st["requests"].items())
        rows.append([str(st["step"]), st["phase"], w, str(st["looks"]), str(st["held"]), req, str(st["verdict"])])
    parts.append(_md_table(["step", "phase", "weights", "looks", "held", "requests", "verdict"], rows))
    if s.get("shadow_samples"):
        parts += ["", "## Example generations (shadow)", ""]
        rows = [
            [
                x.get("prompt", ""),
                x.get("routed_text", ""),
                x.get("shadow_text", ""),
                "yes" if x.get("agree") else "no",
                "-" if x.get("similarity") is None else f"{x['similarity']:.3f}",
            ]
            for x in s["shadow_samples"]
        ]
        parts.append(_md_table(["prompt", s["baseline"], s["candidate"], "agree", "similarity"], rows))
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
    parts += ["", "## Events", ""]
    for e in d.timeline:
        extra = " ".join(f"{k}={e[k]}" for k in ("step", "look", "verdict", "action", "status") if k in e)
        parts.append(f"- {e.get('at')} {e.get('event')} {extra}".rstrip())
    return "\n".join(parts) + "\n"


def junit(d: ReportData) -> str:
    s = d.summary
    suite = ET.Element(
        "testsuite",
        name=f"mlserve rollout {s['endpoint']} {s['baseline']}->{s['candidate']}",
        tests=str(len(d.metrics)),
        failures=str(sum(1 for m in d.metrics if m.get("verdict") == "fail")),
        skipped=str(sum(1 for m in d.metrics if m.get("verdict") in ("inconclusive", "no_data"))),
        errors="0",
    )
    props = ET.SubElement(suite, "properties")
    for key in ("run_id", "status", "verdict", "strategy", "baseline", "candidate", "env", "forced"):
        ET.SubElement(props, "property", name=key, value=str(s.get(key)))
    ET.SubElement(props, "property", name="reason", value=str(s.get("reason") or ""))
    for m in d.metrics:
        case = ET.SubElement(suite, "testcase", classname=f"rollout.{s['endpoint']}", name=str(m.get("name")))
        row = dict(zip(METRIC_HEAD, _metric_row(m), strict=True))
        text = "; ".join(f"{k}: {v}" for k, v in row.items())
        verdict = m.get("verdict")
        if verdict == "fail":
            ET.SubElement(
                case, "failure", message=f"{m.get('name')} worse than the baseline beyond its margin"
            ).text = text
        elif verdict in ("inconclusive", "no_data"):
            ET.SubElement(case, "skipped", message=f"{m.get('name')}: {verdict}").text = text
        else:
            ET.SubElement(case, "system-out").text = text
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def html_page(d: ReportData) -> str:
    from mlserve.report.plots import histogram_png, metric_png, weights_png

    s = d.summary
    esc = html.escape
    images = [("Traffic weights over time", weights_png(d))]
    names = [m.get("name") for m in d.metrics]
    for name in names:
        png = metric_png(d, str(name))
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
                st["step"],
                st["phase"],
                ", ".join(f"{v} {p}%" for v, p in st["weights"].items()),
                st["looks"],
                st["held"],
                ", ".join(f"{v} {n:,}" for v, n in st["requests"].items()),
                st["verdict"],
            )
        )
        + "</tr>"
        for st in d.steps
    )
    figs = "".join(
        f'<figure><img alt="{esc(title)}" src="data:image/png;base64,{png}"/><figcaption>{esc(title)}</figcaption></figure>'
        for title, png in images
    )
    colour = {"promoted": "#1a7f37", "rolled_back": "#cf222e", "halted": "#9a6700"}.get(s["status"], "#57606a")
    forced = " (forced with --force)" if s["forced"] else ""
    events = "".join(
        f"<li>{esc(str(e.get('at')))} {esc(str(e.get('event')))} "
        + esc(" ".join(f"{k}={e[k]}" for k in ("step", "look", "verdict", "action", "status") if k in e))
        + "</li>"
        for e in d.timeline
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
    pairs = ""
    if s.get("shadow_samples"):
        cells = "".join(
            "<tr>"
            + "".join(f"<td>{esc(str(x.get(k, '')))}</td>" for k in ("prompt", "routed_text", "shadow_text"))
            + f"<td>{'yes' if x.get('agree') else 'no'}</td>"
            + f"<td>{'-' if x.get('similarity') is None else format(x['similarity'], '.3f')}</td></tr>"
            for x in s["shadow_samples"]
        )
        pairs = (
            f"<h2>Example generations (shadow)</h2><table><tr><th>prompt</th><th>{esc(s['baseline'])}</th>"
            f"<th>{esc(s['candidate'])}</th><th>agree</th><th>similarity</th></tr>{cells}</table>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rollout {esc(s["run_id"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#24292f}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #d0d7de;padding:4px 8px;text-align:left}}
.verdict{{font-size:1.4em;font-weight:bold;color:{colour}}}figure{{margin:1.5em 0}}img{{max-width:100%}}</style>
</head><body>
<h1>Rollout of {esc(s["endpoint"])}: {esc(s["baseline"])} &rarr; {esc(s["candidate"])}</h1>
<p class="verdict">{esc(STATUS_WORDS.get(s["status"], s["status"]))}{esc(forced)}</p>
<p>{esc(s["reason"] or "")}</p>
<p>run {esc(s["run_id"])}, strategy {esc(s["strategy"])}, environment {esc(s["env"])}; {s["looks"]} looks,
{s["held_looks"]} held; alpha {esc(str(s["alpha"]))}</p>
<h2>Metrics</h2><table><tr>{head}</tr>{rows}</table>
<h2>Steps</h2><table><tr><th>step</th><th>phase</th><th>weights</th><th>looks</th><th>held</th><th>requests</th>
<th>verdict</th></tr>{step_rows}</table>
<h2>Plots</h2>{figs}
{pairs}
{load}
<h2>Events</h2><ul>{events}</ul>
</body></html>
"""
