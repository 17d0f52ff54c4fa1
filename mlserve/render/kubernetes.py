"""The kubernetes folder of an environment: per-endpoint objects plus one traffic patch.

Layout (under ``stacks/ENV/kubernetes/``)::

    kustomization.yaml     resources + the traffic patch
    namespace.yaml         Namespace, PeerAuthentication (STRICT), NetworkPolicy
    endpoints/NAME.yaml    serving objects, router Service, DestinationRule,
                           VirtualService, AuthorizationPolicy, PDBs
    traffic.yaml           weights, mirroring and header matches: the only file a
                           traffic change touches

Each running version is its own workload (one InferenceService per version, or one
SeldonDeployment predictor per version), labelled ``mlserve.io/endpoint`` and
``mlserve.io/version``. A router Service selects all of an endpoint's pods and the
VirtualService splits, mirrors or matches between DestinationRule subsets, so Istio
metrics carry the version of every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlserve.errors import ManifestError, UsageError
from mlserve.manifest.models import Endpoint, Environment, GatewayRef, Manifest, Version
from mlserve.manifest.sizing import arm_replicas
from mlserve.metrics.buckets import ISTIO_BUCKETS_ANNOTATION, istio_buckets_annotation
from mlserve.monitoring.k8s import collector_name, logger_url
from mlserve.render import engine
from mlserve.render.context import DEFAULT_GPU_TYPE, GPU_LABEL, GPU_TAINT_KEY, GPU_TYPE_LABEL
from mlserve.render.traffic import EndpointTraffic

VARIANT_HEADER = "x-mlserve-variant"
DEFAULT_PROMETHEUS = "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
# Istio names a workload's metrics after these pod labels, so every request in
# istio_requests_total carries its endpoint and version.
CANONICAL_NAME = "service.istio.io/canonical-name"
CANONICAL_REVISION = "service.istio.io/canonical-revision"
# a control arm's pods: the version it serves (its mlserve.io/version label is the arm's name)
MODEL_VERSION_LABEL = "mlserve.io/model-version"


VLLM_IMAGE = "docker.io/vllm/vllm-openai:v0.11.0"


def vllm_selector(namespace: str, endpoint: str, version: str) -> str:
    """vLLM's own series of one version: its first served model name is "{endpoint}-{version}"
    (rendered below), and vLLM labels every vllm:* series with it as ``model_name``."""
    return f'namespace="{namespace}",model_name="{endpoint}-{version}"'


def scaling_query(metric: str, namespace: str, endpoint: str, version: str) -> str:
    """PromQL for KEDA: requests per second, or mean in-flight requests (Little's law:
    concurrency = arrival rate x time in system = summed latency per second); for vLLM
    versions the LLM signals: requests waiting for a slot, or KV-cache use (percent)."""
    if metric == "queue":
        return f"sum(vllm:num_requests_waiting{{{vllm_selector(namespace, endpoint, version)}}})"
    if metric == "kv_cache":
        return f"100 * avg(vllm:kv_cache_usage_perc{{{vllm_selector(namespace, endpoint, version)}}})"
    sel = (
        f'reporter="destination",destination_workload_namespace="{namespace}",'
        f'destination_canonical_service="{endpoint}",destination_canonical_revision="{version}"'
    )
    if metric == "rps":
        return f"sum(rate(istio_requests_total{{{sel}}}[1m]))"
    return f"sum(rate(istio_request_duration_milliseconds_sum{{{sel}}}[1m])) / 1000"


def needs_keda(endpoint: Endpoint) -> bool:
    """CPU and memory scale with the HPA; concurrency, rps and the LLM signals need KEDA."""
    return endpoint.autoscaling.metric in ("concurrency", "rps", "queue", "kv_cache")


LLM_ARM_SERVICE_SUFFIX = "-arm"  # an LLM arm's own Service behind the Gateway API (no endpoint picker)


def llm_service(endpoint: Endpoint, serving: str) -> bool:
    """vLLM versions on KServe are LLMInferenceServices (one per version)."""
    return endpoint.runtime == "vllm" and serving == "kserve"


def inference_pools(endpoint: Endpoint, env: Environment) -> bool:
    """Behind the Gateway API with an endpoint picker, each arm of an LLM endpoint
    (``runtime = "vllm"``) is an InferencePool."""
    picker = env.gateway.endpoint_picker if env.gateway is not None else None
    return endpoint.runtime == "vllm" and env.router_kind == "gateway-api" and bool(picker)


def compares_answers(endpoint: Endpoint, serving: str) -> bool:
    """Whether the stack renders the shadow comparison path for an endpoint: its strategy has a
    shadow step and its arms have a payload logger at all (KServe's LLMInferenceService has
    none). A predictor has one logger: with monitoring on too, it posts everything to the
    comparator, which passes it on to the drift collector (``--forward``). Elsewhere a shadow
    look is held (mlserve.targets.kube_shadow)."""
    shadow = endpoint.rollout.strategy in ("shadow", "shadow+canary")
    return shadow and not llm_service(endpoint, serving)


@dataclass(frozen=True)
class RuntimeSpec:
    """How a runtime is served on each backend."""

    image: str
    model_format: str | None  # KServe modelFormat (None: a custom container)
    kserve_runtime: str | None
    protocol: str  # KServe protocolVersion
    seldon_implementation: str | None  # Seldon prepackaged server (None: custom container)
    args: tuple[str, ...] = ()


RUNTIMES: dict[str, RuntimeSpec] = {
    "sklearn": RuntimeSpec("docker.io/seldonio/mlserver:1.7.1", "sklearn", "kserve-mlserver", "v2", "SKLEARN_SERVER"),
    "xgboost": RuntimeSpec("docker.io/seldonio/mlserver:1.7.1", "xgboost", "kserve-mlserver", "v2", "XGBOOST_SERVER"),
    "triton": RuntimeSpec(
        "nvcr.io/nvidia/tritonserver:24.10-py3",
        "triton",
        "kserve-tritonserver",
        "v2",
        "TRITON_SERVER",
        args=("--model-store=/mnt/models", "--http-port=8080", "--grpc-port=9000", "--strict-readiness=true"),
    ),
    "vllm": RuntimeSpec(
        "docker.io/kserve/huggingfaceserver:v0.14.1-gpu",
        "huggingface",
        "kserve-huggingfaceserver",
        "v2",
        None,
        args=("--backend=vllm", "--http_port=8080"),
    ),
    # `transformers serve` has no published image: on a cluster a transformers version runs in
    # KServe's Hugging Face server (the same transformers backend, OpenAI routes under /openai/v1).
    "transformers": RuntimeSpec(
        "docker.io/kserve/huggingfaceserver:v0.14.1",
        "huggingface",
        "kserve-huggingfaceserver",
        "v2",
        None,
        args=("--backend=huggingface", "--http_port=8080"),
    ),
    "torchserve": RuntimeSpec("docker.io/pytorch/torchserve-kfs:0.12.0", "pytorch", "kserve-torchserve", "v1", None),
    "seldon": RuntimeSpec("docker.io/seldonio/seldon-core-s2i-python3:1.17.1", None, None, "v1", None),
    "custom": RuntimeSpec("", None, None, "v2", None),
}
SELDON_VLLM_IMAGE = "docker.io/vllm/vllm-openai:v0.6.3"

# Where each runtime serves Prometheus metrics (Istio merges them with its own).
METRICS_PORTS = {"sklearn": 8082, "xgboost": 8082, "triton": 8002, "torchserve": 8082}

KSERVE_PORT = 8080
SELDON_MODEL_PORT = 9000  # where the Seldon executor calls the model container
SELDON_PORT = 8000  # the Seldon executor in every predictor pod


def render(
    jenv: Any,
    base: dict[str, Any],
    manifest: Manifest,
    env_name: str,
    traffic: dict[str, EndpointTraffic],
    root: Path | None = None,
) -> dict[str, str]:
    env = manifest.environments[env_name]
    endpoints = manifest.endpoints_in(env_name)
    namespace = env.namespace or ""
    serving = env.serving or "kserve"
    router = env.router_kind
    gateway = (env.gateway or GatewayRef()).model_dump()
    eps = [
        endpoint_context(manifest, env_name, name, ep, traffic[name], serving, namespace)
        for name, ep in sorted(endpoints.items())
    ]
    if router == "gateway-api":
        for e in eps:
            gateway_routes(e, serving, gateway, env_name, pools=inference_pools(endpoints[e["name"]], env))
    shadowed = [e["name"] for e in eps if e["shadow_logger"]]
    forwards = {
        name: f"http://{collector_name(name)}.{namespace}.svc.cluster.local"
        for name in shadowed
        if endpoints[name].monitoring is not None
    }
    comparator = comparator_context(shadowed, namespace, forwards) if shadowed else None
    allowed = sorted({ns for e in eps for ns in e["auth"]["namespaces"]} | {namespace})
    ctx = dict(
        base, endpoints=eps, namespace=namespace, serving=serving, ingress_namespaces=allowed, router=router,
        gateway=gateway, comparator=comparator,
    )  # fmt: skip
    out: dict[str, str] = {}
    out["namespace.yaml"] = engine.render_template(jenv, "kubernetes/namespace.yaml.j2", ctx)
    if router == "gateway-api" and gateway["create"]:
        out["namespace.yaml"] += "---\n" + engine.render_template(jenv, "kubernetes/gateway/gateway.yaml.j2", ctx)
    workload = (
        "kubernetes/kserve/inferenceservice.yaml.j2"
        if serving == "kserve"
        else "kubernetes/seldon/seldondeployment.yaml.j2"
    )
    for e in eps:
        ectx = dict(ctx, ep=e)
        docs = []
        if serving == "kserve":
            template = "kubernetes/kserve/llminferenceservice.yaml.j2" if e["llm_service"] else workload
            for v in e["variants"]:
                docs.append(engine.render_template(jenv, template, dict(ectx, v=v)))
        else:
            docs.append(engine.render_template(jenv, workload, ectx))
        docs.append(engine.render_template(jenv, "kubernetes/istio/router.yaml.j2", ectx))
        if router == "gateway-api":
            docs.append(engine.render_template(jenv, "kubernetes/gateway/httproute.yaml.j2", ectx))
            per_arm = (
                "kubernetes/gateway/inferencepool.yaml.j2"
                if e["inference_pools"]
                else "kubernetes/gateway/armservice.yaml.j2"
                if e["arm_services"]
                else None
            )
            if per_arm is not None:
                for v in e["variants"]:
                    docs.append(engine.render_template(jenv, per_arm, dict(ectx, v=v)))
        docs.append(engine.render_template(jenv, "kubernetes/istio/auth.yaml.j2", ectx))
        for v in e["variants"]:
            docs.append(engine.render_template(jenv, "kubernetes/pdb.yaml.j2", dict(ectx, v=v)))
        out[f"endpoints/{e['name']}.yaml"] = "---\n".join(d for d in docs if d.strip())
    out["traffic.yaml"] = engine.render_template(jenv, "kubernetes/traffic.yaml.j2", ctx)
    from mlserve.monitoring.k8s import monitoring_files

    monitoring = monitoring_files(manifest, env_name, root or Path("."), "seldon" if serving == "seldon" else "istio")
    out.update(monitoring)
    resources = ["namespace.yaml", *(f"endpoints/{e['name']}.yaml" for e in eps), *sorted(monitoring)]
    if ctx["comparator"]:
        out["comparator.yaml"] = engine.render_template(jenv, "kubernetes/shadow/comparator.yaml.j2", ctx)
        resources.append("comparator.yaml")
    out["kustomization.yaml"] = engine.render_template(
        jenv, "kubernetes/kustomization.yaml.j2", dict(ctx, resources=resources)
    )
    return out


def resolve_model_uri(manifest: Manifest, env_name: str, ep_name: str, version_name: str, uri: str) -> str:
    """Storage URIs pass through; project paths live under the environment's model store."""
    if "://" in uri and not uri.startswith("file://"):
        return uri
    store = manifest.environments[env_name].model_store
    if store is None or uri.startswith(("/", "file://")):
        raise ManifestError(
            [
                f"mlserve.toml: endpoints.{ep_name}.versions.{version_name}.model_uri: {uri!r} is a local path; "
                f"set environments.{env_name}.model_store (e.g. s3://bucket) so the cluster can fetch it"
            ]
        )
    return f"{store.rstrip('/')}/{uri}"


