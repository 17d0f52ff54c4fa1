from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.markup import escape

from mlserve.cli.commands.plan import LayerOpt, PluginDirOpt, YesOpt
from mlserve.cli.output import JsonFlag, get_state

if TYPE_CHECKING:
    from mlserve.targets.base import LayeredTarget


def register(app: typer.Typer) -> None:
    @app.command("deploy")
    def deploy(
        ctx: typer.Context,
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Environment to deploy (default: the first local one).")
        ] = None,
        timeout: Annotated[
            float | None,
            typer.Option("--timeout", min=1, help="Seconds to wait for every process to be healthy."),
        ] = None,
        layer: LayerOpt = None,
        yes: YesOpt = False,
        plugin_dir: PluginDirOpt = None,
        json_out: JsonFlag = False,
    ) -> None:
        """Run an environment's endpoints: on target = local, model servers, gateway and Prometheus here;
        on target = kubernetes, the cluster, platform and kubernetes layers in order."""
        state = get_state(ctx, json_out)
        from mlserve.cli.commands.plan import LayerProgress, deploy_layered
        from mlserve.project import load_project
        from mlserve.rollout.service import live_rollouts
        from mlserve.targets import open_target
        from mlserve.targets.base import DeployRequest, Options

        project = load_project(state.project_dir)
        progress = LayerProgress(state.out, state.console(stderr=True))
        name = project.environment(env)
        # rollouts in progress keep their traffic and arms (the target is told, never resets them)
        rollouts = live_rollouts(project, name)
        options = Options(say=progress.say, on_line=progress.line, plugin_dir=plugin_dir, rollouts=rollouts)
        target = open_target(project, name, options)
        if target.layered:
            deploy_layered(state, cast("LayeredTarget", target), progress, layer=layer, yes=yes, timeout=timeout)
            return
        state.out.print(f"deploying environment [bold]{escape(str(target.env_name))}[/] (target {target.kind})")
        result = target.deploy(DeployRequest(timeout=timeout))
        data = dataclasses.asdict(result)
        eps = project.manifest.endpoints_in(project.environment(env))
        data["openai_endpoints"] = sorted(n for n, ep in eps.items() if ep.api == "openai")
        state.emit(data, lambda c: _show(c, data))


def _weights(w: dict[str, int]) -> str:
    return ", ".join(f"{v} {p}%" for v, p in w.items()) or "-"


def describe_kept(ro: dict[str, Any]) -> str:
    """One line per rollout in progress: what the deploy left as the rollout had it."""
    step = f"step {ro['step']}/{ro['steps']}" if ro.get("step") else "not yet at its first step"
    live = ro.get("gateway_weights") or ro.get("rollout_weights") or {}
    line = (
        f"rollout {ro['run_id']} of {ro['endpoint']} is in progress ({ro['baseline']} -> {ro['candidate']}, "
        f"{ro['status']}, {step}): kept its traffic ({_weights(live)}) and its arms ({', '.join(ro.get('arms') or [])})"
    )
    want = {k: v for k, v in (ro.get("rollout_weights") or {}).items() if v}
    have = {k: v for k, v in live.items() if v}
    if ro.get("gateway_weights") and want and want != have:
        line += f"; note: the rollout last set {_weights(want)}"
    return line


def _show(con: Console, r: dict[str, Any]) -> None:
    if r["changed"]:
        parts = []
        for key in ("started", "restarted", "stopped"):
            if r[key]:
                parts.append(f"{key} {', '.join(r[key])}")
        if r.get("reloaded"):
            parts.append(f"reloaded {', '.join(r['reloaded'])} in place")
        if r["unchanged"]:
            parts.append(f"kept {', '.join(r['unchanged'])}")
        con.print(f"[green]deployed[/] {escape(r['env'])} in {r['seconds']:.1f}s: " + escape("; ".join(parts)))
    else:
        con.print(f"[green]up to date[/] {escape(r['env'])}: nothing changed, nothing started")
    for ro in r.get("rollouts") or []:
        con.print(escape(describe_kept(ro)))
    con.print(f"gateway     {escape(str(r['gateway_url']))}  (V2: POST /v2/models/ENDPOINT/infer)")
    if r.get("openai_endpoints"):
        names = ", ".join(r["openai_endpoints"])
        con.print(f"            OpenAI: POST /v1/chat/completions, /v1/completions with model = {escape(names)}")
    con.print(f"prometheus  {escape(str(r['prometheus_url']))}")
    con.print("`mlserve status` shows processes, health and traffic; `mlserve down` stops them")
