"""Rollout reports: Markdown, self-contained HTML (matplotlib plots inlined), JSON and JUnit XML.

Every report is a pure function of a run's state and event log, so it can be rebuilt at
any time from ``experiments/ENDPOINT/RUN_ID/``.
"""

from __future__ import annotations

from mlserve.report.build import ReportData, build_data, write_reports

__all__ = ["ReportData", "build_data", "write_reports"]
