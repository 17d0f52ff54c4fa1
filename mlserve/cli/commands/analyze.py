from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mlserve.cli.output import JsonFlag, get_state

if TYPE_CHECKING:
    from mlserve.capacity import GpuPlan


def register(app: typer.Typer) -> None:
    @app.command("analyze")
    def analyze(
        ctx: typer.Context,
        files: Annotated[
            list[Path] | None,
            typer.Argument(
                help="Snapshot files or directories (their *.json, sorted) for --replay.", show_default=False
            ),
        ] = None,
        replay: Annotated[
            bool, typer.Option("--replay", help="Re-run the decision on saved mlserve.snapshot/v1 files.")
        ] = False,
        plan: Annotated[
            bool, typer.Option("--plan", help="Power planning: traffic and time each step needs to decide.")
        ] = False,
        policy_file: Annotated[
            Path | None,
            typer.Option(
                "--policy", help="A TOML policy (the keys of a rollout table); default: the endpoint's, else built-in."
            ),
        ] = None,
        final: Annotated[
            bool, typer.Option("--final", help="Treat the last look as the deadline: apply on_inconclusive.")
        ] = False,
        endpoint: Annotated[
            str | None, typer.Option("--endpoint", help="--plan: take the policy from this endpoint of mlserve.toml.")
        ] = None,
        rps: Annotated[
            float | None, typer.Option("--rps", help="--plan: total requests per second to the endpoint.")
        ] = None,
        error_rate: Annotated[
            float | None, typer.Option("--error-rate", help="--plan: the baseline's error rate (e.g. 0.002).")
        ] = None,
        regression: Annotated[
            str, typer.Option("--regression", help="--plan: error-rate regression to detect, as a ratio ('2x').")
        ] = "2x",
        latency_shift: Annotated[
            str, typer.Option("--latency-shift", help="--plan: latency regression to detect ('25%' slower).")
        ] = "25%",
        latency_sigma: Annotated[
            float | None,
            typer.Option("--latency-sigma", help="--plan: spread of log latency (log-normal sigma); default 0.5."),
        ] = None,
        steps: Annotated[
            str | None, typer.Option("--steps", help="--plan: candidate weights in percent, e.g. '5,10,25,50'.")
        ] = None,
        power: Annotated[float, typer.Option("--power", help="--plan: probability of catching the regression.")] = 0.8,
        from_snapshot: Annotated[
            Path | None,
            typer.Option("--snapshot", help="--plan: take the baseline error rate, latency spread and rate from it."),
        ] = None,
        env: Annotated[
            str | None,
            typer.Option("--env", "-e", help="--plan: the environment whose GPU node group bounds the steps."),
        ] = None,
        json_out: JsonFlag = False,
    ) -> None:
        """Decide promote / rollback / continue from metric snapshots, with always-valid statistics.

        Exit codes for one snapshot: 0 promote, 3 rollback, 4 continue or halt. For several
        snapshots (or a directory): 0 when all were analysed, 2 if any could not be read.
        """
        state = get_state(ctx, json_out)
        from mlserve.errors import UsageError

        if replay == plan:
            raise UsageError("choose one of --replay FILE... or --plan", hint="mlserve analyze --replay snap.json")
        if replay:
            if not files:
                raise UsageError("--replay needs at least one snapshot file or directory")
            _replay(state, files, policy_file, final)
        else:
            if files:
                raise UsageError("--plan takes no snapshot arguments (use --snapshot FILE)")
            _plan(
                state,
                policy_file=policy_file,
                endpoint=endpoint,
                rps=rps,
                error_rate=error_rate,
                regression=regression,
                latency_shift=latency_shift,
                latency_sigma=latency_sigma,
                steps=steps,
                power=power,
                snapshot=from_snapshot,
                env=env,
            )


# ---------------------------------------------------------------------------
# --replay
# ---------------------------------------------------------------------------


def _expand(files: list[Path]) -> tuple[list[Path], bool]:
    """Files in the given order; a directory becomes its *.json files, sorted."""
    from mlserve.errors import UsageError

    out: list[Path] = []
    many = len(files) > 1
    for f in files:
        if f.is_dir():
            many = True
            found = sorted(p for p in f.glob("*.json") if p.is_file())
            if not found:
                raise UsageError(f"{f}: directory holds no *.json snapshot files")
            out.extend(found)
        else:
            out.append(f)
    return out, many


