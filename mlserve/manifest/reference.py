"""The manifest reference, generated from the pydantic models so that it cannot drift.

``mlserve schema --format markdown`` prints it; docs/manifest.md is its output (a test
checks that every key has a description and that the file is up to date).
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from mlserve.manifest import models as m
from mlserve.manifest.units import Margin, format_duration, parse_duration, parse_margin

DESCRIPTIONS: dict[str, str] = {
    "project": "The project: its name labels every rendered object.",
    "project.name": "Project name; prefixes cluster and resource names.",
    "project.description": "Free text, shown by `mlserve validate` and in reports.",
    "project.owner": "Team or address responsible for the project.",
    "environments": "Where endpoints run: one table per environment.",
    "environments.NAME.target": "`local` runs real processes on this machine; `kubernetes` renders and deploys stacks.",
    "environments.NAME.description": "Free text.",
    "environments.NAME.endpoints": "Endpoints deployed in this environment (default: all).",
    "environments.NAME.gateway_port": "local: fixed port of the traffic gateway (default: a free port).",
    "environments.NAME.admin_port": "local: fixed port of the gateway's admin API (default: a free port).",
    "environments.NAME.prometheus_port": "local: fixed port of the Prometheus server (default: a free port).",
    "environments.NAME.scrape_interval": (
        "local: how often Prometheus scrapes the gateway and the model servers; kubernetes: the cluster "
        "Prometheus' scrape interval (default 30s there), part of a rollout's settle time."
    ),
    "environments.NAME.router": (
        "kubernetes: what moves traffic between arms: `istio` (VirtualService, default) or `gateway-api` (HTTPRoute)."
    ),
    "environments.NAME.router_convergence": (
        "kubernetes: how long a routing change takes to reach every proxy (default 5s); with the scrape "
        "interval, the settle time after a weight change."
    ),
    "environments.NAME.gateway": "kubernetes, router = 'gateway-api': the Gateway the HTTPRoutes attach to.",
    "environments.NAME.gateway.name": "Name of the Gateway (default `mlserve`).",
    "environments.NAME.gateway.create": "Render the Gateway in the namespace (false: it exists already).",
    "environments.NAME.gateway.class_name": "gatewayClassName of a rendered Gateway (default `istio`).",
    "environments.NAME.gateway.domain": "Hostnames are ENDPOINT.NAMESPACE.DOMAIN (default `example.com`).",
    "environments.NAME.gateway.mirror": (
        "The implementation honours HTTPRoute RequestMirror (true for Istio and Envoy Gateway); false refuses "
        "shadow steps."
    ),
    "environments.NAME.gateway.endpoint_picker": (
        "LLM endpoints: route to one InferencePool per arm with this endpoint picker Service (Gateway API "
        "Inference Extension)."
    ),
    "environments.NAME.faults": "local: fault injection per endpoint and version, for demos and game days.",
    "environments.NAME.alert_speedup": (
        "local: divide every SLO alert window and `for` by this (1h becomes 1m at 60), for demos and tests."
    ),
    "environments.NAME.limits": "local: the gateway's limits; `deploy` applies a change to the running gateway in place.",
    "environments.NAME.limits.max_body_bytes": "Largest request body the gateway accepts (413 beyond).",
    "environments.NAME.limits.upstream_timeout": "How long the gateway waits for a model server's answer (504 after).",
    "environments.NAME.limits.connect_timeout": "How long the gateway waits to connect to a model server.",
    "environments.NAME.limits.body_timeout": "How long a client may take to send its request head, then its body (408).",
    "environments.NAME.limits.shadow_max_inflight": "Mirrored requests in flight at most; more are dropped and counted.",
    "environments.NAME.faults.ENDPOINT.VERSION.latency_ms": "Added latency per request, in milliseconds.",
    "environments.NAME.faults.ENDPOINT.VERSION.error_rate": "Share of requests answered with a synthetic 500.",
    "environments.NAME.faults.ENDPOINT.VERSION.misroute_percent": (
        "Percent of the other variants' requests sent to this version instead: a broken split."
    ),
    "environments.NAME.faults.ENDPOINT.VERSION.first_token_ms": (
        "LLM endpoints: added wait before the first generated token is passed on (a slower prefill), in ms."
    ),
    "environments.NAME.faults.ENDPOINT.VERSION.stream_error_rate": (
        "LLM endpoints: share of streamed answers cut off after their first tokens (a failure mid-stream)."
    ),
    "environments.NAME.serving": "kubernetes: the serving layer, KServe or Seldon Core v1.",
    "environments.NAME.namespace": "kubernetes: namespace of the endpoints.",
    "environments.NAME.cluster": "kubernetes: `aws-eks` renders a cluster layer (VPC, EKS, GPU nodes); `existing` does not.",
    "environments.NAME.cluster_name": "kubernetes: EKS cluster name (default: project and environment).",
    "environments.NAME.kubernetes_version": "kubernetes: EKS version, like `1.31`.",
    "environments.NAME.region": 'kubernetes: cloud region; required with `cluster = "aws-eks"`.',
    "environments.NAME.kube_context": "kubernetes: kubectl context used to apply and read the cluster.",
    "environments.NAME.prometheus_url": "kubernetes: the Prometheus that rollouts query.",
    "environments.NAME.model_store": "kubernetes: storage URI prefix joined to relative `model_uri`s.",
    "environments.NAME.gpu_operator": "kubernetes: install the NVIDIA GPU operator instead of the device plugin.",
    "environments.NAME.backend": "kubernetes: Terraform remote state backend for every layer.",
    "environments.NAME.backend.type": "Backend type.",
    "environments.NAME.backend.config": "Backend settings (bucket, key, region, ...), rendered as quoted strings.",
    "endpoints": "Inference endpoints: one table per endpoint.",
    "endpoints.NAME.runtime": (
        "The model server: MLServer (sklearn, xgboost), Seldon, Triton, vLLM, TorchServe, "
        "`transformers serve` (a CPU LLM server on the local target) or a custom image."
    ),
    "endpoints.NAME.protocol": (
        "`v2` (KServe V2 inference) or `openai` (chat and text completions, streamed with server-sent "
        "events); default `openai` for vllm and transformers, else `v2`."
    ),
    "endpoints.NAME.baseline": "The version in production; `mlserve promote` rewrites it.",
    "endpoints.NAME.description": "Free text.",
    "endpoints.NAME.versions": "Model versions, by name.",
    "endpoints.NAME.versions.VERSION.model_uri": (
        "Model location: a path inside the project, or a storage URI (s3://, gs://, pvc://, hf://, ...)."
    ),
    "endpoints.NAME.versions.VERSION.description": "Free text.",
    "endpoints.NAME.versions.VERSION.image": "Container image overriding the runtime's default.",
    "endpoints.NAME.versions.VERSION.args": "Extra arguments for the model server.",
    "endpoints.NAME.versions.VERSION.env": "Environment variables of the model server.",
    "endpoints.NAME.versions.VERSION.command": "local, runtime `custom`: the command that serves V2 on `{port}`.",
    "endpoints.NAME.versions.VERSION.model_class": "runtime `seldon`: the Python class (`module.Class`).",
    "endpoints.NAME.versions.VERSION.port": "local: fixed port of this version's server.",
    "endpoints.NAME.versions.VERSION.batching": (
        "Server-side adaptive batching (runtimes sklearn, xgboost: MLServer's, locally and on clusters; "
        "torchserve: KServe's batcher)."
    ),
    "endpoints.NAME.versions.VERSION.batching.max_batch_size": "Most requests scored together as one batch (2-4096).",
    "endpoints.NAME.versions.VERSION.batching.max_batch_time": (
        "Longest wait for a batch to fill, e.g. `10ms` (at most 10s); KServe rounds to whole milliseconds."
    ),
    "endpoints.NAME.resources": "Per-replica resources.",
    "endpoints.NAME.resources.cpu": "CPU request and limit (Kubernetes quantity).",
    "endpoints.NAME.resources.memory": "Memory request and limit (Kubernetes quantity).",
    "endpoints.NAME.resources.gpu": "NVIDIA GPUs per replica (`nvidia.com/gpu`).",
    "endpoints.NAME.resources.gpu_type": "GPU model; selects nodes and the node group's instance types.",
    "endpoints.NAME.resources.instance_types": "EC2 instance types of the GPU node group (overrides the `gpu_type` mapping).",
    "endpoints.NAME.autoscaling": "Replica autoscaling.",
    "endpoints.NAME.autoscaling.min_replicas": "Lowest replica count (0 allows scale to zero on KServe).",
    "endpoints.NAME.autoscaling.max_replicas": "Highest replica count.",
    "endpoints.NAME.autoscaling.metric": (
        "What the autoscaler follows; `queue` (requests waiting, `vllm:num_requests_waiting`) and `kv_cache` "
        '(KV-cache use, percent) are vLLM signals for runtime = "vllm".'
    ),
    "endpoints.NAME.autoscaling.target": "Target value of that metric per replica.",
    "endpoints.NAME.slo": "Service level objectives: checked by `mlserve loadtest`, alerted on by burn-rate rules.",
    "endpoints.NAME.slo.p99_latency": "Highest acceptable p99 latency.",
    "endpoints.NAME.slo.error_rate": "Highest acceptable share of failed requests (the error budget).",
    "endpoints.NAME.slo.availability": "The same objective as a share of requests that succeed (`1 - error_rate`).",
    "endpoints.NAME.slo.period": "Period the error budget is counted over; burn rates are relative to it.",
    "endpoints.NAME.monitoring": "Opt in to drift summaries of the endpoint's inputs and predictions (docs/monitoring.md).",
    "endpoints.NAME.monitoring.reference": (
        '`"baseline"` (learn from the baseline\'s first answers) or a profile written by `mlserve profile`.'
    ),
    "endpoints.NAME.monitoring.window": "Sliding window the drift statistics are computed over.",
    "endpoints.NAME.monitoring.min_samples": "Rows a variant's window needs before drift figures are exported.",
    "endpoints.NAME.monitoring.reference_size": 'reference = "baseline": rows learned before drift is measured.',
    "endpoints.NAME.monitoring.bins": "Bins per feature of a learned reference (deciles by default).",
    "endpoints.NAME.monitoring.psi_threshold": "Population stability index above which the drift alerts fire.",
    "endpoints.NAME.monitoring.alert_for": "How long drift must stay above the threshold before the alert fires.",
    "endpoints.NAME.monitoring.positive_threshold": "A prediction above this counts as positive (prediction gate).",
    "endpoints.NAME.monitoring.output": "The V2 output holding the prediction (default: the first output).",
    "endpoints.NAME.monitoring.collector_image": (
        "kubernetes: image of the drift collector that reads the payload logger (mlserve installed)."
    ),
    "endpoints.NAME.input": "The model's declared input, used to synthesise load-test payloads.",
    "endpoints.NAME.input.name": "V2 input tensor name.",
    "endpoints.NAME.input.datatype": "V2 datatype.",
    "endpoints.NAME.input.shape": "V2 shape of one request.",
    "endpoints.NAME.auth": "Who may call the endpoint on a cluster (Istio policies).",
    "endpoints.NAME.auth.allowed_namespaces": "Namespaces whose workloads may call the endpoint.",
    "endpoints.NAME.auth.allowed_principals": "Istio principals (service accounts) that may call the endpoint.",
    "endpoints.NAME.auth.jwt_issuer": "Require a JWT from this issuer (with `jwks_uri`).",
    "endpoints.NAME.auth.jwks_uri": "Where the issuer's signing keys are published.",
    "endpoints.NAME.rollout": "The rollout policy; also the format of `mlserve analyze --policy` files.",
    "endpoints.NAME.rollout.strategy": "How a candidate meets traffic.",
    "endpoints.NAME.rollout.steps": "canary: the candidate's traffic share at each step, percent, strictly increasing.",
    "endpoints.NAME.rollout.interval": "Time between looks at the metrics.",
    "endpoints.NAME.rollout.max_duration": "Deadline; then `on_inconclusive` applies.",
    "endpoints.NAME.rollout.alpha": "Error rate of each decision, valid however often the rollout looks.",
    "endpoints.NAME.rollout.min_requests": "Requests per variant before anything is promoted.",
    "endpoints.NAME.rollout.srm_p_value": "Sample-ratio mismatch threshold: below it the split is broken and the rollout halts.",
    "endpoints.NAME.rollout.max_error_rate": (
        "Hard-failure guard: a candidate failing at least this share of its requests in a step (20 or more "
        "requests, its comparison arm below half of it) is rolled back at once, before the sequential tests decide."
    ),
    "endpoints.NAME.rollout.on_inconclusive": "What the deadline does to an undecided rollout.",
    "endpoints.NAME.rollout.shadow_percent": "shadow: share of requests mirrored to the candidate.",
    "endpoints.NAME.rollout.sticky_header": "ab: request header holding the user key.",
    "endpoints.NAME.rollout.sticky_cookie": "ab: cookie holding the user key, when there is no header.",
    "endpoints.NAME.rollout.ab_duration": "ab: fixed horizon of the experiment.",
    "endpoints.NAME.rollout.shadow_text_match": (
        "shadow of an LLM endpoint: generations agree when equal after normalisation (`exact`) or when "
        "their sentence embeddings are at least `shadow_similarity` alike (`semantic`)."
    ),
    "endpoints.NAME.rollout.shadow_similarity": (
        "shadow of an LLM endpoint: least cosine similarity (all-MiniLM-L6-v2) for two generations to agree."
    ),
    "endpoints.NAME.rollout.shadow_agreement": "shadow: least share of mirrored requests whose predictions "
    "must agree with the baseline's (0 turns the gate off).",
    "endpoints.NAME.rollout.step_min_duration": "canary: least time a step lasts before the weight moves on.",
    "endpoints.NAME.rollout.step_advance": "canary: `evidence` (a promote verdict per step) or `no_harm` "
    "(also after `step_min_duration` with `min_requests` and no harm shown).",
    "endpoints.NAME.rollout.max_extra_gpus": (
        "GPUs the rollout may hold above the stable fleet (`resources.gpu` x replicas per arm); a plan that "
        "needs more is refused before traffic moves (default: no cap)."
    ),
    "endpoints.NAME.rollout.canary_size": (
        "`full` (the candidate runs the fleet's replica range) or `weight` (its share of it, at least one "
        "replica; a control likewise)."
    ),
    "endpoints.NAME.rollout.scale_primary": "Shrink the primary's replica range to its share as it loses traffic.",
    "endpoints.NAME.rollout.control": "canary: what the candidate is compared with. `replica`: a fresh instance "
    "of the baseline version, started for the rollout with the candidate's resources and share of traffic "
    "(costs one more model server locally, one more InferenceService or Seldon predictor on a cluster, while the "
    "rollout runs; steps above 50% other than 100 are refused). `primary`: the baseline serving the rest of the "
    "traffic (no extra cost; a differently loaded comparison, see docs/rollouts.md).",
    "endpoints.NAME.rollout.test_unit": "What the sequential tests count as one piece of evidence: `request` "
    "(every request independent) or `interval` (one bet per look; valid when nearby requests are slow or fail "
    "together, see docs/statistics.md). Unset: `interval` where the candidate is compared with a concurrent "
    'control (`control = "replica"`), `request` elsewhere.',
    "endpoints.NAME.rollout.metrics": "The metrics that gate the rollout (`[[endpoints.NAME.rollout.metrics]]`).",
    "endpoints.NAME.rollout.metrics[].name": "Metric name, unique within the policy.",
    "endpoints.NAME.rollout.metrics[].kind": (
        "`error_rate`, `latency` (a quantile), a custom `ratio`, or `prediction` (share of positive "
        "predictions); for LLM endpoints also `ttft` (time to first token), `inter_token` (a request's mean gap between tokens), `tokens_per_second` (a "
        "request's generated tokens over its duration, higher is better) at a quantile, and "
        "`stream_errors` (streams that failed mid-way, as an error rate)."
    ),
    "endpoints.NAME.rollout.metrics[].quantile": (
        "latency, ttft, inter_token, tokens_per_second: the quantile compared, like 0.99 (for "
        "tokens_per_second a low one such as 0.1: the slowest tenth of requests)."
    ),
    "endpoints.NAME.rollout.metrics[].direction": "Which way is better (default: lower).",
    "endpoints.NAME.rollout.metrics[].margin": (
        'Non-inferiority margin: absolute (0.005) or relative to the baseline ("10%").'
    ),
    "endpoints.NAME.rollout.metrics[].critical": "A critical metric alone is enough to roll back.",
    "endpoints.NAME.rollout.metrics[].description": "Free text.",
    "endpoints.NAME.rollout.metrics[].numerator": "ratio: PromQL for the numerator, with a `{variant}` placeholder.",
    "endpoints.NAME.rollout.metrics[].denominator": "ratio: PromQL for the denominator, with a `{variant}` placeholder.",
}

_VALIDATOR_NAMES = {
    m.check_dns_label: "name",
    m.check_identifier: "identifier",
    m.check_free_text: "text",
    m.check_image: "image",
    m.check_model_uri: "URI or path",
    m.check_url: "URL",
    m.check_region: "region",
    m.check_quantity: "quantity",
    m.check_header_name: "header",
    parse_duration: "duration",
    parse_margin: "margin",
}

_PLACEHOLDERS = {"environments": "NAME", "endpoints": "NAME", "versions": "VERSION", "faults": "ENDPOINT.VERSION"}


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    meta: list[Any] = []
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        annotation, meta = args[0], meta + list(args[1:])
    return annotation, meta


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The nested model of a field and how its key path continues ('.', '.NAME.', '[].')."""
    annotation, _ = _strip(annotation)
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, "."
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found, sep = _model_of(arg)
            if found is not None:
                return found, sep
    if origin is list:
        found, _sep = _model_of(typing.get_args(annotation)[0])
        return found, "[]."
    if origin is dict:
        inner, _ = _strip(typing.get_args(annotation)[1])
        if typing.get_origin(inner) is dict:
            found, _sep = _model_of(typing.get_args(inner)[1])
            return found, ".*.*."
        found, _sep = _model_of(inner)
        return found, ".*."
    return None, ""


