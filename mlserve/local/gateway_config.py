"""The local gateway's contract: its config file, its traffic state and its admin API shapes.

The supervisor writes a :class:`GatewayConfig` to ``.mlserve/local/gateway.json`` and starts
``python -m mlserve.local.gateway --config PATH``; later changes are written to the same file
and applied to the running process by ``POST /admin/reload`` (or SIGHUP): a new route table is
swapped in, the live traffic is carried over (:meth:`TrafficState.carried_over`) and only the
fields of :data:`RESTART_FIELDS` need a new process. The gateway persists the live traffic
state (:class:`TrafficFile`) to ``state_file`` on every admin change, and loads it on start
so that a restarted gateway keeps the weights of a rollout in progress. This module is pure
(no network, no ASGI) so that deploy, the admin client and tests can import it cheaply.

Config file (``format`` = ``mlserve.gateway/v1``), every path absolute or relative to the
directory of the config file::

    {
      "format": "mlserve.gateway/v1", "generation": 3,
      "host": "127.0.0.1", "port": 8080,
      "admin_host": "127.0.0.1", "admin_port": 8081,
      "admin_token_file": "/proj/.mlserve/admin-token",
      "state_file": "/proj/.mlserve/local/traffic.json",
      "max_body_bytes": 1048576, "upstream_timeout": 30.0, "connect_timeout": 2.0,
      "body_timeout": 10.0, "sticky_key_max_bytes": 256, "shadow_max_inflight": 64,
      "shadow_tolerance": {"rtol": 1e-5, "atol": 1e-8}, "upstream_client": "raw",
      "endpoints": {
        "fraud": {
          "versions": {"v1": "http://127.0.0.1:9001", "v2": "http://127.0.0.1:9002"},
          "baseline": "v1",
          "sticky_header": "x-user-id", "sticky_cookie": null,
          "traffic": {"mode": "split", "weights": {"v1": 100, "v2": 0}, "shadow": null},
          "faults": {"v2": {"latency_ms": 0, "error_rate": 0, "misroute_percent": 0}}
        }
      }
    }
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlserve import fsutil

if TYPE_CHECKING:
    from mlserve.monitoring.summaries import MonitorConfig

CONFIG_FORMAT = "mlserve.gateway/v1"
TRAFFIC_FORMAT = "mlserve.traffic/v1"
STATE_FORMAT = "mlserve.gateway-state/v1"
LOOPBACK = "127.0.0.1"
TRAFFIC_MODES = ("split", "sticky")

Mode = Literal["split", "sticky"]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_COOKIE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class GatewayConfigError(ValueError):
    """The config, a traffic change or a fault is invalid; the message names the key."""


def _fail(where: str, message: str) -> GatewayConfigError:
    return GatewayConfigError(f"{where}: {message}" if where else message)


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"must be an object (got {type(value).__name__})")
    return value


def _only(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _fail(f"{where}.{unknown[0]}" if where else unknown[0], "unknown key")


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > 63 or not _NAME.match(value):
        raise _fail(where, f"must be a DNS-1123 label (got {value!r})")
    return value


def _num(value: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise _fail(where, f"must be a number between {lo:g} and {hi:g} (got {value!r})")
    return float(value)


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(where, f"must be an integer between {lo} and {hi} (got {value!r})")
    return value


# ---------------------------------------------------------------------------
# Faults and traffic
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """Injected by the gateway before forwarding to one version (same fields as the manifest's).

    ``first_token_ms`` and ``stream_error_rate`` act on streamed LLM answers only: the first
    generated token is held back that long, and that share of streams is cut off mid-way.
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    misroute_percent: float = 0.0
    first_token_ms: float = 0.0
    stream_error_rate: float = 0.0

    @property
    def active(self) -> bool:
        return bool(
            self.latency_ms or self.error_rate or self.misroute_percent or self.first_token_ms or self.stream_error_rate
        )

    def to_dict(self) -> dict[str, float]:
        return {
            "latency_ms": self.latency_ms,
            "error_rate": self.error_rate,
            "misroute_percent": self.misroute_percent,
            "first_token_ms": self.first_token_ms,
            "stream_error_rate": self.stream_error_rate,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "fault") -> Fault:
        data = _obj(data, where)
        _only(data, {"latency_ms", "error_rate", "misroute_percent", "first_token_ms", "stream_error_rate"}, where)
        return cls(
            latency_ms=_num(data.get("latency_ms", 0.0), f"{where}.latency_ms", 0, 60_000),
            error_rate=_num(data.get("error_rate", 0.0), f"{where}.error_rate", 0, 1),
            misroute_percent=_num(data.get("misroute_percent", 0.0), f"{where}.misroute_percent", 0, 100),
            first_token_ms=_num(data.get("first_token_ms", 0.0), f"{where}.first_token_ms", 0, 60_000),
            stream_error_rate=_num(data.get("stream_error_rate", 0.0), f"{where}.stream_error_rate", 0, 1),
        )

    @classmethod
    def from_manifest(cls, fault: Any) -> Fault:
        """From ``mlserve.manifest.models.Fault`` (duck-typed: this module imports no pydantic)."""
        return cls(
            float(fault.latency_ms),
            float(fault.error_rate),
            float(fault.misroute_percent),
            float(getattr(fault, "first_token_ms", 0.0)),
            float(getattr(fault, "stream_error_rate", 0.0)),
        )


@dataclass(frozen=True)
class Shadow:
    """Mirror ``percent`` of an endpoint's requests to ``version``; responses come from the routed variant."""

    version: str
    percent: int = 100

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "percent": self.percent}

    @classmethod
    def from_dict(cls, data: Any, where: str = "shadow") -> Shadow:
        data = _obj(data, where)
        _only(data, {"version", "percent"}, where)
        if "version" not in data:
            raise _fail(f"{where}.version", "is required")
        return cls(
            version=_name(data["version"], f"{where}.version"),
            percent=_int(data.get("percent", 100), f"{where}.percent", 0, 100),
        )


