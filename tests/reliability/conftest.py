"""The reliability suite records every fault and hostile input it tries.

A test takes the ``reliability`` fixture and calls ``reliability.case(...)`` with what was
expected and what it measured. At the end of the session the records of the tests that ran
are kept in ``build/reliability-records.json`` (untracked); ``make docs`` merges them into
``docs/reliability.json`` and regenerates ``docs/reliability.md``, so running the tests never
rewrites a tracked file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability.report import Record, record_session

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
    if not _RAN:
        return
    for rec in _RECORDS:
        rec.outcome = _OUTCOMES.get(rec.test, "passed")
    # a failing test that recorded nothing still shows up
    recorded = {r.test for r in _RECORDS}
    for nodeid, outcome in _OUTCOMES.items():
        if nodeid not in recorded:
            _RECORDS.append(Record(nodeid, "other", nodeid.split("::")[-1], "", "no record", outcome=outcome))
    record_session(_RECORDS, _RAN)


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
