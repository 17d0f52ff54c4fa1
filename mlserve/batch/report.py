"""The reports of ``mlserve compare``: report.json, report.html and junit.xml.

Styled like the rollout reports (:mod:`mlserve.report.build`): one self-contained HTML
page, and a JUnit suite with one test case per gate check (or per metric when no gate
was asked for), so a CI system shows which threshold was missed.
"""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from mlserve import format as fmt
from mlserve.fsutil import atomic_write_text


def latency_ms(ms: Any) -> str:
    """A request latency kept in milliseconds (a summary's ``latency_ms``), as ``72.4ms``."""
    return fmt.value(ms / 1000, "s") if isinstance(ms, int | float) and not isinstance(ms, bool) else "-"


def _f(x: Any) -> str:
    return fmt.fixed(x) if isinstance(x, float) else "-" if x is None else str(x)


def short(v: Any) -> str:
    """A cell of the disagreement sample: floats to 4 significant digits, lists too."""
    if isinstance(v, float):
        return fmt.value(v)
    if isinstance(v, list):
        return "[" + ", ".join(short(x) for x in v) + "]"
    return str(v)


def metric_cells(m: dict[str, Any]) -> list[str]:
    """baseline, candidate, difference, interval and p of one metric (terminal and reports)."""
    d = m["difference"]
    return [
        fmt.fixed(m["baseline"]),
        fmt.fixed(m["candidate"]),
        fmt.fixed(d["estimate"], sign=True),
        fmt.interval((d["low"], d["high"]), "difference"),
        fmt.p_value(m["p_value"]),
    ]


def metric_rows(r: dict[str, Any]) -> list[list[str]]:
    rows = []
    for m in r["metrics"]:
        if "unavailable" in m:
            rows.append([m["metric"], "-", "-", "-", "-", "-", m["unavailable"]])
            continue
        rows.append([m["metric"], *metric_cells(m), m["method"]])
    return rows


METRIC_HEAD = ["metric", "baseline", "candidate", "difference", "interval", "p", "method"]


def junit(r: dict[str, Any]) -> str:
    gate = r["gate"]
    suite = ET.Element(
        "testsuite",
        name=f"mlserve compare {r['endpoint']} {r['baseline']}->{r['candidate']}",
        tests=str(len(gate) or len(r["metrics"]) + 1),
        failures=str(sum(1 for g in gate if not g["passed"])),
        errors="0",
        skipped="0",
    )
    props = ET.SubElement(suite, "properties")
    for key in ("endpoint", "baseline", "candidate", "env", "input", "task", "rows", "compared", "passed"):
        ET.SubElement(props, "property", name=key, value=str(r.get(key)))
    if gate:
        for g in gate:
            case = ET.SubElement(suite, "testcase", classname=f"compare.{r['endpoint']}", name=g["name"])
            if g["passed"]:
                ET.SubElement(case, "system-out").text = g["detail"]
            else:
                ET.SubElement(case, "failure", message=f"{g['name']}: threshold missed").text = g["detail"]
    else:
        a = r["agreement"]
        case = ET.SubElement(suite, "testcase", classname=f"compare.{r['endpoint']}", name="agreement")
        ET.SubElement(
            case, "system-out"
        ).text = f"{fmt.share(a['agreement'], 4)} of {fmt.count(a['rows'])} rows agree ({a['rule']})"
        for row in metric_rows(r):
            case = ET.SubElement(suite, "testcase", classname=f"compare.{r['endpoint']}", name=row[0])
            ET.SubElement(case, "system-out").text = "; ".join(
                f"{k}: {v}" for k, v in zip(METRIC_HEAD, row, strict=True)
            )
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def html_page(r: dict[str, Any]) -> str:
    esc = html.escape
    a = r["agreement"]
    passed = r["passed"]
    colour = "#1a7f37" if passed else "#cf222e"
    verdict = ("PASSED" if passed else "FAILED") if r["gate"] else "NO GATE"
    gate_rows = "".join(
        f"<tr><td>{esc(g['name'])}</td><td>{'pass' if g['passed'] else 'FAIL'}</td>"
        f"<td>{esc(_f(g['observed']))}</td><td>{esc(_f(g['threshold']))}</td><td>{esc(g['detail'])}</td></tr>"
        for g in r["gate"]
    )
    head = "".join(f"<th>{esc(h)}</th>" for h in METRIC_HEAD)
    mrows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in metric_rows(r))
    lat = "".join(
        f"<tr><td>{esc(v)}</td><td>{fmt.rate(x['rows_per_second'])}</td><td>{fmt.count(x['requests'])}</td>"
        + "".join(f"<td>{esc(latency_ms((x['latency_ms'] or {}).get(q)))}</td>" for q in ("p50", "p95", "p99"))
        + f"<td>{fmt.count(x['failed_rows'])}</td></tr>"
        for v, x in r["latency"].items()
    )
    keys: list[str] = []
    for d in r["disagreements"]:
        keys += [k for k in d if k not in keys]
    dis_head = "".join(f"<th>{esc(k)}</th>" for k in keys)
    dis_rows = "".join(
        "<tr>" + "".join(f"<td>{esc(short(d.get(k)))}</td>" for k in keys) + "</tr>" for d in r["disagreements"]
    )
    notes = "".join(f"<li>{esc(n)}</li>" for n in r["notes"])
    interval = a["interval"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Compare {esc(r["endpoint"])} {esc(r["baseline"])} vs {esc(r["candidate"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#24292f}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #d0d7de;padding:4px 8px;text-align:left}}
.verdict{{font-size:1.4em;font-weight:bold;color:{colour}}}</style>
</head><body>
<h1>Offline comparison of {esc(r["endpoint"])}: {esc(r["baseline"])} vs {esc(r["candidate"])}</h1>
<p class="verdict">{esc(verdict)}</p>
<p>{fmt.count(r["compared"])} of {fmt.count(r["rows"])} rows of {esc(r["input"])} scored by both versions ({esc(r["task"])},
output {esc(r["prediction"])}); environment {esc(r["env"])}; intervals at {fmt.share(r["confidence"], 0)}.</p>
<h2>Agreement</h2>
<p>{fmt.share(a["agreement"], 4)} agree ({fmt.count(a["agree"])} rows; {esc(a["rule"])}), interval [{fmt.share(interval["low"], 4)}, {fmt.share(interval["high"], 4)}];
{fmt.count(a["disagree"])} rows disagree.</p>
<h2>Gate</h2><table><tr><th>check</th><th>result</th><th>observed</th><th>threshold</th><th>detail</th></tr>{gate_rows}</table>
<h2>Metrics (candidate - baseline)</h2><table><tr>{head}</tr>{mrows}</table>
<h2>Latency per version</h2><table><tr><th>version</th><th>rows/s</th><th>requests</th><th>p50</th><th>p95</th>
<th>p99</th><th>failed rows</th></tr>{lat}</table>
<h2>Where they disagree (a sample)</h2><table><tr>{dis_head}</tr>{dis_rows}</table>
<ul>{notes}</ul>
</body></html>
"""


def write_reports(result: Any, out_dir: Path) -> dict[str, str]:
    r = result.to_dict()
    files = {"json": "report.json", "html": "report.html", "junit": "junit.xml"}
    r["files"] = files
    atomic_write_text(out_dir / files["json"], json.dumps(r, indent=2, sort_keys=True, allow_nan=False) + "\n")
    atomic_write_text(out_dir / files["html"], html_page(r))
    atomic_write_text(out_dir / files["junit"], junit(r))
    return {k: str(out_dir / v) for k, v in files.items()}