@dataclass(frozen=True)
class TrafficState:
    """How one endpoint's requests are routed now.

    ``split``: weighted random by percent. ``sticky``: the user key (header or cookie) is
    hashed to a bucket and buckets are shared out by weight, so a key keeps its variant;
    requests without a key are split at random by weight. ``shadow`` works with either mode.
    ``weights`` holds every version of the endpoint (missing ones are 0), integers summing to 100.
    """

    weights: Mapping[str, int]
    mode: Mode = "split"
    shadow: Shadow | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "weights": dict(self.weights),
            "shadow": self.shadow.to_dict() if self.shadow else None,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "traffic") -> TrafficState:
        """Shape only; :meth:`validated` checks it against an endpoint's versions."""
        data = _obj(data, where)
        _only(data, {"mode", "weights", "shadow"}, where)
        mode = data.get("mode", "split")
        if mode not in TRAFFIC_MODES:
            raise _fail(f"{where}.mode", f"must be one of {', '.join(TRAFFIC_MODES)} (got {mode!r})")
        if "weights" not in data:
            raise _fail(f"{where}.weights", "is required (an object {version: percent})")
        raw = _obj(data["weights"], f"{where}.weights")
        weights = {str(k): _int(v, f"{where}.weights.{k}", 0, 100) for k, v in raw.items()}
        shadow = data.get("shadow")
        return cls(
            weights=weights,
            mode=mode,
            shadow=None if shadow is None else Shadow.from_dict(shadow, f"{where}.shadow"),
        )

    def validated(self, versions: Mapping[str, object] | list[str], where: str = "traffic") -> TrafficState:
        """Check against the endpoint's versions; fill missing versions with 0."""
        known = list(versions)
        unknown = sorted(set(self.weights) - set(known))
        if unknown:
            raise _fail(
                f"{where}.weights.{unknown[0]}", f"names no version of this endpoint (versions: {', '.join(known)})"
            )
        total = sum(self.weights.values())
        if total != 100:
            raise _fail(f"{where}.weights", f"must sum to 100 (got {total})")
        if self.shadow is not None and self.shadow.version not in known:
            raise _fail(
                f"{where}.shadow.version",
                f"names no version of this endpoint (got {self.shadow.version!r}; versions: {', '.join(known)})",
            )
        full = {v: int(self.weights.get(v, 0)) for v in known}
        return replace(self, weights=full)

    def carried_over(self, versions: Mapping[str, object] | list[str], baseline: str) -> TrafficState:
        """This live traffic on a new set of arms: the weight of an arm that is gone goes to the
        baseline, a shadow of an arm that is gone stops, new arms start at 0; mode is kept.

        A reload never resets a rollout's split: arms that stay keep their weights exactly.
        """
        known = list(versions)
        weights = {v: int(self.weights.get(v, 0)) for v in known}
        weights[baseline] = weights.get(baseline, 0) + sum(w for v, w in self.weights.items() if v not in known)
        shadow = self.shadow if self.shadow is not None and self.shadow.version in known else None
        return TrafficState(weights=weights, mode=self.mode, shadow=shadow)