# Runtimes whose KServe server answers the V2 model-readiness route for the model it serves.
MODEL_READY_ON_KSERVE = ("sklearn", "xgboost", "vllm")


def _probe(runtime: str, serving: str, spec: RuntimeSpec, model_name: str) -> dict[str, Any]:
    """Health checks per runtime. Readiness is the *model's*: a pod enters the Service's
    endpoints (and gets traffic) only once its model is loaded. On KServe the V2 route
    ``/v2/models/NAME/ready`` says so (NAME: the InferenceService for MLServer, which KServe
    starts with ``MLSERVER_MODEL_NAME={{.Name}}``; the endpoint for vLLM, given
    ``--model_name``); Triton with ``--strict-readiness`` and MLServer's server-wide
    ``/v2/health/ready`` answer ready only when every model is. vLLM on Seldon: ``/health``;
    containers whose API mlserve does not know: a TCP check."""
    port = KSERVE_PORT if serving == "kserve" else SELDON_MODEL_PORT
    if runtime == "vllm":
        return {"port": port, "ready": "/health", "live": "/health"}
    v2 = spec.model_format is not None if serving == "kserve" else spec.seldon_implementation is not None
    if v2 and serving == "kserve" and runtime in MODEL_READY_ON_KSERVE:
        return {"port": port, "ready": f"/v2/models/{model_name}/ready", "live": "/v2/health/live"}
    if v2:
        return {"port": port, "ready": "/v2/health/ready", "live": "/v2/health/live"}
    return {"port": port, "ready": None, "live": None}


