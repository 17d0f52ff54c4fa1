"""The drift collector for Kubernetes: the same sliding-window summaries as the local gateway,
fed by the serving platform's payload logger instead of the request path.

KServe's ``spec.predictor.logger`` and Seldon's ``graph.logger`` (rendered by mlserve with
``mode: all``) post every inference request and response as a CloudEvent in binary mode: the
body is the payload, ``ce-id`` pairs a request with its response, ``ce-type`` ends in
``.request`` or ``.response`` (``org.kubeflow.serving.inference.*``,
``io.seldon.serving.inference.*``). mlserve renders one logger URL per version,
``/log/ENDPOINT/VERSION``, so the variant is in the path. A request waits in memory (at most
``MAX_PENDING``, at most ``PENDING_SECONDS``) until its response arrives, in either order; the
pair is summarised and both payloads are dropped. Nothing is written to disk.

Run as ``python -m mlserve.monitoring.collector --config collector.json [--host H] [--port P]``;
``GET /metrics`` serves ``mlserve_drift_*`` and ``mlserve_predictions_total``, ``GET
/healthz`` answers 200 with the counts of events waiting for their pair and of those dropped
unpaired. Config (rendered into a ConfigMap)::

    {"endpoint": "fraud", "baseline": "v1", "versions": ["v1", "v2"],
     "monitoring": {"profile": "/etc/mlserve/profile.json", "window": 300, ...}}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlserve.monitoring.profile import ProfileError, load_profile
from mlserve.monitoring.summaries import DriftCollector, EndpointMonitor, MonitorConfig, MonitorConfigError

MAX_PENDING = 10_000
PENDING_SECONDS = 60.0
MAX_BODY = 4 * 1024 * 1024


class CollectorConfigError(ValueError):
    pass


@dataclass(frozen=True)
class CollectorConfig:
    endpoint: str
    baseline: str
    versions: tuple[str, ...]
    monitoring: MonitorConfig

    @classmethod
    def load(cls, path: Path) -> CollectorConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CollectorConfigError(f"{path}: cannot read the collector config: {exc}") from None
        if not isinstance(data, Mapping):
            raise CollectorConfigError(f"{path}: must be a JSON object")
        for key in ("endpoint", "baseline", "versions", "monitoring"):
            if key not in data:
                raise CollectorConfigError(f"{path}: {key}: is required")
        versions = data["versions"]
        if not isinstance(versions, list) or not versions or not all(isinstance(v, str) for v in versions):
            raise CollectorConfigError(f"{path}: versions: must be a list of version names")
        if data["baseline"] not in versions:
            raise CollectorConfigError(f"{path}: baseline: names no version ({', '.join(versions)})")
        try:
            mon = MonitorConfig.from_dict(data["monitoring"], "monitoring", Path(path).parent)
        except MonitorConfigError as exc:
            raise CollectorConfigError(f"{path}: {exc}") from None
        return cls(str(data["endpoint"]), str(data["baseline"]), tuple(versions), mon)


class Collector:
    """Pairs logged requests with their responses and feeds the endpoint's monitor."""

    def __init__(self, config: CollectorConfig, clock: Any = time.monotonic) -> None:
        profile = load_profile(config.monitoring.profile) if config.monitoring.profile else None
        self.config = config
        self.clock = clock
        self.monitor = EndpointMonitor(
            config.endpoint, list(config.versions), config.baseline, config.monitoring, profile, clock=clock
        )
        # ce-id -> (arrived, variant, kind, body)
        self.pending: OrderedDict[str, tuple[float, str, str, bytes]] = OrderedDict()
        self.dropped = 0

    def _expire(self, now: float) -> None:
        while self.pending:
            key, (t, *_rest) = next(iter(self.pending.items()))
            if now - t <= PENDING_SECONDS and len(self.pending) <= MAX_PENDING:
                break
            self.pending.pop(key)
            self.dropped += 1

    def event(self, variant: str, event_id: str, event_type: str, body: bytes) -> str:
        """One CloudEvent; returns what happened (for tests and the response body)."""
        kind = "request" if event_type.endswith("request") else "response" if event_type.endswith("response") else ""
        if not kind:
            return "ignored"
        now = self.clock()
        self._expire(now)
        other = self.pending.pop(event_id, None)
        if other is None or other[2] == kind or other[1] != variant:
            self.pending[event_id] = (now, variant, kind, body)
            return "pending"
        request, response = (other[3], body) if kind == "response" else (body, other[3])
        try:
            payload = json.loads(request)
        except (ValueError, UnicodeDecodeError, RecursionError):
            payload = None
        self.monitor.observe(variant, payload, response)
        return "observed"


def app(collector: Collector) -> Any:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DriftCollector({collector.config.endpoint: collector.monitor}))
    versions = set(collector.config.versions)

    async def log(request: Request) -> Response:
        endpoint, variant = request.path_params["endpoint"], request.path_params["variant"]
        if endpoint != collector.config.endpoint or variant not in versions:
            return JSONResponse({"error": f"this collector monitors {collector.config.endpoint}"}, status_code=404)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "payload too large"}, status_code=413)
        event_id = request.headers.get("ce-id", "")
        event_type = request.headers.get("ce-type", "")
        if not event_id:
            return JSONResponse({"error": "not a CloudEvent in binary mode (no ce-id header)"}, status_code=400)
        return JSONResponse({"result": collector.event(variant, event_id, event_type, body)}, status_code=202)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "pending": len(collector.pending), "dropped": collector.dropped})

    return Starlette(
        routes=[
            Route("/log/{endpoint}/{variant}", log, methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlserve.monitoring.collector", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--host", default="127.0.0.1", help="the rendered Deployment passes 0.0.0.0 (inside its pod)")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    try:
        collector = Collector(CollectorConfig.load(Path(args.config)))
    except (CollectorConfigError, ProfileError) as exc:
        print(f"mlserve collector: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run(app(collector), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
