"""Rollout reports open in a real browser (headless Chromium): the page loads, every plot
decodes, and the screenshot is not blank. The reports come from the state machine run on a
simulated target (seeded traffic), through the same report code a live rollout uses."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from mlserve.project import load_project
from mlserve.rollout import service
from mlserve.tools import run, which
from tests.support.policy import FAST, set_policy
from tests.support.sim import Clock, FakeRouter, Sim, opener

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=5000",
]

# Reports are self-contained; this probe (added to a copy) records what the browser decoded.
PROBE = (
    "<script>window.addEventListener('load', () => {"
    "document.body.setAttribute('data-images', Array.from(document.images)"
    ".map(i => i.complete && i.naturalWidth > 0 ? 'ok' : 'broken').join(','));"
    "});</script>"
)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return which(name)
    return which("chromium")  # raises the ToolError with its install hint


def browse(html: Path, tmp: Path, *extra: str) -> str:
    out = run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", *extra, html.as_uri()],
        timeout=120,
    )
    return out.stdout


def rollout_report(project: Path, monkeypatch: pytest.MonkeyPatch, **sim: Any) -> Path:
    s = Sim(**sim)
    set_policy(project, **FAST)
    clock, drv = Clock(), FakeRouter()
    service.start(load_project(project), "fraud", "v2", clock=clock)
    res = service.run_to_end(load_project(project), "fraud", opener=opener(s, drv), clock=clock, sleep=clock.sleep)
    return Path(res.run_dir) / "report.html"


@pytest.mark.parametrize(
    ("sim", "verdict"),
    [
        pytest.param({}, "promote", id="promoted"),
        pytest.param({"errors": {"v1": 0.005, "v2": 0.05}}, "roll", id="rolled-back"),
    ],
)
def test_rollout_report_renders_in_chromium(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: dict[str, Any], verdict: str
) -> None:
    report = rollout_report(project, monkeypatch, **sim)
    text = report.read_text()
    assert "<img" in text and "http://" not in text.replace("http://www.w3.org", "")  # self-contained
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", PROBE + "</body>"))
    dom = browse(probe, tmp_path, "--dump-dom")
    images = re.search(r'data-images="([^"]*)"', dom)
    assert images, dom[:500]
    states = images.group(1).split(",")
    assert len(states) >= 3 and set(states) == {"ok"}, states  # weights, metrics, histograms
    assert verdict in dom.lower()

    shot = tmp_path / "report.png"
    browse(report, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400")
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1200
    assert float(pixels[..., :3].std()) > 0.05  # plots and tables, not a blank page
