"""Rollout reports: Markdown, self-contained HTML (matplotlib plots inlined), JSON and JUnit XML.

Every report is a pure function of a run's record and event log, so it can be rebuilt at
any time from ``experiments/ENDPOINT/RUN_ID/``. What a report reads from a run is declared
in :mod:`mlserve.report.model`; the reports never import the rollout.
"""

from __future__ import annotations

from mlserve.report.build import build_data, report_paths, write_reports
from mlserve.report.data import ReportData

__all__ = ["ReportData", "build_data", "report_paths", "write_reports"]
