"""Exposition samples served over loopback whose counters advance by the weights the stand-in
API server holds, and a real Prometheus scraping them: the metrics half of the cluster
rehearsal (the API half is :mod:`tests.support.apiserver`).

Every tick, a Poisson number of requests is split between the endpoint's arms by the live
routing objects in the stand-in (the VirtualService's route weights and mirror, or the
HTTPRoute's backendRef weights and RequestMirror filter), and each arm's series in each
sample file (:file:`tests/fixtures/exposition/`) advance: requests by response code, latency
buckets, sums and counts, errors at the arm's version's error rate. A weight change applied
through kubectl therefore moves the series, as it would on a cluster. Each file is served as
one target holding every arm's series, with the arm's identity labels (workload, canonical
revision, predictor name, model version); an arm can be left out (``silent``) to show a
missing series. A rollout's control is an arm like the others, as a real sidecar reports it:
its own workload (``ENDPOINT-control-predictor``, or predictor ``control``) and canonical
revision (the arm's name, its pods' label), answering as the version its pods serve
(``mlserve.io/model-version``).
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.apiserver import FakeCluster

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "exposition"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
MODEL_VERSION = "mlserve.io/model-version"  # a control's pods: the baseline version they serve


@dataclass(frozen=True)
class ArmInfo:
    """One running arm as the cluster shows it."""

    name: str  # the workload object's name (InferenceService, or SeldonDeployment predictor)
    version: str  # its mlserve.io/version label: the version, or a control's arm name
    role: str
    workload: str  # the Deployment Istio names as destination_workload
    service: str  # the Service requests reach it through (destination_service_name)
    predictor: str  # Seldon predictor name ("" for KServe)
    model_version: str = ""  # the version its pods serve (a control's: the baseline's); "" = version
    # the bounds its pods' sidecar.istio.io/statsHistogramBuckets annotation gives Istio's
    # request-duration histogram (milliseconds); () keeps the recorded (default) buckets
    istio_buckets: tuple[float, ...] = ()

    @property
    def serves(self) -> str:
        return self.model_version or self.version


@dataclass(frozen=True)
class Component:
    """How one sample file's series follow an arm's traffic."""

    file: str
    ok: tuple[str, Mapping[str, str]]  # counter sample name, label values of its successful series
    error: tuple[str, Mapping[str, str]] | None  # ... of its failed series (None: not counted)
    histogram: str | None  # histogram base name
    code_label: str | None  # the histogram's label telling success from failure
    scale: float  # seconds -> the histogram's unit
    identity: Callable[[ArmInfo, str, str], dict[str, str]]  # (arm, endpoint, namespace) -> labels


def _istio(arm: ArmInfo, endpoint: str, ns: str) -> dict[str, str]:
    return {
        "destination_workload": arm.workload,
        "destination_workload_namespace": ns,
        "destination_canonical_service": endpoint,
        "destination_canonical_revision": arm.version,
        "destination_service_name": arm.service,
        "destination_service_namespace": ns,
        "destination_service": f"{arm.service}.{ns}.svc.cluster.local",
        "destination_principal": f"spiffe://cluster.local/ns/{ns}/sa/default",
    }


COMPONENTS: dict[str, Component] = {
    "istio": Component(
        "istio-proxy.prom",
        ("istio_requests_total", {"response_code": "200"}),
        ("istio_requests_total", {"response_code": "500"}),
        "istio_request_duration_milliseconds",
        "response_code",
        1000.0,
        _istio,
    ),
    "seldon": Component(
        "seldon-executor.prom",
        ("seldon_api_executor_client_requests_seconds_count", {"code": "200"}),
        ("seldon_api_executor_client_requests_seconds_count", {"code": "500"}),
        "seldon_api_executor_client_requests_seconds",
        "code",
        1.0,
        lambda arm, ep, ns: {"deployment_name": ep, "predictor_name": arm.predictor},
    ),
    "mlserver": Component(
        "mlserver.prom",
        ("model_infer_request_success_total", {}),
        ("model_infer_request_failure_total", {}),
        "model_infer_request_duration",
        None,
        1.0,
        lambda arm, ep, ns: {"model": ep, "version": arm.version},
    ),
    "vllm": Component(
        "vllm.prom",
        ("vllm:request_success_total", {"finished_reason": "stop"}),
        None,
        "vllm:e2e_request_latency_seconds",
        None,
        1.0,
        # vLLM labels its series with the first served model name: mlserve's ENDPOINT-ARM
        lambda arm, ep, ns: {"model_name": f"{ep}-{arm.version}"},
    ),
}


# ---------------------------------------------------------------------------
# parsing and writing the text format
# ---------------------------------------------------------------------------

Labels = tuple[tuple[str, str], ...]


def parse(text: str) -> tuple[list[str], dict[tuple[str, Labels], float], dict[str, str]]:
    """(sample order, sample -> value, family -> TYPE line) of an exposition text."""
    order: list[str] = []
    values: dict[tuple[str, Labels], float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            family = line.split()[2]
            types[family] = line
            continue
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"not an exposition line: {line!r}")
        name, _, body, value = m.groups()
        labels = tuple(_LABEL.findall(body or ""))
        values[(name, labels)] = float(value)
        if name not in order:
            order.append(name)
    return order, values, types


def _family(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count", "_total"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _fmt(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"


def _with(labels: Labels, changes: Mapping[str, str]) -> Labels:
    d = dict(labels)
    d.update({k: v for k, v in changes.items() if k in d or k in ("response_code", "code")})
    return tuple(sorted(d.items()))


# ---------------------------------------------------------------------------
# the cluster's arms and routing
# ---------------------------------------------------------------------------


def arms_of(cluster: FakeCluster, namespace: str, endpoint: str, serving: str, router: str) -> list[ArmInfo]:
    out = []
    if serving == "kserve":
        for kind in ("LLMInferenceService", "InferenceService"):
            for obj in cluster.objects(kind):
                meta = obj["metadata"]
                labels = meta.get("labels") or {}
                if meta.get("namespace") != namespace or labels.get("mlserve.io/endpoint") != endpoint:
                    continue
                name = meta["name"]
                role = (meta.get("annotations") or {}).get("mlserve.io/role", "")
                if kind == "LLMInferenceService":  # its pods: spec.labels; KServe's Deployment NAME-kserve
                    pod_spec, workload = (obj.get("spec") or {}), f"{name}-kserve"
                    # the HTTPRoute's backend: the arm's InferencePool (an endpoint picker) or its Service
                    pooled = cluster.get("InferencePool", name, namespace) is not None
                    backend = name if pooled else f"{name}-arm"
                else:
                    pod_spec, workload = (obj.get("spec") or {}).get("predictor") or {}, f"{name}-predictor"
                    backend = f"{name}-predictor"
                service = backend if router == "gateway-api" else endpoint
                version = labels.get("mlserve.io/version", "")
                served = (pod_spec.get("labels") or {}).get(MODEL_VERSION, version)
                buckets = _sidecar_buckets(pod_spec.get("annotations") or {})
                out.append(ArmInfo(name, version, role, workload, service, "", served, buckets))
    else:
        sd = cluster.get("SeldonDeployment", endpoint, namespace)
        for p in (sd or {}).get("spec", {}).get("predictors", []) or []:
            version = (p.get("labels") or {}).get("mlserve.io/version", p["name"])
            role = (p.get("labels") or {}).get("mlserve.io/role", "")
            service = f"{endpoint}-{p['name']}" if router == "gateway-api" else endpoint
            pods = (((p.get("componentSpecs") or [{}])[0] or {}).get("metadata") or {}).get("labels") or {}
            served = pods.get(MODEL_VERSION, version)
            out.append(ArmInfo(p["name"], version, role, f"{endpoint}-{p['name']}-0-model", service, p["name"], served))
    return sorted(out, key=lambda a: a.name)


def _sidecar_buckets(annotations: Mapping[str, str]) -> tuple[float, ...]:
    """What an Envoy sidecar makes of its pod's statsHistogramBuckets annotation: the bounds
    of the histograms whose name the key prefixes (Istio's request duration here)."""
    import json

    raw = annotations.get("sidecar.istio.io/statsHistogramBuckets")
    if not raw:
        return ()
    for prefix, bounds in json.loads(raw).items():
        if "istio_request_duration_milliseconds".startswith(prefix.removeprefix("istiocustom.")):
            return tuple(float(b) for b in bounds)
    return ()


def shares_of(
    cluster: FakeCluster, namespace: str, endpoint: str, arms: list[ArmInfo], router: str
) -> tuple[dict[str, float], dict[str, float]]:
    """(live share, mirrored share) per arm name, from the routing object the stand-in holds."""
    live: dict[str, float] = {}
    mirror: dict[str, float] = {}
    if router == "gateway-api":
        route = cluster.get("HTTPRoute", endpoint, namespace)
        rules = (route or {}).get("spec", {}).get("rules", []) or []
        default = next((r for r in rules if not r.get("matches") or _catch_all(r)), rules[-1] if rules else {})
        by_service = {a.service: a for a in arms}
        refs = default.get("backendRefs", []) or []
        total = sum(int(r.get("weight", 1)) for r in refs) or 1
        for r in refs:
            arm = by_service.get(r.get("name", ""))
            if arm is not None:
                live[arm.name] = live.get(arm.name, 0.0) + int(r.get("weight", 1)) / total
        for f in default.get("filters", []) or []:
            if f.get("type") == "RequestMirror":
                rm = f["requestMirror"]
                arm = by_service.get(rm["backendRef"]["name"])
                if arm is not None:
                    mirror[arm.name] = float(rm.get("percent", 100)) / 100.0
        return live, mirror
    vs = cluster.get("VirtualService", endpoint, namespace)
    http = (vs or {}).get("spec", {}).get("http", []) or []
    default = next((h for h in reversed(http) if not h.get("match")), {})
    by_version: dict[str, list[ArmInfo]] = {}
    for a in arms:
        by_version.setdefault(a.version, []).append(a)
    for r in default.get("route", []) or []:
        members = by_version.get(r["destination"].get("subset", ""), [])
        for a in members:
            live[a.name] = live.get(a.name, 0.0) + int(r.get("weight", 100)) / 100.0 / len(members)
    if default.get("mirror"):
        for a in by_version.get(default["mirror"].get("subset", ""), []):
            mirror[a.name] = float((default.get("mirrorPercentage") or {}).get("value", 100)) / 100.0
    return live, mirror


def _catch_all(rule: Mapping[str, Any]) -> bool:
    return all(set(m) <= {"path"} and m.get("path", {}).get("value", "/") == "/" for m in rule.get("matches", []))


# ---------------------------------------------------------------------------
# the traffic
# ---------------------------------------------------------------------------


@dataclass
class Behaviour:
    error_rate: float = 0.0
    latency: float = 0.02  # seconds, median of a lognormal (sigma 0.3)
    agree: float = 1.0  # as a shadow: share of answers equal to the primary's


def _rebucket(
    values: dict[tuple[str, Labels], float], name: str, bounds: tuple[float, ...]
) -> dict[tuple[str, Labels], float]:
    """The recorded bucket series of ``name`` replaced by series at ``bounds`` (and +Inf), each
    label set starting at its recorded total: a sidecar configured with those buckets."""
    out = {k: v for k, v in values.items() if k[0] != name}
    totals = {tuple(kv for kv in lab if kv[0] != "le"): v for (n, lab), v in values.items()
              if n == name and dict(lab).get("le") == "+Inf"}  # fmt: skip
    for plain, total in totals.items():
        for le in [*(f"{b:g}" for b in bounds), "+Inf"]:
            out[(name, tuple(sorted((*plain, ("le", le)))))] = total
    return out


@dataclass
class _ArmSeries:
    values: dict[tuple[str, Labels], float]
    order: list[str]


@dataclass
class Exposition:
    """Serve the samples of ``components`` for one endpoint, advancing with its live routing."""

    cluster: FakeCluster
    namespace: str
    endpoint: str
    serving: str  # kserve | seldon
    router: str  # istio | gateway-api
    components: tuple[str, ...] = ("istio",)
    rate: float = 200.0  # requests per second to the endpoint
    versions: dict[str, Behaviour] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)  # arm names whose series are not exported
    seed: int = 7
    tick: float = 0.2
    on_mirrored: Callable[[ArmInfo, ArmInfo, int], None] | None = None  # (primary, shadow, n) per tick

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.lock = threading.Lock()
        self.series: dict[tuple[str, str], _ArmSeries] = {}  # (component, arm name) -> its series
        self.templates = {c: parse((FIXTURES / COMPONENTS[c].file).read_text()) for c in self.components}
        self.sent: dict[str, int] = {}  # arm name -> live requests generated
        self.mirrored: dict[str, int] = {}
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # -- series ------------------------------------------------------------------

    def _arm_series(self, comp: str, arm: ArmInfo) -> _ArmSeries:
        key = (comp, arm.name)
        if key not in self.series:
            order, values, _types = self.templates[comp]
            ident = COMPONENTS[comp].identity(arm, self.endpoint, self.namespace)
            mine = {(n, _with(lab, ident)): v for (n, lab), v in values.items()}
            histogram = COMPONENTS[comp].histogram
            if comp == "istio" and arm.istio_buckets and histogram:
                mine = _rebucket(mine, histogram + "_bucket", arm.istio_buckets)
            self.series[key] = _ArmSeries(mine, order)
        return self.series[key]

    def _bump(self, s: _ArmSeries, name: str, match: Mapping[str, str], by: float, template: Labels | None) -> Labels:
        hit = [k for k in s.values if k[0] == name and all(dict(k[1]).get(a) == b for a, b in match.items())]
        if not hit:
            base = template or next((k[1] for k in s.values if k[0] == name), ())
            new = (name, _with(base, match))
            s.values[new] = 0.0
            hit = [new]
        s.values[hit[0]] += by
        return hit[0][1]

    def _observe(self, comp: Component, s: _ArmSeries, latencies: np.ndarray, code: str | None) -> None:
        if comp.histogram is None or len(latencies) == 0:
            return
        match = {comp.code_label: code} if comp.code_label and code else {}
        scaled = latencies * comp.scale
        buckets = [k for k in s.values if k[0] == comp.histogram + "_bucket"]
        ref = next((k[1] for k in buckets if all(dict(k[1]).get(a) == b for a, b in match.items())), None)
        if ref is None and buckets:
            ref = _with(buckets[0][1], match)
        if ref is None:
            return
        for le in sorted({dict(k[1])["le"] for k in buckets}, key=lambda x: math.inf if x == "+Inf" else float(x)):
            bound = math.inf if le == "+Inf" else float(le)
            labels = _with(ref, {"le": le})
            key = (comp.histogram + "_bucket", tuple(sorted(dict(labels, le=le).items())))
            s.values[key] = s.values.get(key, 0.0) + float((scaled <= bound).sum())
        plain = tuple((k, v) for k, v in ref if k != "le")
        s.values[(comp.histogram + "_sum", plain)] = s.values.get((comp.histogram + "_sum", plain), 0.0) + float(
            scaled.sum()
        )
        s.values[(comp.histogram + "_count", plain)] = s.values.get((comp.histogram + "_count", plain), 0.0) + len(
            latencies
        )

    def _serve_arm(self, arm: ArmInfo, n: int) -> None:
        b = self.versions.get(arm.serves, Behaviour())  # a control behaves as the version it serves
        errors = int(self.rng.binomial(n, b.error_rate)) if n else 0
        ok = n - errors
        lat_ok = self.rng.lognormal(math.log(b.latency), 0.3, size=ok)
        lat_err = np.full(errors, 0.001)
        for c in self.components:
            comp = COMPONENTS[c]
            s = self._arm_series(c, arm)
            own_count = comp.histogram + "_count" if comp.histogram else None  # _observe counts those
            if comp.ok[0] != own_count:
                self._bump(s, comp.ok[0], comp.ok[1], ok, None)
            if comp.error is not None and errors and comp.error[0] != own_count:
                self._bump(s, comp.error[0], comp.error[1], errors, None)
            ok_code = comp.ok[1].get(comp.code_label or "", None) if comp.code_label else None
            err_code = comp.error[1].get(comp.code_label or "", None) if comp.error and comp.code_label else None
            self._observe(comp, s, lat_ok, ok_code)
            if comp.error is not None:
                self._observe(comp, s, lat_err, err_code)

    def step(self, dt: float) -> None:
        """One tick of traffic at the live weights."""
        arms = arms_of(self.cluster, self.namespace, self.endpoint, self.serving, self.router)
        live, mirror = shares_of(self.cluster, self.namespace, self.endpoint, arms, self.router)
        by_name = {a.name: a for a in arms}
        n = int(self.rng.poisson(self.rate * dt))
        names = [a for a in live if a in by_name]
        calls: list[tuple[ArmInfo, ArmInfo, int]] = []
        with self.lock:
            if names and n:
                p = np.array([live[a] for a in names])
                split = self.rng.multinomial(n, p / p.sum())
                for a, k in zip(names, split, strict=True):
                    self._serve_arm(by_name[a], int(k))
                    self.sent[a] = self.sent.get(a, 0) + int(k)
            for a, share in mirror.items():
                if a not in by_name or not n:
                    continue
                k = int(self.rng.binomial(n, share))
                self._serve_arm(by_name[a], k)
                self.mirrored[a] = self.mirrored.get(a, 0) + k
                primary = next((by_name[x] for x in names if by_name[x].role in ("baseline", "primary")), None)
                if self.on_mirrored is not None and primary is not None and k:
                    calls.append((primary, by_name[a], k))
            for arm in arms:  # a running arm exports its series, with or without traffic
                for c in self.components:
                    self._arm_series(c, arm)
        for primary, shadow, k in calls:  # outside the lock: scrapes go on meanwhile
            assert self.on_mirrored is not None
            self.on_mirrored(primary, shadow, k)

    def text(self, comp: str) -> str:
        _order, _values, types = self.templates[comp]
        lines: list[str] = []
        with self.lock:
            families: dict[str, list[str]] = {}
            for (c, arm), s in sorted(self.series.items()):
                if c != comp or arm in self.silent:
                    continue
                for (name, labels), value in s.values.items():
                    families.setdefault(_family(name), []).append(f"{name}{_fmt(labels)} {value:g}")
        for family, samples in families.items():
            if family in types:
                lines.append(types[family])
            lines.extend(samples)
        return "\n".join(lines) + "\n"

    # -- serving -----------------------------------------------------------------

    def start(self) -> int:
        expo = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                comp = self.path.strip("/").split("/")[0]
                if comp not in expo.templates:
                    self.send_error(404)
                    return
                body = expo.text(comp).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        threading.Thread(target=self._run, daemon=True).start()
        return int(self._server.server_address[1])

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            self.step(now - last)
            last = now

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def targets(self) -> list[tuple[str, str]]:
        """(job, metrics path) per served component."""
        return [(f"rehearsal-{c}", f"/{c}") for c in self.components]