def _replay(state: Any, files: list[Path], policy_file: Path | None, final: bool) -> None:
    from mlserve.manifest.analysis import Policies
    from mlserve.stats.engine import analyze
    from mlserve.stats.replay import replay_files
    from mlserve.stats.snapshot import read_snapshot
    from mlserve.status import ExitStatus

    policies = Policies(state.project_dir, policy_file)
    paths, many = _expand(files)
    if not many:
        snap = read_snapshot(paths[0])
        spec, source = policies.spec_for(snap.endpoint)
        verdict = analyze(snap, spec, final=final, policy_source=source)
        result = verdict.to_dict()
        state.emit(result, lambda con: _show_one(con, result), exit_code=verdict.exit_code)
        return
    results = replay_files(paths, policies.spec_for, final=final)
    failed = any(r["verdict"] is None for r in results)
    state.emit(results, lambda con: _show_many(con, results), exit_code=ExitStatus.USAGE if failed else ExitStatus.OK)


_VERDICT_STYLE = {"promote": "bold green", "rollback": "bold red", "halt": "bold yellow", "continue": "bold cyan"}
_METRIC_STYLE = {"pass": "green", "fail": "red", "inconclusive": "cyan", "no_data": "yellow"}


def _show_one(con: Console, r: dict[str, Any]) -> None:
    from rich.markup import escape

    from mlserve import format as fmt

    ref = r.get("control") or r["baseline"]
    against = (
        f"{escape(ref)} (control, a fresh {escape(r['baseline'])})"
        if r.get("control")
        else (f"{escape(r['baseline'])} (baseline)")
    )
    head = (
        f"[bold]{escape(r['endpoint'])}[/]: {against} vs "
        f"{escape(r['candidate'])} (candidate), look {r['reported_look']} of {r['looks']}, "
        f"{r['requests'].get(r['candidate'], 0):,} / {r['requests'].get(ref, 0):,} requests"
        + (f"; test unit {r['test_unit']}" if r.get("test_unit") else "")
    )
    con.print(head)
    for a in r.get("arms") or ():
        if a["role"] == "primary":
            rate = "-" if a["error_rate"] is None else f"{100 * a['error_rate']:.3g}%"
            con.print(
                f"primary health ({escape(a['name'])}, watched, not compared): {a['requests']:,} requests, "
                f"errors {rate}, p50 {fmt.value(a['p50'], 's')}, p99 {fmt.value(a['p99'], 's')}"
            )
    con.print(f"snapshot {escape(r['snapshot'])}; policy: {escape(r['policy'])} (alpha {r['alpha']:g})")
    level = round((1 - r["alpha"]) * 100)
    table = Table(title_justify="left")
    for col in ("metric", "verdict", "baseline", "candidate", "change", f"{level}% CS", "margin", "p worse", "p ok"):
        table.add_column(col, justify="right" if col not in ("metric", "verdict") else "left")
    for m in r["metrics"]:
        name = m["name"] + (" *" if m["critical"] else "")
        table.add_row(
            escape(name),
            f"[{_METRIC_STYLE[m['verdict']]}]{m['verdict'].replace('_', ' ')}[/]",
            fmt.value(m["baseline"], m["unit"]),
            fmt.value(m["candidate"], m["unit"]),
            fmt.change(m["estimate"]),
            fmt.interval(m["ci"]),
            m["margin"],
            fmt.p_value(m["p_value_holm"]),
            fmt.p_value(m["p_value_pass"]),
        )
    con.print(table)
    notes = [f"{m['name']}: {m['note']}" for m in r["metrics"] if m["note"]]
    for n in notes:
        con.print(f"[dim]{escape(n)}[/]")
    srm = r["srm"]
    if srm["p_value"] is None:
        con.print("traffic split: not checked (shadow traffic)")
    else:
        share, want = fmt.percent(srm["candidate_share"]), fmt.percent(srm["expected_share"])
        ok = "[green]ok[/]" if srm["ok"] else "[red]MISMATCH[/]"
        con.print(f"traffic split: {ok} (candidate got {share}, configured {want}; p = {fmt.p_value(srm['p_value'])})")
        if srm.get("arms"):
            con.print(
                "every arm: "
                + ", ".join(
                    f"{escape(n)} {fmt.percent(x['share'])} of {fmt.percent(x['expected'])}"
                    for n, x in srm["arms"].items()
                )
            )
    con.print(
        "[dim]* critical metric. CS: always-valid confidence sequence of the relative change. "
        "p worse: evidence the candidate is worse beyond the margin (Holm-adjusted); "
        "p ok: evidence it is within the margin.[/]"
    )
    style = _VERDICT_STYLE[r["verdict"]]
    at = f" (decided at look {r['decided_at_look']})" if r["decided_at_look"] else ""
    con.print(f"[{style}]{r['verdict'].upper()}[/]{at}: {escape(r['reason'])}")


