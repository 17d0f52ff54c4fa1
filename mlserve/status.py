"""Exit statuses, rollout statuses and verdicts: each carries its exit code, mapped here once.

The exit codes are the contract CI pipelines read (documented in the README):

====  ============  ===================================================
code  ExitStatus    meaning
====  ============  ===================================================
0     OK            success; a rollout or an analysis promoted
1     ERROR         an error the user can act on
2     USAGE         bad arguments or an invalid manifest / input file
3     REJECTED      the candidate was rolled back
4     INCONCLUSIVE  no decision (yet): continue, halt, hold, still running
130   INTERRUPTED   Ctrl-C
====  ============  ===================================================

``Status`` is where a rollout run stands; ``Verdict`` is what one analysis of its evidence
says. Both are ``StrEnum`` so that they are written to JSON as their plain names.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    REJECTED = 3
    INCONCLUSIVE = 4
    INTERRUPTED = 130


class Status(StrEnum):
    """Where a rollout run stands."""

    RUNNING = "running"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    HALTED = "halted"
    INCONCLUSIVE = "inconclusive"
    ABORTED = "aborted"

    @property
    def exit_code(self) -> ExitStatus:
        return _STATUS_EXIT[self]

    @property
    def terminal(self) -> bool:
        """The run has ended: nothing moves its traffic any more."""
        return self not in (Status.RUNNING, Status.PAUSED)

    @property
    def baseline_restored(self) -> bool:
        """The run ended with all traffic back on the baseline (rolled back, halted or aborted)."""
        return self in (Status.ROLLED_BACK, Status.HALTED, Status.ABORTED)


class Verdict(StrEnum):
    """What one analysis says. ``held``: the look could not be taken (no data is never a pass)."""

    PROMOTE = "promote"
    ROLLBACK = "rollback"
    HALT = "halt"
    CONTINUE = "continue"
    HELD = "held"

    @property
    def exit_code(self) -> ExitStatus:
        return _VERDICT_EXIT[self]

    @property
    def terminal(self) -> bool:
        """A decisive verdict: a replay stops at the first look that reaches one."""
        return self in (Verdict.PROMOTE, Verdict.ROLLBACK, Verdict.HALT)


_STATUS_EXIT = {
    Status.RUNNING: ExitStatus.INCONCLUSIVE,
    Status.PAUSED: ExitStatus.INCONCLUSIVE,
    Status.PROMOTED: ExitStatus.OK,
    Status.ROLLED_BACK: ExitStatus.REJECTED,
    Status.HALTED: ExitStatus.INCONCLUSIVE,
    Status.INCONCLUSIVE: ExitStatus.INCONCLUSIVE,
    Status.ABORTED: ExitStatus.INCONCLUSIVE,
}
_VERDICT_EXIT = {
    Verdict.PROMOTE: ExitStatus.OK,
    Verdict.ROLLBACK: ExitStatus.REJECTED,
    Verdict.HALT: ExitStatus.INCONCLUSIVE,
    Verdict.CONTINUE: ExitStatus.INCONCLUSIVE,
    Verdict.HELD: ExitStatus.INCONCLUSIVE,
}
