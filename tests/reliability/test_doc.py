"""docs/reliability.md is what docs/reliability.json renders to (``make docs`` writes both)."""

from __future__ import annotations

from tests.reliability.report import DOC_PATH, JSON_PATH, load, render


def test_reliability_page_is_current() -> None:
    records = load(JSON_PATH)
    assert records, f"{JSON_PATH} holds no records"
    assert DOC_PATH.read_text(encoding="utf-8") == render(records), "regenerate with: make docs"