# ---------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointConfig:
    versions: Mapping[str, str]  # version name -> upstream base URL (http://127.0.0.1:PORT)
    baseline: str
    traffic: TrafficState
    sticky_header: str = "x-user-id"
    sticky_cookie: str | None = None
    faults: Mapping[str, Fault] = field(default_factory=dict)
    # "v2" or "openai" (chat/text completions through mlserve.local.openai_proxy)
    protocol: str = "v2"
    # openai shadows: how generations are compared ("exact" after normalisation, or "semantic")
    text_match: str = "exact"
    similarity: float = 0.9
    monitoring: MonitorConfig | None = None  # drift summaries (mlserve.monitoring.summaries); None: off

    def to_dict(self) -> dict[str, Any]:
        out = {
            "protocol": self.protocol,
            "text_match": self.text_match,
            "similarity": self.similarity,
            "versions": dict(self.versions),
            "baseline": self.baseline,
            "sticky_header": self.sticky_header,
            "sticky_cookie": self.sticky_cookie,
            "traffic": self.traffic.to_dict(),
            "faults": {v: f.to_dict() for v, f in self.faults.items()},
        }
        if self.monitoring is not None:
            out["monitoring"] = self.monitoring.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str, base_dir: Path | None = None) -> EndpointConfig:
        data = _obj(data, where)
        _only(
            data,
            {
                "versions",
                "baseline",
                "sticky_header",
                "sticky_cookie",
                "traffic",
                "faults",
                "protocol",
                "text_match",
                "similarity",
                "monitoring",
            },
            where,
        )
        protocol = data.get("protocol", "v2")
        if protocol not in ("v2", "openai"):
            raise _fail(f"{where}.protocol", f"must be 'v2' or 'openai' (got {protocol!r})")
        text_match = data.get("text_match", "exact")
        if text_match not in ("exact", "semantic"):
            raise _fail(f"{where}.text_match", f"must be 'exact' or 'semantic' (got {text_match!r})")
        similarity = _num(data.get("similarity", 0.9), f"{where}.similarity", 0, 1)
        raw_versions = _obj(data.get("versions"), f"{where}.versions")
        if not raw_versions:
            raise _fail(f"{where}.versions", "must name at least one version")
        versions: dict[str, str] = {}
        for name, url in raw_versions.items():
            _name(name, f"{where}.versions")
            if not isinstance(url, str) or not re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\]):\d{1,5}/?$", url):
                raise _fail(
                    f"{where}.versions.{name}", f"must be a loopback URL like http://127.0.0.1:9001 (got {url!r})"
                )
            versions[name] = url.rstrip("/")
        baseline = data.get("baseline")
        if baseline not in versions:
            raise _fail(f"{where}.baseline", f"names no version (got {baseline!r}; versions: {', '.join(versions)})")
        header = data.get("sticky_header", "x-user-id")
        if not isinstance(header, str) or not _HEADER.match(header):
            raise _fail(f"{where}.sticky_header", f"must be an HTTP header name (got {header!r})")
        cookie = data.get("sticky_cookie")
        if cookie is not None and (not isinstance(cookie, str) or not _COOKIE.match(cookie)):
            raise _fail(f"{where}.sticky_cookie", f"must be a cookie name (got {cookie!r})")
        traffic_raw = data.get("traffic")
        traffic = (
            TrafficState(weights={baseline: 100})
            if traffic_raw is None
            else TrafficState.from_dict(traffic_raw, f"{where}.traffic")
        ).validated(versions, f"{where}.traffic")
        faults: dict[str, Fault] = {}
        for v, f in _obj(data.get("faults", {}), f"{where}.faults").items():
            if v not in versions:
                raise _fail(f"{where}.faults.{v}", f"names no version (versions: {', '.join(versions)})")
            faults[v] = Fault.from_dict(f, f"{where}.faults.{v}")
        monitoring = None
        if data.get("monitoring") is not None:
            from mlserve.monitoring.summaries import MonitorConfig, MonitorConfigError

            try:
                monitoring = MonitorConfig.from_dict(data["monitoring"], f"{where}.monitoring", base_dir)
            except MonitorConfigError as exc:
                raise GatewayConfigError(str(exc)) from None
        return cls(
            versions=versions,
            baseline=baseline,
            traffic=traffic,
            sticky_header=header.lower(),
            sticky_cookie=cookie,
            faults=faults,
            protocol=protocol,
            text_match=text_match,
            similarity=similarity,
            monitoring=monitoring,
        )


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway process needs; written by deploy, read once at start."""

    port: int
    admin_port: int
    admin_token_file: Path
    state_file: Path
    endpoints: Mapping[str, EndpointConfig]
    host: str = LOOPBACK
    admin_host: str = LOOPBACK
    max_body_bytes: int = 1 << 20
    upstream_timeout: float = 30.0
    connect_timeout: float = 2.0
    body_timeout: float = 10.0  # a slow client must send its whole body within this
    sticky_key_max_bytes: int = 256
    shadow_max_inflight: int = 64  # mirrors beyond this are dropped (counted, code "dropped")
    shadow_rtol: float = 1e-5
    shadow_atol: float = 1e-8
    upstream_client: str = "raw"  # or "aiohttp" / "httpx" (see mlserve.local.upstream)
    generation: int = 0  # which desired state this config is (the supervisor counts them)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CONFIG_FORMAT,
            "generation": self.generation,
            "host": self.host,
            "port": self.port,
            "admin_host": self.admin_host,
            "admin_port": self.admin_port,
            "admin_token_file": str(self.admin_token_file),
            "state_file": str(self.state_file),
            "max_body_bytes": self.max_body_bytes,
            "upstream_timeout": self.upstream_timeout,
            "connect_timeout": self.connect_timeout,
            "body_timeout": self.body_timeout,
            "sticky_key_max_bytes": self.sticky_key_max_bytes,
            "shadow_max_inflight": self.shadow_max_inflight,
            "shadow_tolerance": {"rtol": self.shadow_rtol, "atol": self.shadow_atol},
            "upstream_client": self.upstream_client,
            "endpoints": {name: ep.to_dict() for name, ep in self.endpoints.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, base_dir: Path | None = None) -> GatewayConfig:
        data = _obj(data, "")
        allowed = {
            "format",
            "generation",
            "host",
            "port",
            "admin_host",
            "admin_port",
            "admin_token_file",
            "state_file",
            "max_body_bytes",
            "upstream_timeout",
            "connect_timeout",
            "body_timeout",
            "sticky_key_max_bytes",
            "shadow_max_inflight",
            "shadow_tolerance",
            "upstream_client",
            "endpoints",
        }
        _only(data, allowed, "")
        fmt = data.get("format", CONFIG_FORMAT)
        if fmt != CONFIG_FORMAT:
            raise _fail("format", f"must be {CONFIG_FORMAT!r} (got {fmt!r})")
        for key in ("host", "admin_host"):
            if data.get(key, LOOPBACK) != LOOPBACK:
                raise _fail(key, f"the local gateway listens on {LOOPBACK} only (got {data.get(key)!r})")
        for key in ("port", "admin_port", "admin_token_file", "state_file", "endpoints"):
            if key not in data:
                raise _fail(key, "is required")
        port = _int(data["port"], "port", 0, 65535)
        admin_port = _int(data["admin_port"], "admin_port", 0, 65535)
        if port and port == admin_port:
            raise _fail("admin_port", "must differ from port")

        def path(key: str) -> Path:
            value = data[key]
            if not isinstance(value, str) or not value:
                raise _fail(key, "must be a file path")
            p = Path(value)
            return p if p.is_absolute() or base_dir is None else base_dir / p

        client = data.get("upstream_client", "raw")
        if client not in ("raw", "aiohttp", "httpx"):
            raise _fail("upstream_client", f"must be 'raw', 'aiohttp' or 'httpx' (got {client!r})")
        tol = _obj(data.get("shadow_tolerance", {}), "shadow_tolerance")
        _only(tol, {"rtol", "atol"}, "shadow_tolerance")
        endpoints_raw = _obj(data["endpoints"], "endpoints")
        endpoints = {
            _name(k, "endpoints"): EndpointConfig.from_dict(v, f"endpoints.{k}", base_dir)
            for k, v in endpoints_raw.items()
        }
        return cls(
            port=port,
            admin_port=admin_port,
            admin_token_file=path("admin_token_file"),
            state_file=path("state_file"),
            endpoints=endpoints,
            max_body_bytes=_int(data.get("max_body_bytes", 1 << 20), "max_body_bytes", 1024, 1 << 30),
            upstream_timeout=_num(data.get("upstream_timeout", 30.0), "upstream_timeout", 0.001, 3600),
            connect_timeout=_num(data.get("connect_timeout", 2.0), "connect_timeout", 0.001, 60),
            body_timeout=_num(data.get("body_timeout", 10.0), "body_timeout", 0.001, 600),
            sticky_key_max_bytes=_int(data.get("sticky_key_max_bytes", 256), "sticky_key_max_bytes", 1, 8192),
            shadow_max_inflight=_int(data.get("shadow_max_inflight", 64), "shadow_max_inflight", 1, 100_000),
            shadow_rtol=_num(tol.get("rtol", 1e-5), "shadow_tolerance.rtol", 0, 1),
            shadow_atol=_num(tol.get("atol", 1e-8), "shadow_tolerance.atol", 0, 1e9),
            upstream_client=client,
            generation=_int(data.get("generation", 0), "generation", 0, 2**62),
        )

    def write(self, path: Path) -> None:
        fsutil.atomic_write_json(path, self.to_dict())


def load_gateway_config(path: Path) -> GatewayConfig:
    """Read and validate a config file; errors name the file and the key."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise GatewayConfigError(f"{path}: cannot read gateway config: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise GatewayConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    try:
        return GatewayConfig.from_dict(data, base_dir=Path(path).resolve().parent)
    except GatewayConfigError as exc:
        raise GatewayConfigError(f"{path}: {exc}") from None