# ---------------------------------------------------------------------------
# a real Prometheus
# ---------------------------------------------------------------------------


@contextmanager
def prometheus(
    tmp: Path, scrapes: list[tuple[str, str, str]], *, interval: float = 1.0, labels: Mapping[str, str] | None = None
) -> Iterator[str]:
    """A real Prometheus scraping ``(job, host:port, path)`` targets; yields its URL."""
    import socket

    from mlserve.tools import spawn, which

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    lines = [
        "global:",
        f"  scrape_interval: {interval:g}s",
        f"  evaluation_interval: {interval:g}s",
        "scrape_configs:",
    ]
    for job, address, path in scrapes:
        lines += [
            f"  - job_name: {job}",
            f"    metrics_path: {path}",
            "    static_configs:",
            f"      - targets: ['{address}']",
        ]
        if labels:
            lines.append("        labels: {" + ", ".join(f"{k}: '{v}'" for k, v in labels.items()) + "}")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "prometheus.yml").write_text("\n".join(lines) + "\n")
    proc = spawn(
        [
            which("prometheus", env_override="MLSERVE_PROMETHEUS_BIN"),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        log_path=tmp / "prometheus.log",
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("prometheus did not become ready:\n" + (tmp / "prometheus.log").read_text()[-2000:])
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except Exception:
            proc.kill()
