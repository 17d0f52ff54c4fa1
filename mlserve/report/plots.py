"""matplotlib figures as base64 PNGs for the self-contained HTML report (Agg backend,
imported only when a report is written, so the CLI starts fast)."""

from __future__ import annotations

import base64
import io
import itertools
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlserve.report.data import ReportData


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def weights_png(d: ReportData) -> str:
    plt = _plt()
    s = d.summary
    fig, ax = plt.subplots(figsize=(8, 2.8))
    points = d.weights
    last = max([p["t"] for p in points] + [h["t"] for h in d.history] + [1.0])
    end = last * 1.05 + 1.0  # show the final weights, not just the instant they were set
    for variant in (s.baseline, s.candidate):
        xs: list[float] = []
        ys: list[float] = []
        for p in points:
            xs.append(p["t"])
            ys.append(float(p["weights"].get(variant, 0)))
        xs.append(end)
        ys.append(ys[-1] if ys else 0.0)
        ax.step(xs, ys, where="post", label=variant)
    ax.set_xlabel("seconds since the rollout started")
    ax.set_ylabel("traffic %")
    ax.set_ylim(-5, 105)
    ax.legend(loc="center right")
    ax.grid(alpha=0.3)
    return _png(fig)


def metric_png(d: ReportData, name: str) -> str | None:
    xs: list[float] = []
    est: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for h in d.history:
        for m in h.get("metrics", []):
            if m.get("name") != name:
                continue
            e = m.get("estimate")
            ci = m.get("ci") or [None, None]
            if not isinstance(e, int | float) or not math.isfinite(e):
                continue
            xs.append(h["t"])
            est.append(e * 100 if name != "agreement" else e)
            scale = 100 if name != "agreement" else 1
            lo.append(ci[0] * scale if isinstance(ci[0], int | float) else math.nan)
            hi.append(ci[1] * scale if isinstance(ci[1], int | float) else math.nan)
    if not xs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.plot(xs, est, marker="o", ms=3, label="estimate")
    ax.fill_between(xs, lo, hi, alpha=0.25, label="confidence interval")
    ax.axhline(0 if name != "agreement" else 1, color="grey", lw=0.8)
    for p in d.weights[1:]:
        if p.get("action") == "enter_step":
            ax.axvline(p["t"], color="grey", ls=":", lw=0.8)  # each step is its own experiment
    ax.set_xlabel("seconds since the rollout started")
    ax.set_ylabel("candidate vs baseline, %" if name != "agreement" else "agreement rate")
    ax.set_title(name)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


def histogram_png(d: ReportData) -> str | None:
    if not d.histograms:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3))
    width = 0.4
    labels: list[str] = []
    for i, (variant, h) in enumerate(sorted(d.histograms.items())):
        counts = [int(c) for c in h["counts"]]
        total = counts[-1] or 1
        per_bucket = [counts[0]] + [b - a for a, b in itertools.pairwise(counts)]
        labels = [("+Inf" if b == "+Inf" else f"{float(b) * 1000:g}ms") for b in h["le"]]
        xs = [j + (i - 0.5) * width for j in range(len(per_bucket))]
        ax.bar(xs, [c / total * 100 for c in per_bucket], width=width, label=f"{variant} ({total:,} requests)")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, fontsize=8)
    ax.set_xlabel("latency bucket (upper bound)")
    ax.set_ylabel("% of requests")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)
