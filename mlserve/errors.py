"""One exception root for everything mlserve reports to a user.

The CLI catches ``MlserveError`` once, prints ``str(err)`` without a traceback and
exits with ``err.exit_code`` (an :class:`~mlserve.status.ExitStatus`). Core code raises the
subclass for its concern.
"""

from __future__ import annotations

from mlserve.status import ExitStatus


class MlserveError(Exception):
    """A failure the user can act on. Never carries a traceback to the terminal."""

    exit_code: int = ExitStatus.ERROR
    kind: str = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"type": self.kind, "message": self.message, "exit_code": int(self.exit_code)}
        if self.hint:
            out["hint"] = self.hint
        return out


class UsageError(MlserveError):
    """Bad command-line arguments or input files given on the command line."""

    exit_code = ExitStatus.USAGE
    kind = "usage"


class ManifestError(MlserveError):
    """The manifest (or a policy file) is invalid; carries every problem found."""

    exit_code = ExitStatus.USAGE
    kind = "manifest"

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems), hint=hint)

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out["problems"] = self.problems
        return out


class ToolError(MlserveError):
    """An external program (terraform, kubectl, prometheus) failed or is missing."""

    kind = "tool"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        stdout: str = "",
        stderr: str = "",
        returncode: int | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.stdout = stdout
        self.stderr = stderr
        self.returncode = returncode


class TargetError(MlserveError):
    """A deployment target could not do what was asked (port in use, process died)."""

    kind = "target"


class StateError(MlserveError):
    """Persisted state is locked, missing or inconsistent."""

    kind = "state"
