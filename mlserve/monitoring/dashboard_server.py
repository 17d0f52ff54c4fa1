"""``mlserve dashboard``: the endpoint dashboards of :mod:`mlserve.monitoring.dashboards`, live
from the local Prometheus, on a page served from 127.0.0.1.

One self-contained page (HTML, CSS and a small canvas chart in plain JavaScript: nothing is
fetched from outside loopback). The page asks this server for each panel's series
(``/api/panel/ENDPOINT/ID?seconds=N``) and the rollout-step annotations; the server runs the
panel's own fixed queries against Prometheus (``query_range``), so it is not an open proxy.
Each panel element carries ``data-points`` (points drawn) once loaded, which the browser test
reads.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mlserve.errors import TargetError
from mlserve.monitoring.dashboards import Panel, annotation_expr, panels
from mlserve.monitoring.prom_api import api_get
from mlserve.monitoring.rules import EndpointRules

LOCAL_RATE = "30s"  # rate window of the local page (the local Prometheus scrapes every 1-2 s)
MAX_POINTS = 240


@dataclass(frozen=True)
class Board:
    endpoint: str
    rules: EndpointRules
    panels: tuple[Panel, ...]
    annotation: str


def boards_for(rules: list[EndpointRules]) -> dict[str, Board]:
    return {r.endpoint: Board(r.endpoint, r, tuple(panels(r, "local")), annotation_expr(r, "local")) for r in rules}


def query_range(prom_url: str, expr: str, start: float, end: float, step: float, timeout: float = 5.0) -> list[Any]:
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    data = api_get(prom_url, "query_range", params, timeout)
    result = data.get("result", []) if isinstance(data, dict) else []
    return result if isinstance(result, list) else []


def legend(template: str, labels: Mapping[str, str]) -> str:
    out = template
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out


def panel_series(prom_url: str, panel: Panel, seconds: float, now: float | None = None) -> list[dict[str, Any]]:
    end = time.time() if now is None else now
    start = end - seconds
    step = max(1.0, math.ceil(seconds / MAX_POINTS))
    out: list[dict[str, Any]] = []
    for target in panel.queries(LOCAL_RATE):
        for item in query_range(prom_url, target.expr, start, end, step):
            points = []
            for t, v in item.get("values", []):
                try:
                    value = float(v)
                except (TypeError, ValueError):
                    continue
                if math.isfinite(value):
                    points.append([float(t), value])
            out.append({"name": legend(target.legend, item.get("metric", {})), "points": points})
    out.sort(key=lambda s: str(s["name"]))
    return out


def annotation_marks(prom_url: str, board: Board, seconds: float) -> list[float]:
    end = time.time()
    step = max(1.0, math.ceil(seconds / MAX_POINTS))
    times: set[float] = set()
    for item in query_range(prom_url, board.annotation, end - seconds, end, step):
        for t, v in item.get("values", []):
            if v not in ("0", "NaN"):
                times.add(float(t))
    # one mark per burst of changes
    marks: list[float] = []
    for t in sorted(times):
        if not marks or t - marks[-1] > 30:
            marks.append(t)
    return marks


class _Handler(BaseHTTPRequestHandler):
    server: DashboardHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return None  # quiet: the command prints its own line

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", "no-store")
        self.send_header("x-content-type-options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, allow_nan=False).encode(), "application/json")

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        parts = [p for p in url.path.split("/") if p]
        srv = self.server
        try:
            seconds = float(query.get("seconds", [str(srv.seconds)])[0])
        except ValueError:
            seconds = srv.seconds
        seconds = min(max(seconds, 60.0), 7 * 86400.0)
        try:
            if not parts:
                self._send(200, page(srv.title, srv.boards, srv.seconds).encode(), "text/html; charset=utf-8")
            elif parts == ["api", "panels"]:
                self._json(200, {ep: [_panel_meta(p) for p in b.panels] for ep, b in srv.boards.items()})
            elif len(parts) == 4 and parts[:2] == ["api", "panel"] and parts[2] in srv.boards:
                board = srv.boards[parts[2]]
                panel = next((p for p in board.panels if str(p.id) == parts[3]), None)
                if panel is None:
                    self._json(404, {"error": "no such panel"})
                    return
                self._json(200, {"series": panel_series(srv.prom_url, panel, seconds)})
            elif len(parts) == 3 and parts[:2] == ["api", "annotations"] and parts[2] in srv.boards:
                self._json(200, {"marks": annotation_marks(srv.prom_url, srv.boards[parts[2]], seconds)})
            else:
                self._json(404, {"error": "not found"})
        except TargetError as exc:
            self._json(502, {"error": exc.message})


def _panel_meta(p: Panel) -> dict[str, Any]:
    return {"id": p.id, "key": p.key, "title": p.title, "unit": p.unit, "threshold": p.threshold}


class DashboardHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, prom_url: str, boards: dict[str, Board], title: str, seconds: float) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.prom_url = prom_url.rstrip("/")
        self.boards = boards
        self.title = title
        self.seconds = seconds

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


def start(
    port: int, prom_url: str, boards: dict[str, Board], title: str, seconds: float = 900.0
) -> DashboardHTTPServer:
    """Listening on 127.0.0.1 (port 0: a free one) and serving from a background thread."""
    try:
        server = DashboardHTTPServer(port, prom_url, boards, title, seconds)
    except OSError as exc:
        raise TargetError(f"cannot listen on 127.0.0.1:{port} for the dashboard: {exc.strerror or exc}") from None
    threading.Thread(target=server.serve_forever, name="mlserve-dashboard", daemon=True).start()
    return server


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def page(title: str, boards: Mapping[str, Board], seconds: float) -> str:
    sections = []
    for ep, board in boards.items():
        cells = "".join(
            f'<figure class="panel" id="p-{_esc(ep)}-{p.id}" data-endpoint="{_esc(ep)}" data-panel="{p.id}" '
            f'data-unit="{_esc(p.unit)}" data-threshold="{"" if p.threshold is None else p.threshold}" data-points="">'
            f'<figcaption>{_esc(p.title)}</figcaption><canvas width="560" height="220"></canvas>'
            f'<div class="legend"></div></figure>'
            for p in board.panels
        )
        sections.append(f'<section><h2>{_esc(ep)}</h2><div class="grid">{cells}</div></section>')
    config = json.dumps({"seconds": seconds, "refresh": 5000})
    return (
        PAGE.replace("__TITLE__", _esc(title)).replace("__SECTIONS__", "".join(sections)).replace("__CONFIG__", config)
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{padding:12px 20px;background:#1d2330;color:#fff;display:flex;gap:16px;align-items:baseline}
header h1{font-size:18px;margin:0}header span{opacity:.75}
section{padding:8px 20px}h2{font-size:16px;margin:8px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(580px,1fr));gap:12px}
.panel{margin:0;background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:8px}
figcaption{font-weight:600;margin-bottom:4px}canvas{width:100%;height:220px;display:block}
.legend{font-size:12px;display:flex;flex-wrap:wrap;gap:4px 12px;margin-top:4px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.empty{color:#8a93a3}
</style></head><body>
<header><h1>__TITLE__</h1><span id="status">loading...</span></header>
__SECTIONS__
<script>
const CONFIG = __CONFIG__;
const COLOURS = ["#3366cc","#dc3912","#ff9900","#109618","#990099","#0099c6","#dd4477","#66aa00","#b82e2e","#316395"];
function fmt(v, unit) {
  if (!isFinite(v)) return "-";
  if (unit === "percentunit") return (v * 100).toPrecision(3) + "%";
  if (unit === "percent") return v.toPrecision(3) + "%";
  if (unit === "s") return v < 1 ? (v * 1000).toPrecision(3) + " ms" : v.toPrecision(3) + " s";
  if (unit === "reqps") return v.toPrecision(3) + "/s";
  return Math.abs(v) >= 1000 ? v.toExponential(2) : v.toPrecision(3);
}
function draw(fig, series, marks) {
  const canvas = fig.querySelector("canvas"), ctx = canvas.getContext("2d");
  const unit = fig.dataset.unit, thr = fig.dataset.threshold === "" ? null : Number(fig.dataset.threshold);
  const W = canvas.width, H = canvas.height, L = 62, R = 10, T = 10, B = 24;
  ctx.clearRect(0, 0, W, H);
  let pts = 0, x0 = Infinity, x1 = -Infinity, y0 = 0, y1 = -Infinity;
  for (const s of series) for (const [t, v] of s.points) { pts++; x0 = Math.min(x0, t); x1 = Math.max(x1, t); y0 = Math.min(y0, v); y1 = Math.max(y1, v); }
  if (thr !== null && pts) y1 = Math.max(y1, thr * 1.1);
  fig.dataset.points = String(pts);
  fig.dataset.series = String(series.length);
  const legend = fig.querySelector(".legend");
  if (!pts) { legend.innerHTML = '<span class="empty">no data yet</span>'; return; }
  if (y1 <= y0) y1 = y0 + 1;
  if (x1 <= x0) x1 = x0 + 1;
  const X = t => L + (t - x0) / (x1 - x0) * (W - L - R), Y = v => H - B - (v - y0) / (y1 - y0) * (H - T - B);
  ctx.strokeStyle = "#e3e6eb"; ctx.fillStyle = "#5b6475"; ctx.font = "11px system-ui,sans-serif"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = y0 + (y1 - y0) * i / 4, y = Y(v);
    ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(W - R, y); ctx.stroke();
    ctx.fillText(fmt(v, unit), 2, y + 4);
  }
  for (let i = 0; i <= 3; i++) {
    const t = x0 + (x1 - x0) * i / 3, d = new Date(t * 1000);
    ctx.fillText(d.toTimeString().slice(0, 8), X(t) - 22, H - 6);
  }
  ctx.setLineDash([4, 3]); ctx.strokeStyle = "#ff9900";
  for (const m of marks) if (m >= x0 && m <= x1) { ctx.beginPath(); ctx.moveTo(X(m), T); ctx.lineTo(X(m), H - B); ctx.stroke(); }
  if (thr !== null) { ctx.strokeStyle = "#dc3912"; ctx.beginPath(); ctx.moveTo(L, Y(thr)); ctx.lineTo(W - R, Y(thr)); ctx.stroke(); }
  ctx.setLineDash([]); ctx.lineWidth = 1.6;
  legend.innerHTML = "";
  series.forEach((s, i) => {
    const c = COLOURS[i % COLOURS.length];
    ctx.strokeStyle = c; ctx.beginPath();
    s.points.forEach(([t, v], k) => k ? ctx.lineTo(X(t), Y(v)) : ctx.moveTo(X(t), Y(v)));
    if (s.points.length === 1) { ctx.fillStyle = c; ctx.fillRect(X(s.points[0][0]) - 2, Y(s.points[0][1]) - 2, 4, 4); }
    ctx.stroke();
    const last = s.points.length ? s.points[s.points.length - 1][1] : NaN;
    const item = document.createElement("span");
    item.innerHTML = '<i style="background:' + c + '"></i>';
    item.appendChild(document.createTextNode(s.name + " " + fmt(last, unit)));
    legend.appendChild(item);
  });
}
async function refresh() {
  const figs = Array.from(document.querySelectorAll(".panel"));
  const eps = [...new Set(figs.map(f => f.dataset.endpoint))];
  const marks = {};
  for (const ep of eps) {
    try { marks[ep] = (await (await fetch("/api/annotations/" + ep + "?seconds=" + CONFIG.seconds)).json()).marks || []; }
    catch (e) { marks[ep] = []; }
  }
  let failed = 0;
  await Promise.all(figs.map(async fig => {
    try {
      const r = await fetch("/api/panel/" + fig.dataset.endpoint + "/" + fig.dataset.panel + "?seconds=" + CONFIG.seconds);
      const data = await r.json();
      if (!r.ok) throw new Error(data.error);
      draw(fig, data.series, marks[fig.dataset.endpoint]);
    } catch (e) { failed++; fig.querySelector(".legend").textContent = "error: " + e.message; }
  }));
  const loaded = figs.filter(f => Number(f.dataset.points) > 0).length;
  document.getElementById("status").textContent =
    loaded + " of " + figs.length + " panels with data, updated " + new Date().toTimeString().slice(0, 8) + (failed ? ", " + failed + " failed" : "");
  document.body.dataset.loaded = String(loaded);
  document.body.dataset.panels = String(figs.length);
}
refresh(); setInterval(refresh, CONFIG.refresh);
</script></body></html>
"""
