from __future__ import annotations

import time
from typing import Annotated

import typer

from mlserve.cli.output import JsonFlag, get_state


def register(app: typer.Typer) -> None:
    @app.command("dashboard")
    def dashboard(
        ctx: typer.Context,
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Local environment (default: the first local one).")
        ] = None,
        port: Annotated[
            int, typer.Option("--port", "-p", min=0, max=65535, help="Port on 127.0.0.1 (0: a free one).")
        ] = 0,
        time_range: Annotated[str, typer.Option("--range", help="Time shown by the panels (1m-7d).")] = "15m",
        duration: Annotated[
            str | None, typer.Option("--duration", help="Serve this long, then exit 0 (default: until Ctrl-C).")
        ] = None,
        json_out: JsonFlag = False,
    ) -> None:
        """Serve the endpoints' dashboards on 127.0.0.1, live from the local Prometheus.

        The same panels as the Grafana dashboards rendered for the cluster: traffic and weights
        per version, latency quantiles, error ratio, SLO burn, drift, rollout steps. Ctrl-C
        stops it (exit 130).
        """
        state = get_state(ctx, json_out)
        from mlserve.cli.monitoring import duration_option, source_for
        from mlserve.errors import UsageError
        from mlserve.monitoring import dashboard_server as ds
        from mlserve.monitoring.rules import endpoint_rules_from_manifest
        from mlserve.project import load_project

        project = load_project(state.project_dir)
        seconds = duration_option(time_range, "--range", 60.0, 7 * 86400.0)
        until = duration_option(duration, "--duration", 1.0, 7 * 86400.0) if duration else None
        src = source_for(project, env)
        if src.source != "local":
            raise UsageError(
                f"mlserve dashboard serves the local target; environment {src.env!r} gets Grafana dashboards "
                "(stacks/ENV/kubernetes/monitoring/, loaded by kube-prometheus-stack's Grafana)"
            )
        rules = [endpoint_rules_from_manifest(n, ep) for n, ep in project.manifest.endpoints_in(src.env).items()]
        server = ds.start(
            port,
            src.prometheus_url,
            ds.boards_for(rules),
            f"mlserve / {project.manifest.project.name} ({src.env})",
            seconds,
        )
        t0 = time.monotonic()
        state.out.print(
            f"dashboard {server.url} (live from {src.prometheus_url}; Ctrl-C stops)", markup=False, highlight=False
        )
        try:
            while until is None or time.monotonic() - t0 < until:
                time.sleep(0.2)
        finally:
            server.shutdown()
            server.server_close()
        result = {
            "url": server.url,
            "prometheus_url": src.prometheus_url,
            "served_seconds": round(time.monotonic() - t0, 1),
        }
        state.emit(result, lambda con: con.print(f"dashboard stopped after {result['served_seconds']}s"))
