"""Turns the cases the reliability suite recorded into ``docs/reliability.md``.

The suite (see ``conftest.py``) records one case per fault or hostile input it tried, in
``build/reliability-records.json`` (untracked: running the tests never rewrites a tracked
file). ``make docs`` (``python scripts/gen_docs.py``) merges the latest records into
``docs/reliability.json`` and renders this page from it; ``tests/reliability/test_doc.py``
checks that the page is what ``docs/reliability.json`` renders to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
JSON_PATH = REPO / "docs" / "reliability.json"
DOC_PATH = REPO / "docs" / "reliability.md"
RECORDS_PATH = REPO / "build" / "reliability-records.json"  # what the latest test sessions measured

AREAS = [
    ("faults", "Faults on the local target (real processes)"),
    ("changes", "Changes and crashes without a dropped request (real processes)"),
    ("fuzz", "Fuzzing the readers (hypothesis, through the CLI)"),
    ("gateway", "Hostile clients at the gateway"),
    ("render", "Template injection into rendered stacks"),
    ("paths", "Model URIs and paths"),
    ("secrets", "Secrets"),
    ("checkov", "Static scan of the rendered stacks (checkov)"),
    ("disk", "Read-only disk"),
    ("locks", "Concurrent commands and locks"),
]


@dataclass
class Record:
    """One fault or hostile input, what should happen and what the run measured."""

    test: str
    area: str
    case: str
    expected: str
    measured: str
    sent: int | None = None
    failed: int | None = None
    lost: int | None = None
    decisions: str = ""
    outcome: str = "passed"
    extra: dict[str, Any] = field(default_factory=dict)


def load(path: Path = JSON_PATH) -> list[Record]:
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [Record(**r) for r in data.get("records", [])]


def record_session(records: list[Record], ran: set[str], path: Path = RECORDS_PATH) -> None:
    """Keep what a test session measured for ``make docs``: its records replace those of the
    tests it ran, earlier sessions' records of other tests are kept."""
    pending = load(path)
    previously_ran = set(json.loads(path.read_text(encoding="utf-8")).get("ran", [])) if path.is_file() else set()
    merged = merge(pending, records, ran)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "format": "mlserve.reliability/v1",
        "ran": sorted(previously_ran | ran),
        "records": [asdict(r) for r in merged],
    }
    path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def update_docs(records_path: Path = RECORDS_PATH, json_path: Path = JSON_PATH, doc_path: Path = DOC_PATH) -> int:
    """``make docs``: merge the measured records into docs/reliability.json, render the page.
    Returns how many records came from the test sessions."""
    measured = load(records_path)
    ran = set(json.loads(records_path.read_text(encoding="utf-8")).get("ran", [])) if records_path.is_file() else set()
    records = merge(load(json_path), measured, ran)
    save(records, json_path)
    write_doc(records, doc_path)
    return len(measured)


def _still_exists(test: str) -> bool:
    """A record whose test function was deleted or renamed is dropped at the next merge."""
    file, _, name = test.partition("::")
    func = re.sub(r"\[.*$", "", name.split("::")[-1])
    src = REPO / file
    return src.is_file() and f"def {func}(" in src.read_text(encoding="utf-8")


def merge(old: Iterable[Record], new: Iterable[Record], ran: set[str]) -> list[Record]:
    """Records of tests that ran this session replace theirs; the others are kept."""
    kept = [r for r in old if r.test not in ran and _still_exists(r.test)]
    out = kept + list(new)
    order = {a: i for i, (a, _) in enumerate(AREAS)}
    out.sort(key=lambda r: (order.get(r.area, len(order)), r.test, r.case))
    return out


def save(records: list[Record], path: Path = JSON_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"format": "mlserve.reliability/v1", "records": [asdict(r) for r in records]}
    path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render(records: list[Record]) -> str:
    lines = [
        "# Reliability and security: what was tried and what happened",
        "",
        "Measured by the test suite (`tests/reliability/`) and written by `make docs`",
        "(`tests/reliability/report.py`, from the latest sessions' records); do not edit by hand.",
        "Each row is one fault or hostile input: what mlserve must do, and what the run measured.",
        "`sent`, `failed` and `lost` count requests (or inputs, for the fuzzers); `failed` is what",
        "a user saw fail, `lost` is a request that got no answer at all. `outcome` is the test's",
        "result in the run that wrote the row.",
        "",
    ]
    lines += [
        "How the faults are made: processes are killed with `SIGKILL` or paused with `SIGSTOP`;",
        "a broken Prometheus is a loopback HTTP server answering 503 on its port; a read-only",
        "disk is a read-only bind mount (`unshare -m` + `mount --bind` + `mount -o remount,ro,bind`)",
        "seen only by the mlserve command under test. The tests run as root, where `chmod` does",
        "not stop writes; `chattr +i` works on this ext4 disk but only freezes directory entries,",
        "so the bind mount is the faithful read-only disk.",
        "",
    ]
    totals = {"rows": len(records), "failed_tests": sum(r.outcome != "passed" for r in records)}
    lines.append(f"{totals['rows']} cases, {totals['failed_tests']} not passing.")
    lines.append("")
    by_area: dict[str, list[Record]] = {}
    for r in records:
        by_area.setdefault(r.area, []).append(r)
    titles = dict(AREAS)
    for area in [a for a, _ in AREAS] + sorted(set(by_area) - set(titles)):
        rows = by_area.get(area)
        if not rows:
            continue
        lines += [f"## {titles.get(area, area)}", ""]
        lines.append("| case | expected | measured | sent | failed | lost | decisions | outcome |")
        lines.append("| --- | --- | --- | ---: | ---: | ---: | --- | --- |")
        for r in rows:
            cells = [r.case, r.expected, r.measured, r.sent, r.failed, r.lost, r.decisions, r.outcome]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
        tests = sorted({r.test for r in rows})
        lines.append("Tests: " + ", ".join(f"`{t}`" for t in tests))
        lines.append("")
    return "\n".join(lines)


def write_doc(records: list[Record], path: Path = DOC_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(records), encoding="utf-8")


if __name__ == "__main__":
    n = update_docs()
    print(f"wrote {DOC_PATH} ({n} records measured since the last `make docs`)")
