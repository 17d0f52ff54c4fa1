"""Exit codes are mapped once: statuses and verdicts carry theirs (README: 0 ok / promoted,
1 error, 2 usage, 3 rolled back, 4 inconclusive or running, 130 interrupted)."""

from __future__ import annotations

import json

from mlserve.errors import ManifestError, MlserveError, StateError, UsageError
from mlserve.status import ExitStatus, Status, Verdict


def test_exit_codes_of_the_readme() -> None:
    assert [int(e) for e in ExitStatus] == [0, 1, 2, 3, 4, 130]
    assert MlserveError("x").exit_code == StateError("x").exit_code == ExitStatus.ERROR
    assert UsageError("x").exit_code == ManifestError(["x"]).exit_code == ExitStatus.USAGE


def test_statuses_and_verdicts_carry_their_exit_codes() -> None:
    assert {s: int(s.exit_code) for s in Status} == {
        "running": 4, "paused": 4, "promoted": 0, "rolled_back": 3, "halted": 4, "inconclusive": 4, "aborted": 4,
    }  # fmt: skip
    assert {v: int(v.exit_code) for v in Verdict} == {"promote": 0, "rollback": 3, "halt": 4, "continue": 4, "held": 4}
    assert {s for s in Status if s.terminal} == {"promoted", "rolled_back", "halted", "inconclusive", "aborted"}
    assert {v for v in Verdict if v.terminal} == {"promote", "rollback", "halt"}
    assert {s for s in Status if s.baseline_restored} == {"rolled_back", "halted", "aborted"}


def test_they_are_written_as_their_names() -> None:
    assert json.dumps({"status": Status.ROLLED_BACK, "verdict": Verdict.HELD}) == (
        '{"status": "rolled_back", "verdict": "held"}'
    )
    assert json.loads(json.dumps(UsageError("x").to_dict()))["exit_code"] == 2