# Fields a running gateway cannot take over by a reload: its listeners, its files, its client.
RESTART_FIELDS = ("host", "port", "admin_host", "admin_port", "admin_token_file", "state_file", "upstream_client")


def restart_fields(old: GatewayConfig, new: GatewayConfig) -> list[str]:
    """The fields of :data:`RESTART_FIELDS` that differ: a reload must refuse these."""
    return [f for f in RESTART_FIELDS if getattr(old, f) != getattr(new, f)]


# ---------------------------------------------------------------------------
# Persisted traffic state
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficFile:
    """``state_file``: the live traffic of every endpoint, rewritten atomically on each change.

    Faults changed at run time are not persisted: after a restart the config's faults apply.
    """

    endpoints: Mapping[str, TrafficState]
    updated_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TRAFFIC_FORMAT,
            "updated_at": self.updated_at,
            "endpoints": {k: v.to_dict() for k, v in self.endpoints.items()},
        }

    @classmethod
    def from_dict(cls, data: Any) -> TrafficFile:
        data = _obj(data, "")
        if data.get("format") != TRAFFIC_FORMAT:
            raise _fail("format", f"must be {TRAFFIC_FORMAT!r} (got {data.get('format')!r})")
        eps = _obj(data.get("endpoints", {}), "endpoints")
        return cls(
            endpoints={k: TrafficState.from_dict(v, f"endpoints.{k}") for k, v in eps.items()},
            updated_at=float(data.get("updated_at", 0.0)),
        )


