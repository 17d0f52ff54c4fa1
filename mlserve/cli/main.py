"""The ``mlserve`` entry point: global options, command registration, and the one place
where errors become messages and exit codes.

Command modules live in ``mlserve/cli/commands/``; each exposes ``register(app)``.
They import their core modules inside the command body so that ``mlserve --help``
stays fast (no scipy, pandas, locust or matplotlib at start-up).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer

try:  # typer >= 0.29 vendors its own click; older versions use the click package
    from typer._click import ClickException
except ImportError:  # pragma: no cover
    from click import ClickException  # type: ignore[assignment]

from mlserve import __version__
from mlserve.cli.output import State, get_state
from mlserve.errors import MlserveError
from mlserve.status import ExitStatus

# Order here is the order in `mlserve --help`.
COMMAND_MODULES = [
    "mlserve.cli.commands.init",
    "mlserve.cli.commands.validate",
    "mlserve.cli.commands.schema",
    "mlserve.cli.commands.deploy",
    "mlserve.cli.commands.status",
    "mlserve.cli.commands.down",
    "mlserve.cli.commands.logs",
    "mlserve.cli.commands.loadtest",
    "mlserve.cli.commands.batch",
    "mlserve.cli.commands.compare",
    "mlserve.cli.commands.render",
    "mlserve.cli.commands.plan",
    "mlserve.cli.commands.destroy",
    "mlserve.cli.commands.analyze",
    "mlserve.cli.commands.rollout",
    "mlserve.cli.commands.promote",
    "mlserve.cli.commands.rollback",
    "mlserve.cli.commands.profile",
    "mlserve.cli.commands.monitor",
    "mlserve.cli.commands.dashboard",
]

app = typer.Typer(
    name="mlserve",
    help="Declarative ML inference endpoints: render, deploy, and roll out new model versions on statistical evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"mlserve {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    project_dir: Annotated[
        Path,
        typer.Option(
            "--project-dir", "-C", help="Project directory (holds mlserve.toml).", envvar="MLSERVE_PROJECT_DIR"
        ),
    ] = Path("."),
    json_out: Annotated[
        bool, typer.Option("--json", help="Machine-readable output (versioned JSON envelope).")
    ] = False,
    traceback: Annotated[bool, typer.Option("--traceback", help="Show Python tracebacks on errors.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain output (NO_COLOR is honoured too).")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    state = get_state(ctx)
    state.project_dir = project_dir
    state.json = state.json or json_out
    state.traceback = traceback
    state.no_color = no_color


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def _wants(flag: str, argv: list[str]) -> bool:
    return flag in argv


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of exiting (tests call this in-process)."""
    args = list(sys.argv[1:] if argv is None else argv)
    state = State(json=_wants("--json", args), traceback=_wants("--traceback", args))
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=args, prog_name="mlserve", standalone_mode=False, obj=state)
    except MlserveError as err:
        if state.traceback:
            raise
        state.emit_error(err)
        return err.exit_code
    except typer.Exit as ex:
        return int(ex.exit_code)
    except ClickException as ex:
        if state.json:
            state.emit_error(_as_usage(ex))
        else:
            ex.show(file=sys.stderr)
        return ExitStatus.USAGE if ex.exit_code == 2 else ex.exit_code
    except (KeyboardInterrupt, typer.Abort):
        sys.stderr.write("\ninterrupted\n")
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        return ExitStatus.ERROR
    except OSError as exc:  # the machine, not a bug: a read-only or full disk, a permission
        if state.traceback:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        state.emit_error(
            MlserveError(
                f"cannot write or read{where}: {exc.strerror or exc}",
                hint="check that the disk is writable and has space, then run the command again",
            )
        )
        return ExitStatus.ERROR
    except Exception as exc:  # a bug: say so plainly, keep the traceback behind a flag
        if state.traceback:
            raise
        bug = MlserveError(
            f"internal error: {type(exc).__name__}: {exc}",
            hint="this is a bug in mlserve; re-run with --traceback and report it",
        )
        state.emit_error(bug)
        return ExitStatus.ERROR
    return int(rv) if isinstance(rv, int) else 0


def _as_usage(ex: ClickException) -> MlserveError:
    from mlserve.errors import UsageError

    return UsageError(ex.format_message())


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
