"""Names of the files in a load-test run folder, shared by the CLI side and the worker."""

from __future__ import annotations

RUN_FORMAT = "mlserve.loadtest-run/v1"
RUN_FILE = "run.json"
LOCUSTFILE = "locustfile.py"
PAYLOADS_FILE = "payloads.jsonl"
PROGRESS_FILE = "progress.json"
SUMMARY_FILE = "summary.json"
HTML_FILE = "report.html"
LOG_FILE = "locust.log"
CSV_PREFIX = "locust"