# How long a terminating pod keeps serving: the preStop pause covers the time Istio and the
# Service need to stop sending it new requests; the grace period adds the longest request
# it may still be answering (an LLM generation takes longer than a tabular prediction).
PRE_STOP_SECONDS = 10
REQUEST_BUDGET_SECONDS = {"light": 30, "heavy": 120}


def drain_context(manifest: Manifest, env_name: str, ep: Endpoint, serving: str) -> dict[str, Any]:
    heavy = ep.resources.gpu > 0 or ep.runtime in ("vllm", "triton", "torchserve")
    budget = REQUEST_BUDGET_SECONDS["heavy" if heavy else "light"]
    major, minor = (int(x) for x in manifest.environments[env_name].kubernetes_version.split("."))
    return {
        "pre_stop": PRE_STOP_SECONDS,
        "grace": PRE_STOP_SECONDS + budget + 5,
        # the sleep action needs Kubernetes 1.30 and a schema that knows it (Seldon 1.17's does not)
        "sleep_action": serving == "kserve" and (major, minor) >= (1, 30),
        "max_surge": 1,
        "max_unavailable": 0,
    }


def _probe_delays(ep: Endpoint) -> dict[str, int]:
    # Large models take minutes to load: a startup probe holds liveness off until then.
    heavy = ep.resources.gpu > 0 or ep.runtime in ("vllm", "triton", "torchserve")
    return {"startup_failures": 60 if heavy else 30, "period": 10}