def _show_many(con: Console, results: list[dict[str, Any]]) -> None:
    from collections import Counter

    from rich.markup import escape

    table = Table(title=f"{len(results)} snapshots", title_justify="left")
    for col in ("snapshot", "verdict", "look", "reason"):
        table.add_column(col)
    for r in results:
        v = r["verdict"]
        table.add_row(
            escape(r["snapshot"]),
            f"[{_VERDICT_STYLE.get(v or '', 'bold red')}]{v or 'error'}[/]",
            str(r["decided_at_look"] or "-"),
            escape(r["reason"]),
        )
    con.print(table)
    counts = Counter(r["verdict"] or "error" for r in results)
    con.print(", ".join(f"{k}: {n}" for k, n in sorted(counts.items())))


# ---------------------------------------------------------------------------
# --plan
# ---------------------------------------------------------------------------


def _ratio(text: str, option: str) -> float:
    from mlserve.errors import UsageError

    t = text.strip().lower().rstrip("x")
    try:
        value = float(t)
    except ValueError:
        raise UsageError(f"{option}: expected a ratio like '2x' or 1.5 (got {text!r})") from None
    if not math.isfinite(value) or value <= 1.0 or value > 1000:
        raise UsageError(f"{option}: the regression must be a ratio above 1 (got {text!r})")
    return value


def _percent(text: str, option: str) -> float:
    from mlserve.errors import UsageError

    t = text.strip()
    try:
        value = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        raise UsageError(f"{option}: expected a percentage like '25%' (got {text!r})") from None
    if not math.isfinite(value) or value <= 0 or value > 100:
        raise UsageError(f"{option}: must be a positive percentage (got {text!r})")
    return value


def _steps(text: str) -> list[float]:
    from mlserve.errors import UsageError

    out = []
    for part in text.split(","):
        try:
            v = float(part.strip().rstrip("%"))
        except ValueError:
            raise UsageError(f"--steps: expected weights in percent like '5,10,25' (got {text!r})") from None
        if not 0 < v < 100:
            raise UsageError(f"--steps: each weight must be between 0 and 100, exclusive (got {part.strip()!r})")
        out.append(v)
    return out


def _plan(
    state: Any,
    *,
    policy_file: Path | None,
    endpoint: str | None,
    rps: float | None,
    error_rate: float | None,
    regression: str,
    latency_shift: str,
    latency_sigma: float | None,
    steps: str | None,
    power: float,
    snapshot: Path | None,
    env: str | None = None,
) -> None:
    from mlserve.errors import UsageError
    from mlserve.manifest.analysis import Policies, analysis_spec
    from mlserve.stats.power import plan as make_plan

    policies = Policies(state.project_dir, policy_file)
    snap = None
    if snapshot is not None:
        from mlserve.stats.snapshot import read_snapshot

        snap = read_snapshot(snapshot)
    if endpoint is not None and policies.fixed is None and policies.manifest is None:
        raise UsageError(
            f"--endpoint {endpoint!r}: there is no {policies.manifest_path}",
            hint="run it in a project (or -C DIR), or pass --policy FILE",
        )
    manifest = policies.manifest
    if endpoint is not None and policies.fixed is None and manifest is not None and endpoint not in manifest.endpoints:
        raise UsageError(f"--endpoint {endpoint!r}: no such endpoint in {policies.manifest_path}")
    if env is not None and (policies.manifest is None or env not in policies.manifest.environments):
        defined = ", ".join(policies.manifest.environments) if policies.manifest is not None else "no environments"
        raise UsageError(f"--env {env!r}: {policies.manifest_path} defines {defined}")
    policy, source = policies.for_endpoint(endpoint or (snap.endpoint if snap else None))
    inferred: list[str] = []
    if snap is not None:
        from mlserve.stats.power import rates_from_snapshot

        found = rates_from_snapshot(snap)
        if error_rate is None and found.error_rate is not None:
            error_rate = found.error_rate
            inferred.append(f"baseline error rate {error_rate:.4g} from {snapshot}")
        if latency_sigma is None and found.latency_sigma is not None:
            latency_sigma = found.latency_sigma
            inferred.append(f"latency spread sigma {latency_sigma:.3g} from {snapshot}")
        if rps is None and found.rps is not None:
            rps = found.rps
            inferred.append(f"{rps:.4g} requests/s from {snapshot}'s timestamps")
    if rps is None:
        raise UsageError("--plan needs --rps (or a --snapshot with timestamps to take it from)")
    if not (math.isfinite(rps) and rps > 0):
        raise UsageError(f"--rps must be a positive number (got {rps})")
    if error_rate is None:
        error_rate = 0.01
        inferred.append("baseline error rate 1% (default; pass --error-rate)")
    if not 0 < error_rate < 1:
        raise UsageError(f"--error-rate must be between 0 and 1, exclusive (got {error_rate})")
    if latency_sigma is None:
        latency_sigma = 0.5
    if not 0.01 <= latency_sigma <= 5:
        raise UsageError(f"--latency-sigma must be between 0.01 and 5 (got {latency_sigma})")
    if not 0.5 <= power < 1:
        raise UsageError(f"--power must be at least 0.5 and below 1 (got {power})")
    override = _steps(steps) if steps else None
    result = make_plan(
        analysis_spec(policy),
        steps=override or policy.steps,
        rps=rps,
        error_rate=error_rate,
        error_ratio=_ratio(regression, "--regression"),
        latency_shift=_percent(latency_shift, "--latency-shift"),
        latency_sigma=latency_sigma,
        power=power,
        control=policy.control == "replica" and policy.strategy in ("canary", "shadow+canary"),
    )
    import dataclasses

    data = dataclasses.asdict(result)
    data["policy"] = source
    data["assumptions"] = inferred + list(result.assumptions)
    gpus = _gpus(policies, policy, endpoint or (snap.endpoint if snap else None), env, override)
    if gpus is not None:
        data["gpus"] = gpus.to_dict()
    state.emit(data, lambda con: _show_plan(con, data, gpus))


