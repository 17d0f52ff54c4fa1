"""``summary.json`` (format ``mlserve.loadtest/v1``) and the SLO gate over it.

Pure functions and plain data: the locust worker fills the numbers in, the CLI and the
rollout report read them back. Latencies are in milliseconds as locust measures them
(locust rounds above 100 ms to 2 significant digits); SLO limits are in seconds as in
``mlserve.toml``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve.errors import StateError
from mlserve.loadtest.layout import SUMMARY_FILE
from mlserve.status import ExitStatus

SUMMARY_FORMAT = "mlserve.loadtest/v1"


@dataclass(frozen=True)
class SloBreach:
    slo: str  # "error_rate" | "p99_latency"
    limit: float
    observed: float
    message: str


@dataclass(frozen=True)
class SloVerdict:
    """``passed`` is None when no request completed: no data is never a pass."""

    p99_latency: float | None
    error_rate: float | None
    passed: bool | None
    breaches: tuple[SloBreach, ...] = ()

    @property
    def exit_code(self) -> int:
        if self.passed is None:
            return ExitStatus.INCONCLUSIVE
        return ExitStatus.OK if self.passed else ExitStatus.REJECTED

    def to_dict(self) -> dict[str, Any]:
        return {
            "p99_latency_seconds": self.p99_latency,
            "error_rate": self.error_rate,
            "passed": self.passed,
            "breaches": [
                {"slo": b.slo, "limit": b.limit, "observed": b.observed, "message": b.message} for b in self.breaches
            ],
        }


def check_slo(
    requests: int,
    failures: int,
    p99_ms: float | None,
    *,
    p99_latency: float | None,
    error_rate: float | None,
) -> SloVerdict:
    """Compare a run with the endpoint's ``[slo]``; a limit that is not declared is not checked."""
    if requests <= 0:
        return SloVerdict(p99_latency, error_rate, None)
    breaches = []
    ratio = failures / requests
    if error_rate is not None and ratio > error_rate:
        breaches.append(
            SloBreach(
                "error_rate",
                error_rate,
                ratio,
                f"error_rate: {ratio:.2%} of {requests} requests failed, above the SLO of {error_rate:.2%}",
            )
        )
    if p99_latency is not None and p99_ms is not None and p99_ms / 1000.0 > p99_latency:
        breaches.append(
            SloBreach(
                "p99_latency",
                p99_latency,
                p99_ms / 1000.0,
                f"p99_latency: p99 was {p99_ms:g} ms, above the SLO of {p99_latency * 1000:g} ms",
            )
        )
    return SloVerdict(p99_latency, error_rate, not breaches, tuple(breaches))


@dataclass(frozen=True)
class LoadResult:
    """What a finished load test hands back: the summary document and where its files are."""

    out_dir: Path
    summary: dict[str, Any]
    slo: SloVerdict
    files: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return self.slo.exit_code

    @property
    def requests(self) -> int:
        return int(self.summary["requests"])

    @property
    def variants(self) -> dict[str, dict[str, Any]]:
        return dict(self.summary["variants"])

    @property
    def html_report(self) -> Path:
        return self.out_dir / self.summary["files"]["html"]

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary, "out_dir": str(self.out_dir), "exit_code": self.exit_code}


def verdict_from_dict(data: dict[str, Any]) -> SloVerdict:
    return SloVerdict(
        p99_latency=data.get("p99_latency_seconds"),
        error_rate=data.get("error_rate"),
        passed=data.get("passed"),
        breaches=tuple(
            SloBreach(b["slo"], float(b["limit"]), float(b["observed"]), str(b["message"]))
            for b in data.get("breaches", [])
        ),
    )


def read_summary(out_dir: Path) -> LoadResult:
    """A run's ``summary.json``, as written by the worker."""
    path = Path(out_dir) / SUMMARY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateError(f"{path}: the load test wrote no summary") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise StateError(f"{path}: cannot read the load-test summary: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != SUMMARY_FORMAT:
        raise StateError(f"{path}: not a {SUMMARY_FORMAT} document")
    return LoadResult(
        out_dir=Path(out_dir),
        summary=data,
        slo=verdict_from_dict(data.get("slo", {})),
        files=dict(data.get("files", {})),
    )


def summary_markdown(result: LoadResult, link_from: Path | None = None) -> str:
    """A Markdown section for reports (the rollout report embeds it): per-variant table,
    SLO verdict, and a link to locust's HTML report, relative to ``link_from`` when given."""
    import os

    s = result.summary
    html = result.html_report
    link = os.path.relpath(html, link_from) if link_from is not None else str(html)

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:g}"

    lines = [
        f"Load test on `{s['endpoint']}` at {s['target_url']}: {s['users']} users, "
        f"{s['duration_seconds']:.1f} s from {s['started_at']} to {s['ended_at']} ({s['stop_reason']}).",
        "",
        "| variant | requests | failures | req/s | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [*s["variants"].items(), ("all", s)]
    for name, v in rows:
        lat = v["latency_ms"]
        ratio = v["failure_ratio"]
        fails = f"{v['failures']} ({ratio:.2%})" if ratio is not None else str(v["failures"])
        lines.append(
            f"| {name} | {v['requests']} | {fails} | {v['requests_per_second']:.1f} | "
            f"{ms(lat['p50'])} | {ms(lat['p95'])} | {ms(lat['p99'])} |"
        )
    verdict = result.slo
    lines.append("")
    if verdict.passed is None:
        lines.append("SLO: no request completed, nothing measured.")
    elif verdict.passed:
        lines.append("SLO: met.")
    else:
        lines.extend(f"SLO broken: {b.message}" for b in verdict.breaches)
    lines.append("")
    lines.append(f"[locust HTML report]({link})")
    return "\n".join(lines) + "\n"