def _variant(
    manifest: Manifest,
    env_name: str,
    ep_name: str,
    ep: Endpoint,
    version: str,
    role: str,
    serving: str,
    arm: str | None = None,
) -> dict[str, Any]:
    """One workload. ``arm``: a rollout's control, a second workload of ``version`` under its
    own name (its subset, predictor, Istio revision and metrics are the arm's)."""
    v: Version = ep.versions[version]
    spec = RUNTIMES[ep.runtime]
    image = v.image or spec.image
    if serving == "seldon" and ep.runtime == "vllm" and not v.image:
        image = SELDON_VLLM_IMAGE
    uri = resolve_model_uri(manifest, env_name, ep_name, version, v.model_uri)
    args = list(spec.args)
    if ep.runtime == "vllm" and serving == "kserve":
        # vLLM's OpenAI server itself. The first served name labels its metrics (one series
        # per version); the endpoint's name is what clients send as "model".
        image = v.image or VLLM_IMAGE
        args = [
            "--model=/mnt/models",
            f"--port={KSERVE_PORT}",
            "--served-model-name",
            f"{ep_name}-{version}",
            ep_name,
        ]
    elif ep.runtime == "vllm":
        args = ["--model=/mnt/models", "--port=9000", "--served-model-name", f"{ep_name}-{version}", ep_name]
    elif ep.runtime == "transformers":
        args = (
            [f"--model_name={ep_name}", *args]
            if serving == "kserve"
            else ["--model_dir=/mnt/models", f"--model_name={ep_name}", "--backend=huggingface", "--http_port=9000"]
        )
    if ep.runtime == "seldon" and serving == "kserve":
        args = [v.model_class or "Model", "--http-port", str(KSERVE_PORT)]
    args += list(v.args)
    env = [{"name": k, "value": val} for k, val in sorted(v.env.items())]
    namespace = manifest.environments[env_name].namespace or ""
    # one payload logger per arm: with monitoring and a shadow step both on, it feeds the comparator
    both = ep.monitoring is not None and compares_answers(ep, serving)
    comparator_url = comparator_base_url(namespace)
    if ep.runtime == "seldon" and serving == "seldon" and v.model_class:
        env.append({"name": "MODEL_NAME", "value": v.model_class})
    batcher = None
    if v.batching is not None:
        if ep.runtime in ("sklearn", "xgboost"):
            # MLServer reads its model settings from MLSERVER_MODEL_* variables too: its own
            # adaptive batching, which speaks V2 (KServe's batcher speaks only v1).
            env += [
                {"name": "MLSERVER_MODEL_MAX_BATCH_SIZE", "value": str(v.batching.max_batch_size)},
                {"name": "MLSERVER_MODEL_MAX_BATCH_TIME", "value": f"{v.batching.max_batch_time:g}"},
            ]
        elif serving == "kserve":
            batcher = {"maxBatchSize": v.batching.max_batch_size, "maxLatency": _batch_ms(v.batching.max_batch_time)}
        else:
            raise ManifestError(
                [
                    f"mlserve.toml: endpoints.{ep_name}.versions.{version}.batching: runtime {ep.runtime!r} batches "
                    f"through KServe's batcher; environment {env_name!r} serves with Seldon Core"
                ]
            )
    name = arm or version  # the workload's own name among the endpoint's arms
    labels = {
        "mlserve.io/endpoint": ep_name,
        "mlserve.io/version": name,
        CANONICAL_NAME: ep_name,
        CANONICAL_REVISION: name,
    }
    if arm is not None:
        labels[MODEL_VERSION_LABEL] = version
    return {
        "probe": _probe(ep.runtime, serving, spec, ep_name if ep.runtime == "vllm" else f"{ep_name}-{name}"),
        "version": name,
        "model_version": version,
        "name": f"{ep_name}-{name}",
        "role": role,
        "description": v.description
        or (f"control of the rollout: a fresh instance of {version}" if arm is not None else ""),
        "image": image,
        "model_uri": uri,
        "args": args,
        "env": env,
        "custom_container": spec.model_format is None or (ep.runtime == "vllm" and serving == "kserve"),
        "scaling_query": scaling_query(ep.autoscaling.metric, namespace, ep_name, name),
        "pod_labels": labels,
        "seldon_implementation": spec.seldon_implementation,
        # monitoring: the payload logger posts requests and responses to the drift collector,
        # through the shadow comparator when the endpoint also has one (it passes them on)
        "logger_url": logger_url(ep_name, version, namespace) if ep.monitoring is not None and not both else None,
        "shadow_logger_url": comparator_url + (f"/log/{ep_name}/{version}" if both else ""),
        "shadow_logger_mode": "all" if both else "response",
        "batcher": batcher,
    }


