"""promtool, Prometheus' own checker: ``check rules`` (syntax and PromQL of every rule) and
``test rules`` (unit tests of alerting rules against synthetic series). Debian's
``prometheus`` package ships it beside the server."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlserve.tools import Completed, run, which

HINT = "install Debian's prometheus package (apt-get install prometheus), which ships promtool"


def promtool() -> str:
    from mlserve.errors import ToolError

    try:
        return which("promtool", env_override="MLSERVE_PROMTOOL_BIN")
    except ToolError as err:
        raise ToolError(f"promtool is needed to check alerting rules: {err.message}", hint=HINT) from None


def check_rules(files: Sequence[Path], timeout: float = 60.0) -> Completed:
    """Exit non-zero (a ToolError carrying promtool's message) when any rule is invalid."""
    return run([promtool(), "check", "rules", *map(str, files)], timeout=timeout)


def run_rule_tests(files: Sequence[Path], timeout: float = 120.0) -> Completed:
    """Run promtool unit-test files (each names its rule files, relative to itself)."""
    return run([promtool(), "test", "rules", *map(str, files)], timeout=timeout)