def load_traffic_file(path: Path) -> TrafficFile | None:
    """None when the file does not exist; GatewayConfigError when it is unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise GatewayConfigError(f"{path}: cannot read traffic state: {exc.strerror or exc}") from None
    try:
        return TrafficFile.from_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        raise GatewayConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except GatewayConfigError as exc:
        raise GatewayConfigError(f"{path}: {exc}") from None


# ---------------------------------------------------------------------------
# Admin token
# ---------------------------------------------------------------------------


def create_token_file(path: Path) -> str:
    """A fresh random token in a 0600 file (created with that mode: never readable by others)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(token + "\n")
    os.replace(tmp, path)
    return token


def read_token_file(path: Path) -> str:
    """The admin token; refuses a file that group or others can read."""
    path = Path(path)
    try:
        st = path.stat()
        token = path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise GatewayConfigError(f"{path}: cannot read the admin token: {exc.strerror or exc}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise GatewayConfigError(
            f"{path}: admin token file must be private (chmod 600), mode is {oct(st.st_mode & 0o777)}"
        )
    if len(token) < 16:
        raise GatewayConfigError(f"{path}: admin token is empty or too short")
    return token


# ---------------------------------------------------------------------------
# Admin API response: GET /admin/state
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionStatus:
    url: str
    weight: int
    fault: Fault
    healthy: bool | None  # None: not probed