def _batch_ms(seconds: float) -> int:
    """KServe's maxLatency is whole milliseconds."""
    return max(1, round(seconds * 1000))


def endpoint_context(
    manifest: Manifest,
    env_name: str,
    name: str,
    ep: Endpoint,
    traffic: EndpointTraffic,
    serving: str,
    namespace: str,
) -> dict[str, Any]:
    spec = RUNTIMES[ep.runtime]
    res = ep.resources
    requests: dict[str, Any] = {"cpu": res.cpu, "memory": res.memory}
    limits: dict[str, Any] = {"memory": res.memory}
    # CPU limits throttle latency-sensitive servers; memory and GPUs are hard limits.
    limits["cpu"] = res.cpu
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, str]] = []
    if res.gpu > 0:
        requests["nvidia.com/gpu"] = str(res.gpu)
        limits["nvidia.com/gpu"] = str(res.gpu)
        if res.gpu_type:
            node_selector[GPU_TYPE_LABEL] = res.gpu_type
        else:
            node_selector[GPU_LABEL] = "true"
        tolerations.append({"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"})
    variants = [_variant(manifest, env_name, name, ep, traffic.baseline, "baseline", serving)]
    if traffic.control is not None:
        variants.append(_variant(manifest, env_name, name, ep, traffic.baseline, "control", serving, traffic.control))
    if traffic.candidate is not None:
        variants.append(_variant(manifest, env_name, name, ep, traffic.candidate, "candidate", serving))
    for v in variants:
        share = traffic.weight(v["version"])
        if v["role"] == "candidate" and traffic.mode == "shadow":
            share = traffic.shadow
        v["min_replicas"], v["max_replicas"] = arm_replicas(ep, v["role"], share)
    host = f"{name}.{namespace}.svc.cluster.local"
    port = KSERVE_PORT if serving == "kserve" else SELDON_PORT
    return {
        "name": name,
        "description": ep.description,
        "runtime": ep.runtime,
        "llm_service": llm_service(ep, serving),
        "host": host,
        "port": port,
        "metrics_port": METRICS_PORTS.get(ep.runtime, KSERVE_PORT) if serving == "kserve" else SELDON_PORT,
        "metrics_path": "/metrics" if serving == "kserve" else "/prometheus",
        "model_format": spec.model_format,
        "kserve_runtime": spec.kserve_runtime,
        "protocol": spec.protocol,
        "seldon_protocol": "seldon" if ep.runtime == "seldon" else "v2",
        "requests": dict(sorted(requests.items())),
        "limits": dict(sorted(limits.items())),
        "gpu": res.gpu,
        "gpu_type": res.gpu_type or (DEFAULT_GPU_TYPE if res.gpu else None),
        "node_selector": node_selector,
        "tolerations": tolerations,
        "autoscaling": {
            "min": ep.autoscaling.min_replicas,
            "max": ep.autoscaling.max_replicas,
            "metric": ep.autoscaling.metric,
            "target": ep.autoscaling.target,
            "autoscaler": "keda" if needs_keda(ep) else "hpa",
            "prometheus": manifest.environments[env_name].prometheus_url or DEFAULT_PROMETHEUS,
        },
        "probes": _probe_delays(ep),
        "drain": drain_context(manifest, env_name, ep, serving),
        "variants": variants,
        "auth": {
            "namespaces": sorted(set(ep.auth.allowed_namespaces)),
            "principals": sorted(set(ep.auth.allowed_principals)),
            "jwt_issuer": ep.auth.jwt_issuer,
            "jwks_uri": ep.auth.jwks_uri,
        },
        "sticky_header": ep.rollout.sticky_header,
        # KServe arms are read from Istio's sidecar histograms: give them mlserve's fine buckets
        "histogram_buckets": istio_buckets_annotation() if serving == "kserve" else None,
        "histogram_annotation": ISTIO_BUCKETS_ANNOTATION,
        # payload logging of every arm's answers to the shadow comparator (see compares_answers)
        "shadow_logger": compares_answers(ep, serving),
        "traffic": dict(traffic_context(traffic, host), sticky_cookie=ep.rollout.sticky_cookie),
    }