def type_name(annotation: Any, extra_meta: list[Any] | None = None) -> str:
    annotation, meta = _strip(annotation)
    for item in [*(extra_meta or []), *meta]:
        func = getattr(item, "func", None)
        if func in _VALIDATOR_NAMES:
            return _VALIDATOR_NAMES[func]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f'`"{a}"`' if isinstance(a, str) else f"`{a}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " \\| ".join(parts)
    if origin is list:
        return f"list of {type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return f"table of {type_name(typing.get_args(annotation)[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    if annotation is Margin:
        return "margin"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo, type_text: str) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined or value is None:
        return "-"
    if isinstance(value, BaseModel):
        return "table"
    if type_text == "duration" and isinstance(value, int | float):
        return f'`"{format_duration(value)}"`'
    if isinstance(value, Margin):
        return f'`"{value}"`' if value.relative else f"`{value}`"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return "see example"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, dict) and not value:
        return "`{}`"
    return f"`{value}`"


def iter_keys(model: type[BaseModel] = m.Manifest, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, type, default) for every key of the manifest, depth first."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        tname = type_name(field.annotation, list(field.metadata))
        rows.append((key, tname, _default(field, tname)))
        nested, sep = _model_of(field.annotation)
        if nested is not None:
            placeholder = _PLACEHOLDERS.get(name, "NAME")
            cont = sep.replace("*.*", placeholder).replace("*", placeholder)
            rows.extend(iter_keys(nested, key + cont))
    return rows


def reference_markdown() -> str:
    lines = [
        "# mlserve.toml reference",
        "",
        "Generated from mlserve's manifest models by `mlserve schema --format markdown`; do not edit by hand.",
        'Unknown keys are errors. Durations are strings like `"250ms"`, `"30s"`, `"5m"`, `"1h"`;',
        'margins are absolute numbers (`0.005`) or percentages of the baseline (`"10%"`); names are',
        "DNS-1123 labels (lowercase letters, digits and `-`).",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for key, tname, default in iter_keys():
        lines.append(f"| `{key}` | {tname} | {default} | {DESCRIPTIONS.get(key, '')} |")
    return "\n".join(lines) + "\n"


def json_schema() -> dict[str, Any]:
    schema = m.Manifest.model_json_schema(mode="validation")
    schema["$id"] = "https://mlserve.dev/schema/mlserve.toml.json"
    schema["title"] = "mlserve.toml"
    return schema