@dataclass(frozen=True)
class EndpointStatus:
    baseline: str
    traffic: TrafficState
    sticky_header: str
    sticky_cookie: str | None
    versions: Mapping[str, VersionStatus]
    generation: int  # bumps on every traffic change

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            **self.traffic.to_dict(),
            "sticky_header": self.sticky_header,
            "sticky_cookie": self.sticky_cookie,
            "generation": self.generation,
            "versions": {
                v: {"url": s.url, "weight": s.weight, "fault": s.fault.to_dict(), "healthy": s.healthy}
                for v, s in self.versions.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EndpointStatus:
        return cls(
            baseline=data["baseline"],
            traffic=TrafficState.from_dict(
                {"mode": data["mode"], "weights": data["weights"], "shadow": data.get("shadow")}
            ),
            sticky_header=data["sticky_header"],
            sticky_cookie=data.get("sticky_cookie"),
            generation=int(data.get("generation", 0)),
            versions={
                v: VersionStatus(
                    url=s["url"], weight=int(s["weight"]), fault=Fault.from_dict(s["fault"]), healthy=s.get("healthy")
                )
                for v, s in data["versions"].items()
            },
        )


@dataclass(frozen=True)
class GatewayState:
    endpoints: Mapping[str, EndpointStatus]
    pid: int
    port: int
    admin_port: int
    started_at: float
    config_generation: int = 0  # the ``generation`` of the config it runs (0: none given)
    reloads: int = 0  # configs applied by reload since it started

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "pid": self.pid,
            "port": self.port,
            "admin_port": self.admin_port,
            "started_at": self.started_at,
            "config_generation": self.config_generation,
            "reloads": self.reloads,
            "endpoints": {k: v.to_dict() for k, v in self.endpoints.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GatewayState:
        return cls(
            endpoints={k: EndpointStatus.from_dict(v) for k, v in data["endpoints"].items()},
            pid=int(data["pid"]),
            port=int(data["port"]),
            admin_port=int(data["admin_port"]),
            started_at=float(data["started_at"]),
            config_generation=int(data.get("config_generation", 0)),
            reloads=int(data.get("reloads", 0)),
        )