COMPARATOR_IMAGE = "docker.io/library/python:3.12-slim"
COMPARATOR_SERVICE = "mlserve-comparator"


def comparator_base_url(namespace: str) -> str:
    """Where the arms' payload loggers and mlserve's looks reach a namespace's shadow comparator."""
    return f"http://{COMPARATOR_SERVICE}.{namespace}.svc.cluster.local"


def comparator_context(endpoints: list[str], namespace: str, forwards: dict[str, str] | None = None) -> dict[str, Any]:
    """The shadow comparator of a namespace: its code (shipped verbatim in a ConfigMap), limits,
    and ``forwards`` (endpoint -> its drift collector's base URL, for endpoints with monitoring)."""
    from pathlib import Path

    import mlserve

    root = Path(mlserve.__file__).parent
    return {
        "endpoints": endpoints,
        "forward_args": [arg for ep, url in sorted((forwards or {}).items()) for arg in ("--forward", f"{ep}={url}")],
        "image": COMPARATOR_IMAGE,
        "window": 30,
        "max_pending": 50000,
        "url": comparator_base_url(namespace),
        "sources": {
            "answers.py": (root / "answers.py").read_text(encoding="utf-8"),
            "comparator.py": (root / "targets" / "comparator.py").read_text(encoding="utf-8"),
        },
    }


