"""``mlserve rollout start|step|run|status|pause|resume|abort``: move a candidate into production
on evidence. Exit codes: 0 promoted, 3 rolled back, 4 inconclusive / halted / still running."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table

from mlserve.cli.output import JsonFlag, State, get_state
from mlserve.status import Status

if TYPE_CHECKING:
    from mlserve.rollout.record import Run
    from mlserve.rollout.service import RolloutResult
    from mlserve.stats.engine import Result

EndpointArg = Annotated[str, typer.Argument(help="Endpoint name (from mlserve.toml).")]
DurationOpt = Annotated[str | None, typer.Option(help="A duration like '30s', '5m' or '1h'.")]

STATUS_COLOURS = {
    Status.PROMOTED: "green",
    Status.ROLLED_BACK: "red",
    Status.HALTED: "yellow",
    Status.INCONCLUSIVE: "yellow",
}


def _duration(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    from mlserve.errors import UsageError
    from mlserve.manifest.units import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"{option} must be positive (got {value!r})")
    return seconds


def _project(state: State) -> Any:
    from mlserve.project import load_project

    return load_project(state.project_dir)


def register(app: typer.Typer) -> None:
    ro = typer.Typer(
        name="rollout",
        help="Shadow, canary and A/B rollouts gated by always-valid statistics on Prometheus metrics.",
        no_args_is_help=True,
    )
    app.add_typer(ro, name="rollout")

    @ro.command("start")
    def start(
        ctx: typer.Context,
        endpoint: EndpointArg,
        candidate: Annotated[str, typer.Option("--candidate", "-c", help="The version to roll out.")],
        strategy: Annotated[
            str | None, typer.Option(help="shadow | canary | ab | shadow+canary (default: the policy's).")
        ] = None,
        env: Annotated[str | None, typer.Option("--env", "-e", help="Environment (default: the first local).")] = None,
        interval: DurationOpt = None,
        max_duration: Annotated[str | None, typer.Option("--max-duration", help="Deadline of the rollout.")] = None,
        json_out: JsonFlag = False,
    ) -> None:
        """Create a rollout run (experiments/ENDPOINT/RUN_ID/); traffic moves on the first step."""
        state = get_state(ctx, json_out)
        from mlserve.rollout import service

        res = service.start(
            _project(state),
            endpoint,
            candidate,
            env=env,
            strategy=strategy,
            interval=_duration(interval, "--interval"),
            max_duration=_duration(max_duration, "--max-duration"),
        )
        state.emit(res.to_dict(), lambda c: show(c, res))

    @ro.command("step")
    def step(ctx: typer.Context, endpoint: EndpointArg, json_out: JsonFlag = False) -> None:
        """One look now: query Prometheus, decide, act (move the weight, promote or roll back)."""
        state = get_state(ctx, json_out)
        from mlserve.rollout import service

        res = service.step(_project(state), endpoint)
        state.emit(res.to_dict(), lambda c: show(c, res), exit_code=res.exit_code)

    def _run(
        ctx: typer.Context,
        endpoint: str,
        max_duration: str | None,
        interval: str | None,
        load: bool,
        users: int,
        json_out: bool,
        resume: bool,
    ) -> None:
        state = get_state(ctx, json_out)
        from mlserve.rollout import service

        progress = _Progress(state)
        try:
            res = service.run_to_end(
                _project(state),
                endpoint,
                max_duration=_duration(max_duration, "--max-duration"),
                interval=_duration(interval, "--interval"),
                resume=resume,
                on_progress=progress.update,
                load_users=users if load else None,
            )
        finally:
            progress.close()
        state.emit(res.to_dict(), lambda c: show(c, res), exit_code=res.exit_code)

    @ro.command("run")
    def run(
        ctx: typer.Context,
        endpoint: EndpointArg,
        max_duration: Annotated[
            str | None, typer.Option("--max-duration", help="Bound this run; then on_inconclusive applies.")
        ] = None,
        interval: Annotated[str | None, typer.Option("--interval", help="Time between looks.")] = None,
        load: Annotated[
            bool, typer.Option("--load", help="Keep a bounded locust load on the local gateway during the run.")
        ] = False,
        users: Annotated[int, typer.Option("--users", help="Simulated users of --load.")] = 10,
        json_out: JsonFlag = False,
    ) -> None:
        """Block until promoted (exit 0), rolled back (3), or halted / inconclusive at the deadline (4)."""
        _run(ctx, endpoint, max_duration, interval, load, users, json_out, resume=False)

    @ro.command("resume")
    def resume(
        ctx: typer.Context,
        endpoint: EndpointArg,
        max_duration: Annotated[str | None, typer.Option("--max-duration", help="Bound this run.")] = None,
        interval: Annotated[str | None, typer.Option("--interval", help="Time between looks.")] = None,
        load: Annotated[bool, typer.Option("--load", help="Keep a bounded load on the local gateway.")] = False,
        users: Annotated[int, typer.Option("--users", help="Simulated users of --load.")] = 10,
        json_out: JsonFlag = False,
    ) -> None:
        """Continue a paused or interrupted rollout from its persisted state, like `run`."""
        _run(ctx, endpoint, max_duration, interval, load, users, json_out, resume=True)

    @ro.command("status")
    def status(ctx: typer.Context, endpoint: EndpointArg, json_out: JsonFlag = False) -> None:
        """Where the rollout stands: step, weights, requests, per-metric estimates, verdict so far."""
        state = get_state(ctx, json_out)
        from mlserve.rollout import service

        res = service.status(_project(state), endpoint)
        state.emit(res.to_dict(), lambda c: show(c, res))

    @ro.command("pause")
    def pause(ctx: typer.Context, endpoint: EndpointArg, json_out: JsonFlag = False) -> None:
        """Stop looking and keep the current split (a running `rollout run` stops at its next tick)."""
        state = get_state(ctx, json_out)
        from mlserve.rollout import service

        res = service.pause(_project(state), endpoint)
        state.emit(res.to_dict(), lambda c: show(c, res))

    @ro.command("abort")
    def abort(ctx: typer.Context, endpoint: EndpointArg, json_out: JsonFlag = False) -> None:
        """End the rollout and send all traffic back to the baseline (recorded as aborted)."""
        state = get_state(ctx, json_out)
        from mlserve.rollout import service

        res = service.abort(_project(state), endpoint)
        state.emit(res.to_dict(), lambda c: show(c, res))


# ---------------------------------------------------------------------------
# Display
# ---------------------------------------------------------------------------


def _fmt_metric(m: Result) -> tuple[str, str, str, str]:
    from mlserve import format as fmt
    from mlserve.stats.agreement import AgreementResult

    if isinstance(m, AgreementResult):
        value = f"{fmt.share(m.estimate)} agree" if m.estimate is not None else "-"
        return m.name, value, fmt.interval(m.ci, m.kind), m.verdict
    return m.name, fmt.change(m.estimate), fmt.interval(m.ci), m.verdict


def _lines(r: Run) -> list[str]:
    """The plain progress of a run (also used for non-TTY output)."""
    from mlserve import format as fmt

    st = r.current
    head = f"step {r.step + 1}/{len(r.plans)} [{fmt.weights(r.traffic.weights)}] {r.status}"
    if st:
        head += f", look {len(st.looks)}"
        if st.looks:
            req = ", ".join(f"{v} {x.requests:,} req" for v, x in st.looks[-1].look.variants.items())
            head += f" ({req})"
    head += f": {r.decision.verdict if r.decision else 'waiting'}"
    out = [head]
    if st is not None and st.traffic.control:
        out.append(
            f"  compared with: control arm {st.traffic.control} (a fresh {r.baseline}, the candidate's share); "
            f"primary {r.baseline} watched for health"
        )
    elif st is not None and st.phase == "canary":
        out.append(f"  compared with: the primary {r.baseline} (control = {r.policy.control!r})")
    for m in r.decision.metrics if r.decision else ():
        name, est, ci, verdict = _fmt_metric(m)
        out.append(f"  {name}: {est} {ci} {verdict}")
    for a in r.decision.arms if r.decision else ():
        if a.role == "primary":
            rate = "-" if a.error_rate is None else f"{100 * a.error_rate:.3g}%"
            out.append(
                f"  primary health ({a.name}): {a.requests:,} req, errors {rate}, "
                f"p50 {fmt.value(a.p50, 's')}, p99 {fmt.value(a.p99, 's')}"
            )
    if r.control is not None:
        out.append(f"  control arm {r.control.name} ({r.control.version}): {r.control.state}")
    if r.last_hold:
        out.append(f"  held: {r.last_hold.reason}")
    return out


class _Progress:
    """rich Live on a terminal, one plain line per look otherwise."""

    def __init__(self, state: State) -> None:
        self.con: Console = state.out
        self.tty = self.con.is_terminal and not state.json
        self.live: Any = None
        self.seen = -1

    def update(self, r: Run) -> None:
        key = r.look_count + r.total_held + 10_000 * len(r.transitions)
        if self.tty:
            from rich.live import Live

            if self.live is None:
                self.live = Live(_table(r), console=self.con, refresh_per_second=4, transient=False)
                self.live.start()
            else:
                self.live.update(_table(r))
            return
        if key == self.seen:
            return
        self.seen = key
        for line in _lines(r):
            self.con.print(escape(line), highlight=False)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _table(r: Run) -> Any:
    lines = _lines(r)
    t = Table(show_header=True, header_style="bold", title=escape(lines[0]), title_justify="left")
    for col in ("metric", "estimate", "confidence interval", "verdict"):
        t.add_column(col)
    for m in r.decision.metrics if r.decision else ():
        t.add_row(*(escape(x) for x in _fmt_metric(m)))
    reason = r.decision.reason if r.decision else ""
    return Group(t, escape(reason)) if reason else t


def show(con: Console, res: RolloutResult) -> None:
    r = res.record
    assert r is not None
    colour = STATUS_COLOURS.get(r.status, "cyan")
    con.print(
        f"rollout [bold]{escape(r.run_id)}[/]: {escape(r.endpoint)} "
        f"{escape(r.baseline)} -> {escape(r.candidate)} ({escape(r.strategy)}, env {escape(r.env)})"
    )
    con.print(f"status: [{colour}]{escape(r.status)}[/]")
    for line in _lines(r):
        con.print(escape(line))
    if r.outcome and r.outcome.reason:
        con.print(escape(r.outcome.reason))
    elif r.decision and r.decision.reason:
        con.print(escape(r.decision.reason))
    if res.message:
        con.print(escape(res.message))
    if res.gpus is not None:
        con.print(f"GPUs per step ({res.gpus.gpu_per_replica} per replica):")
        for s in res.gpus.steps:
            con.print(f"  step {s.step} ({escape(s.phase)}): {escape(res.gpus.line(s))}")
    for kind, path in r.reports.items():
        con.print(f"report ({kind}): {escape(path)}")
    con.print(f"run directory: {escape(res.run_dir)}")
