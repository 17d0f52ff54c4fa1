"""CLI start-up time: `mlserve --help` and `mlserve validate` against bare Python.

CI pipelines start mlserve many times; start-up must stay close to the interpreter's
own. Target: `mlserve --help` within 0.25 s of `python -c pass` (median of 20 runs).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 0.25


def median_wall(argv: list[str], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    py = sys.executable
    cases = [
        ("python -c pass", [py, "-c", "pass"]),
        ("mlserve --help", [py, "-m", "mlserve", "--help"]),
        ("mlserve validate (example project)", [py, "-m", "mlserve", "--project-dir", str(REPO), "validate"]),
    ]
    # one warm-up each: the first run pays for the disk cache and .pyc files
    for _, argv in cases:
        subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    results = [(name, *median_wall(argv, args.runs)) for name, argv in cases]
    bare = results[0][1]
    rows = ["| command | median (s) | min (s) | over bare Python (s) |", "|---|---:|---:|---:|"]
    for name, med, best in results:
        rows.append(f"| `{name}` | {med:.3f} | {best:.3f} | {med - bare:+.3f} |")
    help_over = results[1][1] - bare
    verdict = "met" if help_over <= TARGET_S else "NOT met"
    body = "\n".join(rows) + (
        f"\n\n{args.runs} runs each after one warm-up. Target: `mlserve --help` within {TARGET_S} s of bare "
        f"Python: **{verdict}** ({help_over:.3f} s). `--help` and `validate` import neither scipy, numpy, "
        "pandas, locust nor matplotlib (checked by `tests/cli/test_init_validate.py`)."
    )
    print(body)
    if not args.no_write:
        write_section("cli_startup", "CLI start-up", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