def gateway_routes(e: dict[str, Any], serving: str, gateway: dict[str, Any], env_name: str, *, pools: bool) -> None:
    """HTTPRoute backends of one endpoint's arms (router = "gateway-api"), live and stable.

    Each arm is reached through its own Service: KServe RawDeployment's ``ISVC-predictor``
    (port 80), the Seldon predictor's ``SDEP-PREDICTOR`` (the executor, port 8000), or for an
    LLM endpoint with an endpoint picker (``pools``, from :func:`inference_pools`) its own
    InferencePool."""
    e["inference_pools"] = pools
    # an LLMInferenceService's own Service speaks TLS on 8000 to a vLLM that KServe configures;
    # mlserve's vLLM listens on the endpoint's port, so each arm gets a Service of its own
    e["arm_services"] = bool(e["llm_service"]) and not pools
    for v in e["variants"]:
        v["arm_service"] = f"{v['name']}{LLM_ARM_SERVICE_SUFFIX}"

    def backend(v: dict[str, Any], weight: int) -> dict[str, Any]:
        if pools:
            return {"kind": "InferencePool", "name": v["name"], "version": v["version"], "weight": weight, "port": 0}
        if e["arm_services"]:
            return {"kind": "Service", "name": v["arm_service"], "version": v["version"],
                    "weight": weight, "port": 80}  # fmt: skip
        if serving == "seldon":
            return {"kind": "Service", "name": f"{e['name']}-{v['version']}", "version": v["version"],
                    "weight": weight, "port": SELDON_PORT}  # fmt: skip
        return {"kind": "Service", "name": f"{v['name']}-predictor", "version": v["version"], "weight": weight,
                "port": 80}  # fmt: skip

    def routes(t: dict[str, Any], variants: list[dict[str, Any]]) -> dict[str, Any]:
        out = dict(t)
        out["backends"] = [backend(v, int(t["weights"].get(v["version"], 0))) for v in variants]
        live = [b for b in out["backends"] if b["weight"] > 0] or out["backends"][:1]
        out["live_backends"] = live if len(live) > 0 else []
        mirror = next((b for b in out["backends"] if b["version"] == t["mirror"]), None)
        if mirror is not None and not gateway.get("mirror", True):
            raise UsageError(
                f"endpoint {e['name']!r}: a shadow step mirrors requests, and environments.{env_name}.gateway.mirror "
                "is false (the Gateway API implementation does not support HTTPRoute RequestMirror)",
                hint="use strategy = 'canary' on this environment, or an implementation that mirrors (Istio, Envoy Gateway)",
            )
        out["mirror_backend"] = mirror
        return out

    e["traffic"] = routes(e["traffic"], e["variants"])
    first = e["variants"][:1]
    stable = {"mode": "stable", "weights": {first[0]["version"]: 100}, "mirror": None, "mirror_percent": 0,
              "header_match": False, "variant_header": VARIANT_HEADER, "sticky_cookie": None}  # fmt: skip
    e["stable_traffic"] = routes(stable, first)


def traffic_context(t: EndpointTraffic, host: str) -> dict[str, Any]:
    """The VirtualService routes of one endpoint for a traffic state."""
    weights: list[dict[str, Any]] = [{"subset": v, "weight": t.weight(v)} for v in t.arms]
    live = [w for w in weights if int(w["weight"]) > 0] or [{"subset": t.baseline, "weight": 100}]
    return {
        "mode": t.mode,
        "baseline": t.baseline,
        "candidate": t.candidate,
        "control": t.control,
        "routes": live,
        "weights": {v: t.weight(v) for v in t.arms},
        "mirror": t.candidate if (t.candidate is not None and t.shadow > 0) else None,
        "mirror_percent": t.shadow,
        "header_match": t.mode == "ab" and t.candidate is not None,
        "variant_header": VARIANT_HEADER,
        "sticky_cookie": None,
    }