def _gpus(
    policies: Any, policy: Any, endpoint: str | None, env: str | None, weights: list[float] | None
) -> GpuPlan | None:
    """GPUs per step of a GPU endpoint of mlserve.toml: the rollout ``rollout start`` would
    plan (every arm, a control included), from the same core function."""
    from mlserve.rollout.plans import planned_gpus

    manifest = policies.manifest
    if endpoint is None or manifest is None or endpoint not in manifest.endpoints:
        return None
    if manifest.endpoints[endpoint].resources.gpu <= 0:
        return None
    names = [n for n, e in manifest.environments.items() if endpoint in manifest.endpoints_in(n)]
    env_name = env or next(
        (n for n in names if manifest.environments[n].cluster == "aws-eks"), names[0] if names else ""
    )
    steps = None if weights is None else [max(1, round(w)) for w in weights]  # --steps in place of the policy's
    return planned_gpus(manifest, env_name, endpoint, policy, steps=steps)


def _dur(seconds: float | None) -> str:
    from mlserve.manifest.units import format_duration

    if seconds is None or not math.isfinite(seconds):
        return "-"
    return format_duration(seconds)


def _n(value: int | None) -> str:
    return f"{value:,}" if value is not None else "-"


def _show_plan(con: Console, d: dict[str, Any], gpus: GpuPlan | None = None) -> None:
    from rich.markup import escape

    con.print(
        f"Power plan at {d['rps']:g} requests/s, alpha {d['alpha']:g}, power {d['power']:g}: "
        f"catch a {d['error_ratio']:g}x error-rate regression or a {d['latency_shift'] * 100:g}% latency regression"
    )
    con.print(f"policy: {escape(d['policy'])}")
    table = Table(title_justify="left")
    for col in (
        "step",
        "metric",
        "margin null",
        "events",
        "candidate req.",
        "total req.",
        "time to catch",
        "fixed-horizon total req.",
        "time to promote (harmless)",
    ):
        table.add_column(col, justify="left" if col in ("step", "metric") else "right")
    for s in d["steps"]:
        for i, m in enumerate(s["metrics"]):
            table.add_row(
                f"{s['weight']:g}%" if i == 0 else "",
                escape(m["metric"]),
                f"{m['null_ratio']:.3g}x",
                _n(m["events"]),
                _n(m["candidate_requests"]),
                _n(m["total_requests"]),
                _dur(m["seconds"]),
                _n(m["fixed_horizon_requests"]),
                _dur(m["promote_seconds"]),
            )
        table.add_row(
            "",
            "[bold]step[/]",
            "",
            "",
            "",
            "",
            f"[bold]{_dur(s['seconds'])}[/]",
            "",
            f"[bold]{_dur(s['promote_seconds'])}[/]",
            end_section=True,
        )
    con.print(table)
    for m in {m["note"] for s in d["steps"] for m in s["metrics"] if m["note"]}:
        con.print(f"[dim]{escape(m)}[/]")
    for a in d["assumptions"]:
        con.print(f"[dim]- {escape(a)}[/]")
    if gpus is not None:
        cap = "no cap" if gpus.cap is None else f"cap +{gpus.cap}"
        room = f", node group {gpus.node_group} holds {gpus.node_capacity}" if gpus.node_group else ""
        con.print(f"GPUs per step ({gpus.gpu_per_replica} per replica, stable {gpus.stable}, {cap}{room}):")
        for s in gpus.steps:  # the very lines rollout start prints
            con.print(f"  step {s.step} ({escape(s.phase)}): {escape(gpus.line(s))}")
        for p in gpus.problems:
            con.print(f"[yellow]over budget: {escape(p)}[/]")
