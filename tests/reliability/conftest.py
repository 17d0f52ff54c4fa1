"""The reliability suite records every fault and hostile input it tries.

A test takes the ``reliability`` fixture and calls ``reliability.case(...)`` with what was
expected and what it measured. At the end of the session the records of the tests that ran
are merged into ``docs/reliability.json`` and ``docs/reliability.md`` is regenerated from it,
so the document always says what the suite last measured (set
``MLSERVE_RELIABILITY_DOC=0`` to leave the docs alone).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability.report import Record, load, merge, save, write_doc

_RECORDS: list[Record] = []
_RAN: set[str] = set()
_OUTCOMES: dict[str, str] = {}


class Recorder:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid
        self.records: list[Record] = []

    def case(
        self,
        area: str,
        case: str,
        *,
        expected: str,
        measured: str,
        sent: int | None = None,
        failed: int | None = None,
        lost: int | None = None,
        decisions: str = "",
        **extra: Any,
    ) -> Record:
        rec = Record(self.nodeid, area, case, expected, measured, sent, failed, lost, decisions, "passed", extra)
        self.records.append(rec)
        return rec


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Iterator[Recorder]:
    rec = Recorder(request.node.nodeid)
    yield rec
    _RECORDS.extend(rec.records)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not item.nodeid.startswith("tests/reliability/"):
        return
    _RAN.add(item.nodeid)
    if report.failed:
        _OUTCOMES[item.nodeid] = f"FAILED ({report.when})"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _RAN or os.environ.get("MLSERVE_RELIABILITY_DOC", "1") == "0":
        return
    for rec in _RECORDS:
        rec.outcome = _OUTCOMES.get(rec.test, "passed")
    # a failing test that recorded nothing still shows up
    recorded = {r.test for r in _RECORDS}
    for nodeid, outcome in _OUTCOMES.items():
        if nodeid not in recorded:
            _RECORDS.append(Record(nodeid, "other", nodeid.split("::")[-1], "", "no record", outcome=outcome))
    records = merge(load(), _RECORDS, _RAN)
    save(records)
    write_doc(records)


@pytest.fixture
def fast_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the click command tree once: typer rebuilds it on every in-process call (about
    0.2 s, most of a fuzz example's cost); the tree itself holds no per-call state."""
    import typer.main

    original = typer.main.get_command
    built: dict[int, Any] = {}

    def cached(app: Any) -> Any:
        if id(app) not in built:
            built[id(app)] = original(app)
        return built[id(app)]

    monkeypatch.setattr(typer.main, "get_command", cached)
