"""Pydantic models of ``mlserve.toml``.

Every model forbids unknown keys. Names that end up in Kubernetes objects, Terraform
resource names or file paths are DNS-1123 labels: that is both what Kubernetes needs
and the first line of defence against template injection. Free text (descriptions,
environment values, arguments) is allowed and is quoted by the render filters.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from mlserve.manifest.units import Margin, parse_duration, parse_margin
from mlserve.stats.drift import PSI_SIGNIFICANT

# ---------------------------------------------------------------------------
# Value types
# ---------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            "must be a DNS-1123 label: lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit, at most 63 characters (got {value!r})"
        )
    return value


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"must be an identifier: letters, digits and '_', not starting with a digit (got {value!r})")
    return value


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def check_free_text(value: str) -> str:
    """Free text may hold quotes, braces and newlines (renderers quote it) but no NULs
    or terminal control characters, and it is bounded in size."""
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    if len(value) > 4096:
        raise ValueError(f"must be at most 4096 characters (got {len(value)})")
    return value


_IMAGE = re.compile(
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def check_image(value: str) -> str:
    if len(value) > 255 or not _IMAGE.match(value):
        raise ValueError(f"must be a container image reference like 'registry/name:tag' (got {value!r})")
    return value


MODEL_URI_SCHEMES = ("s3", "gs", "azure", "https", "http", "pvc", "hf", "oci", "file")
_URI_SAFE = re.compile(r"^[A-Za-z0-9._~:/@%+=-]+$")


def check_model_uri(value: str) -> str:
    """A storage URI (``s3://...``) or a path relative to the project (``models/fraud/v1``).

    Relative paths may not climb out of the project with ``..``; absolute paths are
    allowed because they are explicit.
    """
    if not value or len(value) > 1024 or not _URI_SAFE.match(value):
        raise ValueError(
            "must be a storage URI (s3://, gs://, pvc://, hf://, ...) or a path inside the project, "
            f"without spaces, quotes or shell characters (got {value!r})"
        )
    if "://" in value:
        scheme = value.split("://", 1)[0]
        if scheme not in MODEL_URI_SCHEMES:
            raise ValueError(f"unsupported URI scheme {scheme!r}; use one of {', '.join(MODEL_URI_SCHEMES)}")
        if scheme != "file":
            return value
    if ".." in value.split("/"):
        raise ValueError(f"must not contain '..': model paths stay inside the project (got {value!r})")
    return value


def check_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or not _URI_SAFE.match(value):
        raise ValueError(f"must be an http(s) URL (got {value!r})")
    return value


_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")


def check_region(value: str) -> str:
    if not _REGION.match(value):
        raise ValueError(f"must be a cloud region like 'eu-west-1' (got {value!r})")
    return value


_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


def check_quantity(value: str | int | float) -> str:
    text = str(value)
    if isinstance(value, bool) or not _QUANTITY.match(text):
        raise ValueError(f"must be a Kubernetes quantity like '500m', '2' or '4Gi' (got {value!r})")
    return text


_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def check_header_name(value: str) -> str:
    if not _HEADER.match(value):
        raise ValueError(f"must be an HTTP header name (letters, digits, '-') (got {value!r})")
    return value.lower()


DnsLabel = Annotated[str, AfterValidator(check_dns_label)]
Identifier = Annotated[str, AfterValidator(check_identifier)]
FreeText = Annotated[str, AfterValidator(check_free_text)]
Image = Annotated[str, AfterValidator(check_image)]
ModelUri = Annotated[str, AfterValidator(check_model_uri)]
Url = Annotated[str, AfterValidator(check_url)]
Region = Annotated[str, AfterValidator(check_region)]
Quantity = Annotated[
    str,
    BeforeValidator(check_quantity),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"}, {"type": "number"}]}
    ),
]
HeaderName = Annotated[str, AfterValidator(check_header_name)]
# JSON Schema (for editors) describes what a person writes, not the parsed value.
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)$"}, {"type": "number", "minimum": 0}]}
    ),
]
MarginValue = Annotated[
    Margin,
    BeforeValidator(parse_margin),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?%$"}, {"type": "number", "minimum": 0}]}),
]
Percent = Annotated[int, Field(ge=0, le=100)]
Port = Annotated[int, Field(ge=1024, le=65535)]


class KeyProblem(ValueError):
    """A cross-field problem that belongs to one key below the model being validated."""

    def __init__(self, key: str | tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.key: tuple[str | int, ...] = (key,) if isinstance(key, str) else key


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------------------
# Project and environments
# ---------------------------------------------------------------------------


class Project(Strict):
    name: DnsLabel
    description: FreeText = ""
    owner: FreeText = ""


class Fault(Strict):
    """Fault injection for one version on the local target (demos and game days)."""

    latency_ms: Annotated[float, Field(ge=0, le=60_000)] = 0.0
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    # Share (percent) of the *other* variants' requests that the gateway misroutes to
    # this version: a deliberately broken split, to show the sample-ratio check.
    misroute_percent: Annotated[float, Field(ge=0, le=100)] = 0.0
    # LLM endpoints (protocol = "openai"): extra wait before the first generated token is
    # passed on (a slower prefill), and the share of streams cut off after their first tokens.
    first_token_ms: Annotated[float, Field(ge=0, le=60_000)] = 0.0
    stream_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0


class GatewayLimits(Strict):
    """The local gateway's limits; a change is applied to the running gateway in place."""

    max_body_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 1 << 20
    upstream_timeout: Annotated[Duration, Field(gt=0, le=3600)] = 30.0
    connect_timeout: Annotated[Duration, Field(gt=0, le=60)] = 2.0
    body_timeout: Annotated[Duration, Field(gt=0, le=600)] = 10.0
    shadow_max_inflight: Annotated[int, Field(ge=1, le=100_000)] = 64


class Backend(Strict):
    """Terraform remote state backend, rendered into each root module."""

    type: Literal["s3", "gcs", "azurerm", "local"]
    config: dict[Identifier, FreeText] = Field(default_factory=dict)


class GatewayRef(Strict):
    """The Gateway API Gateway that routes an environment's endpoints (router = "gateway-api")."""

    name: DnsLabel = "mlserve"
    # render the Gateway in the environment's namespace (false: it exists, owned by the platform team)
    create: bool = True
    class_name: DnsLabel = "istio"
    domain: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")] = (
        "example.com"
    )
    # the implementation honours HTTPRoute's RequestMirror filter (Istio, Envoy Gateway do);
    # false: a shadow step is refused on this router
    mirror: bool = True
    # LLM endpoints (runtime = "vllm"): route to one InferencePool per arm, picked by this
    # endpoint picker Service of the Gateway API Inference Extension (none: plain Services)
    endpoint_picker: DnsLabel | None = None


class Environment(Strict):
    target: Literal["local", "kubernetes"]
    description: FreeText = ""
    # Endpoints deployed in this environment (default: all of them).
    endpoints: list[DnsLabel] | None = None
    # local target
    gateway_port: Port | None = None
    admin_port: Port | None = None
    prometheus_port: Port | None = None
    scrape_interval: Duration = 2.0
    faults: dict[DnsLabel, dict[DnsLabel, Fault]] = Field(default_factory=dict)
    # local: divide every SLO alert window and `for` by this (demos and tests; 1 = as shipped)
    alert_speedup: Annotated[int, Field(ge=1, le=3600)] = 1
    limits: GatewayLimits | None = None
    # kubernetes target
    serving: Literal["kserve", "seldon"] | None = None
    namespace: DnsLabel | None = None
    cluster: Literal["aws-eks", "existing"] | None = None
    cluster_name: DnsLabel | None = None
    kubernetes_version: Annotated[str, Field(pattern=r"^1\.\d{2}$")] = "1.31"
    region: Region | None = None
    kube_context: FreeText | None = None
    prometheus_url: Url | None = None
    model_store: ModelUri | None = None
    gpu_operator: bool = False
    backend: Backend | None = None
    # kubernetes: who moves traffic between arms, and how long its configuration takes to
    # reach every proxy after a change (part of the settle time after a weight change)
    router: Literal["istio", "gateway-api"] | None = None
    gateway: GatewayRef | None = None
    router_convergence: Duration | None = None

    @model_validator(mode="after")
    def _target_fields(self) -> Environment:
        local_only = ("gateway_port", "admin_port", "prometheus_port", "limits")
        kube_only = (
            "serving",
            "namespace",
            "cluster",
            "cluster_name",
            "region",
            "kube_context",
            "prometheus_url",
            "model_store",
            "backend",
            "router",
            "gateway",
            "router_convergence",
        )
        if self.target == "local":
            bad = [f for f in kube_only if getattr(self, f) is not None]
            if bad:
                raise KeyProblem(bad[0], "only applies to target = 'kubernetes' (this environment is local)")
        else:
            bad = [f for f in local_only if getattr(self, f) is not None]
            if self.faults:
                bad.append("faults")
            if self.alert_speedup != 1:
                bad.append("alert_speedup")
            if bad:
                raise KeyProblem(bad[0], "only applies to target = 'local'")
            missing = [f for f in ("serving", "namespace", "cluster") if getattr(self, f) is None]
            if missing:
                raise KeyProblem(missing[0], "is required when target = 'kubernetes'")
            if self.cluster == "aws-eks" and self.region is None:
                raise KeyProblem("region", "is required when cluster = 'aws-eks'")
            if self.gateway is not None and self.router != "gateway-api":
                raise KeyProblem("gateway", "only applies to router = 'gateway-api'")
        return self

    @property
    def router_kind(self) -> str:
        return self.router or "istio"

    def scrape_seconds(self) -> float:
        """The Prometheus scrape interval: as set, else 2s locally and 30s on a cluster
        (kube-prometheus-stack's default)."""
        if "scrape_interval" in self.model_fields_set or self.target == "local":
            return float(self.scrape_interval)
        return 30.0

    def convergence_seconds(self) -> float:
        """How long a routing change takes to reach the data plane (default 5s: an Istio or
        Gateway API controller's push)."""
        return float(self.router_convergence) if self.router_convergence is not None else 5.0


# ---------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------

Runtime = Literal["sklearn", "xgboost", "seldon", "triton", "vllm", "torchserve", "transformers", "custom"]
# Runtimes that serve the OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models).
OPENAI_RUNTIMES = ("vllm", "transformers")
Protocol = Literal["v2", "openai"]


_CREDENTIAL_NAME = re.compile(
    r"(^|_)(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIALS?|ACCESS_KEY|PRIVATE_KEY|API_KEY|APIKEY)(_|$)", re.I
)


# Runtimes whose server batches requests when asked: MLServer's adaptive batching
# (sklearn, xgboost; locally and on KServe or Seldon) and KServe's batcher (v1 protocol).
BATCHING_RUNTIMES = ("sklearn", "xgboost", "torchserve")


class Batching(Strict):
    """Server-side adaptive batching: requests that arrive within ``max_batch_time`` of each
    other are scored as one batch of at most ``max_batch_size`` requests."""

    max_batch_size: Annotated[int, Field(ge=2, le=4096)]
    max_batch_time: Annotated[Duration, Field(gt=0, le=10)] = 0.01


class Version(Strict):
    model_uri: ModelUri
    description: FreeText = ""
    image: Image | None = None
    args: list[FreeText] = Field(default_factory=list)
    env: dict[Identifier, FreeText] = Field(default_factory=dict)
    # local target: the command that serves this version (runtime = "custom"); the
    # placeholders {port} and {model_dir} are filled in by mlserve.
    command: list[FreeText] = Field(default_factory=list)
    # seldon runtime: the Python class (module.Class) inside model_uri.
    model_class: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")] | None = None
    port: Port | None = None
    # server-side adaptive batching (MLServer's; KServe's batcher for torchserve)
    batching: Batching | None = None

    @model_validator(mode="after")
    def _no_credentials(self) -> Version:
        # env values are rendered verbatim into the stacks (and mlserve.toml lives in git)
        for name in self.env:
            if _CREDENTIAL_NAME.search(name):
                raise KeyProblem(
                    ("env", name),
                    "looks like a credential; secrets do not belong in mlserve.toml or the rendered stacks "
                    "(use a Kubernetes Secret or the serving platform's secret store)",
                )
        return self


class Resources(Strict):
    cpu: Quantity = "1"
    memory: Quantity = "2Gi"
    gpu: Annotated[int, Field(ge=0, le=16)] = 0
    gpu_type: Literal["t4", "a10g", "l4", "l40s", "a100", "h100"] | None = None
    instance_types: list[Annotated[str, Field(pattern=r"^[a-z0-9]+\.[a-z0-9]+$")]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _gpu(self) -> Resources:
        if self.gpu_type is not None and self.gpu == 0:
            raise KeyProblem("gpu_type", "is set but gpu is 0: set gpu to the number of GPUs per replica")
        return self


class Autoscaling(Strict):
    min_replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = 3
    # concurrency (in-flight requests per replica), rps, cpu, memory; for vLLM versions also
    # queue (vllm:num_requests_waiting) and kv_cache (KV-cache use, percent)
    metric: Literal["concurrency", "rps", "cpu", "memory", "queue", "kv_cache"] = "concurrency"
    target: Annotated[int, Field(gt=0, le=100_000)] = 10

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise KeyProblem(
                "max_replicas", f"must be at least min_replicas ({self.min_replicas}) (got {self.max_replicas})"
            )
        return self


class Slo(Strict):
    p99_latency: Duration | None = None
    error_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    # the same objective as error_rate, written as the share of requests that must succeed
    availability: Annotated[float, Field(gt=0, lt=1)] | None = None
    # the period the error budget is counted over (burn rates are relative to it)
    period: Duration = 30 * 86400.0

    @model_validator(mode="after")
    def _one_availability(self) -> Slo:
        if self.availability is not None and self.error_rate is not None:
            raise KeyProblem("availability", "set availability or error_rate, not both (error_rate = 1 - availability)")
        if self.period < 3600.0:
            raise KeyProblem("period", f"must be at least 1h (got {self.period:g}s)")
        return self

    @property
    def error_budget(self) -> float | None:
        """The share of requests allowed to fail (None: no availability objective)."""
        if self.availability is not None:
            return 1.0 - self.availability
        return self.error_rate


def check_reference(value: str) -> str:
    """``baseline`` or a profile path inside the project (JSON written by `mlserve profile`)."""
    if value == "baseline":
        return value
    if not value or len(value) > 1024 or not _URI_SAFE.match(value) or "://" in value:
        raise ValueError(
            f'must be "baseline" or the path of a profile inside the project, like profiles/fraud.json (got {value!r})'
        )
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError(f"must be a path inside the project, without '..' (got {value!r})")
    return value


Reference = Annotated[str, AfterValidator(check_reference)]


class Monitoring(Strict):
    """Drift summaries of an endpoint's traffic (opt in by writing the table)."""

    reference: Reference = "baseline"
    window: Duration = 300.0
    min_samples: Annotated[int, Field(ge=10, le=10_000_000)] = 200
    reference_size: Annotated[int, Field(ge=100, le=10_000_000)] = 1000
    bins: Annotated[int, Field(ge=2, le=64)] = 10
    psi_threshold: Annotated[float, Field(gt=0, le=10)] = PSI_SIGNIFICANT
    alert_for: Duration = 120.0
    positive_threshold: float = 0.5
    output: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    collector_image: Image = "ghcr.io/mlserve/mlserve:0.1.0"

    @model_validator(mode="after")
    def _window(self) -> Monitoring:
        if not 10.0 <= self.window <= 7 * 86400.0:
            raise KeyProblem("window", f"must be between 10s and 7d (got {self.window:g}s)")
        return self


class InputSpec(Strict):
    """The model's declared input, used to synthesise load-test payloads."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "input-0"
    datatype: Literal["FP32", "FP64", "INT32", "INT64", "BYTES"] = "FP32"
    shape: list[Annotated[int, Field(ge=1, le=65536)]] = Field(default_factory=lambda: [1, 8])


class Auth(Strict):
    """Who may call the endpoint on a cluster (Istio AuthorizationPolicy / RequestAuthentication)."""

    allowed_namespaces: list[DnsLabel] = Field(default_factory=list)
    allowed_principals: list[FreeText] = Field(default_factory=list)
    jwt_issuer: Url | None = None
    jwks_uri: Url | None = None

    @model_validator(mode="after")
    def _jwt(self) -> Auth:
        if (self.jwt_issuer is None) != (self.jwks_uri is None):
            raise KeyProblem(
                "jwks_uri" if self.jwks_uri is None else "jwt_issuer", "jwt_issuer and jwks_uri go together"
            )
        return self


MetricKind = Literal[
    "error_rate", "latency", "ratio", "prediction", "ttft", "inter_token", "tokens_per_second", "stream_errors"
]
# Kinds read from histograms at a quantile, and the LLM kinds (protocol = "openai" only).
QUANTILE_KINDS = ("latency", "ttft", "inter_token", "tokens_per_second")
LLM_KINDS = ("ttft", "inter_token", "tokens_per_second", "stream_errors")


class MetricSpec(Strict):
    name: Identifier
    kind: MetricKind
    quantile: Annotated[float, Field(gt=0, lt=1)] | None = None
    direction: Literal["lower", "higher"] | None = None
    margin: MarginValue = Margin(0.0, relative=False)
    critical: bool = False
    description: FreeText = ""
    # kind = "ratio" on a live target: PromQL templates with a {variant} placeholder.
    numerator: FreeText | None = None
    denominator: FreeText | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> MetricSpec:
        if self.kind in QUANTILE_KINDS and self.quantile is None:
            example = "0.1: the slowest tenth" if self.kind == "tokens_per_second" else "0.99"
            raise KeyProblem("quantile", f"is required when kind = {self.kind!r} (e.g. {example})")
        if self.kind not in QUANTILE_KINDS and self.quantile is not None:
            raise KeyProblem("quantile", f"only applies to kind = {', '.join(repr(k) for k in QUANTILE_KINDS)}")
        if self.kind == "tokens_per_second" and not self.margin.relative and self.margin.value > 0:
            raise KeyProblem("margin", "kind = 'tokens_per_second' takes a relative margin like '10%'")
        if self.kind in LLM_KINDS and self.direction is not None:
            better = "higher" if self.kind == "tokens_per_second" else "lower"
            if self.direction != better:
                raise KeyProblem("direction", f"kind = {self.kind!r} is always {better!r}-is-better")
        if self.kind != "ratio" and (self.numerator is not None or self.denominator is not None):
            raise KeyProblem("numerator", "only applies to kind = 'ratio'")
        if self.kind == "ratio" and self.direction is None:
            raise KeyProblem("direction", "is required when kind = 'ratio' ('lower' or 'higher' is better)")
        if self.kind == "prediction":
            if self.direction is not None:
                raise KeyProblem("direction", "does not apply to kind = 'prediction' (a change either way fails)")
            if not self.margin.relative or not self.margin.value > 0:
                raise KeyProblem(
                    "margin",
                    "kind = 'prediction' needs a relative margin above 0, like \"25%\": the candidate's share of "
                    "positive predictions may differ from the control's by at most that factor either way",
                )
        if (self.numerator is None) != (self.denominator is None):
            raise KeyProblem(
                "denominator" if self.denominator is None else "numerator", "numerator and denominator go together"
            )
        return self

    @property
    def better(self) -> Literal["lower", "higher"]:
        if self.kind == "tokens_per_second":
            return "higher"
        return self.direction or "lower"


def _default_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(name="error_rate", kind="error_rate", margin=Margin(0.005, False), critical=True),
        MetricSpec(name="latency_p99", kind="latency", quantile=0.99, margin=Margin(0.10, True)),
    ]


Strategy = Literal["shadow", "canary", "ab", "shadow+canary"]


def _check_steps(steps: list[int]) -> list[int]:
    for i, step in enumerate(steps):
        if i and step <= steps[i - 1]:
            raise KeyProblem((i,), f"steps must be strictly increasing (got {step} after {steps[i - 1]})")
    return steps


# the largest canary step below 100 where a control can take the candidate's share
MAX_CONTROLLED_STEP = 50


class RolloutPolicy(Strict):
    """An endpoint's ``[rollout]`` table; also the format of ``analyze --policy`` files."""

    strategy: Strategy = "canary"
    steps: Annotated[list[Annotated[int, Field(ge=1, le=100)]], AfterValidator(_check_steps)] = Field(
        default_factory=lambda: [10, 25, 50, 100], min_length=1, max_length=20
    )
    interval: Duration = 60.0
    max_duration: Duration = 3600.0
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    min_requests: Annotated[int, Field(ge=0)] = 200
    srm_p_value: Annotated[float, Field(gt=0, lt=0.5)] = 0.001
    max_error_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    on_inconclusive: Literal["rollback", "promote", "hold"] = "rollback"
    # shadow: share of requests mirrored to the candidate
    shadow_percent: Percent = 100
    # ab: the sticky key and the fixed horizon
    sticky_header: HeaderName = "x-user-id"
    sticky_cookie: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    ab_duration: Duration | None = None
    # shadow: least share of mirrored requests whose predictions must agree with the
    # baseline's (always-valid test; 0 switches the agreement gate off)
    shadow_agreement: Annotated[float, Field(ge=0, lt=1)] = 0.99
    # shadow of an LLM endpoint: generations count as agreeing when they match after
    # normalisation ("exact") or when their sentence embeddings' cosine similarity is at
    # least shadow_similarity ("semantic", all-MiniLM-L6-v2 run offline by the gateway)
    shadow_text_match: Literal["exact", "semantic"] = "exact"
    shadow_similarity: Annotated[float, Field(gt=0, le=1)] = 0.9
    # canary: a step lasts at least this long; "evidence" advances only on a promote
    # verdict for the step, "no_harm" also once step_min_duration passes with
    # min_requests per variant and no rollback or halt
    step_min_duration: Duration = 0.0
    step_advance: Literal["evidence", "no_harm"] = "evidence"
    # GPUs: at most this many GPUs above the stable fleet while the rollout runs (none: no cap);
    # canary_size "weight" sizes the candidate (and a control) by its traffic share instead of
    # the full fleet; scale_primary shrinks the primary as it loses traffic
    max_extra_gpus: Annotated[int, Field(ge=0, le=10_000)] | None = None
    canary_size: Literal["full", "weight"] = "full"
    scale_primary: bool = False
    # what the candidate is compared with on a canary step: "replica" (a fresh instance of the
    # baseline version started for the rollout, with the candidate's resources and share of
    # traffic) or "primary" (the baseline serving the rest of the traffic)
    control: Literal["replica", "primary"] = "replica"
    # what the sequential tests take as one piece of evidence: "request" (each request an
    # independent trial) or "interval" (one bet per look, valid when requests within an
    # interval are dependent; needs the concurrent control's exchangeability). Unset: "interval"
    # wherever the comparison arm is a concurrent control, "request" elsewhere
    test_unit: Literal["request", "interval"] | None = None
    metrics: list[MetricSpec] = Field(default_factory=_default_metrics, min_length=1, max_length=32)

    @model_validator(mode="after")
    def _policy(self) -> RolloutPolicy:
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            idx = [i for i, n in enumerate(names) if n == dupes[0]][1]
            raise KeyProblem(("metrics", idx, "name"), f"metric names must be unique ({dupes[0]!r} is repeated)")
        if self.interval <= 0:
            raise KeyProblem("interval", "must be longer than 0 s (the time between two looks)")
        if self.max_duration < self.interval:
            raise KeyProblem("max_duration", "is shorter than one interval")
        if self.control == "replica" and self.strategy in ("canary", "shadow+canary"):
            for i, w in enumerate(self.steps):
                if MAX_CONTROLLED_STEP < w < 100:
                    raise KeyProblem(
                        ("steps", i),
                        f"a {w}% step leaves no room for a control with the candidate's share (candidate {w}% + "
                        f"control {w}% > 100%); with control = 'replica' steps go up to {MAX_CONTROLLED_STEP}% "
                        "before 100, or set control = 'primary' to compare with the primary there",
                    )
        return self


class Endpoint(Strict):
    runtime: Runtime
    # The API the endpoint speaks: "v2" (KServe V2 inference) or "openai" (chat and text
    # completions with streaming). Default: "openai" for vllm and transformers, else "v2".
    protocol: Protocol | None = None
    baseline: DnsLabel
    description: FreeText = ""
    versions: dict[DnsLabel, Version] = Field(min_length=1)
    resources: Resources = Field(default_factory=Resources)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    slo: Slo = Field(default_factory=Slo)
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy)
    input: InputSpec = Field(default_factory=InputSpec)
    auth: Auth = Field(default_factory=Auth)
    monitoring: Monitoring | None = None

    @model_validator(mode="after")
    def _baseline_exists(self) -> Endpoint:
        if self.baseline not in self.versions:
            known = ", ".join(sorted(self.versions))
            raise KeyProblem(
                "baseline", f"names no version of this endpoint (got {self.baseline!r}; versions: {known})"
            )
        if self.protocol == "openai" and self.runtime not in (*OPENAI_RUNTIMES, "custom"):
            raise KeyProblem(
                "protocol",
                f"runtime = {self.runtime!r} serves the V2 protocol; 'openai' needs runtime "
                "'transformers', 'vllm' or 'custom'",
            )
        if self.protocol == "v2" and self.runtime in OPENAI_RUNTIMES:
            raise KeyProblem("protocol", f"runtime = {self.runtime!r} serves the OpenAI API; use protocol = 'openai'")
        if self.api != "openai":
            for i, m in enumerate(self.rollout.metrics):
                if m.kind in LLM_KINDS:
                    raise KeyProblem(
                        ("rollout", "metrics", i, "kind"),
                        f"kind = {m.kind!r} measures token streams and needs protocol = 'openai' "
                        f"(this endpoint speaks {self.api!r})",
                    )
        if self.autoscaling.metric in ("queue", "kv_cache") and self.runtime != "vllm":
            raise KeyProblem(
                ("autoscaling", "metric"),
                f"{self.autoscaling.metric!r} is one of vLLM's own metrics; it needs runtime = 'vllm'",
            )
        if self.monitoring is None:
            for i, metric in enumerate(self.rollout.metrics):
                if metric.kind == "prediction":
                    raise KeyProblem(
                        ("rollout", "metrics", i, "kind"),
                        "kind = 'prediction' counts the predictions the gateway returns: add an "
                        "[endpoints.NAME.monitoring] table to this endpoint",
                    )
        if self.runtime == "custom":
            for name, v in self.versions.items():
                if not v.command and not v.image:
                    raise KeyProblem(("versions", name), "runtime = 'custom' needs command (local) or image")
        if self.runtime not in BATCHING_RUNTIMES:
            for name, v in self.versions.items():
                if v.batching is not None:
                    why = {
                        "triton": "Triton batches on its own: set dynamic_batching in the model's config.pbtxt",
                        "vllm": "vLLM batches continuously on its own",
                    }.get(self.runtime, f"mlserve does not know how runtime {self.runtime!r} batches")
                    raise KeyProblem(
                        ("versions", name, "batching"),
                        f"server-side batching is for runtimes {', '.join(BATCHING_RUNTIMES)}; {why}",
                    )
        return self

    @property
    def api(self) -> Protocol:
        """The protocol in force (explicit, or the runtime's)."""
        if self.protocol is not None:
            return self.protocol
        return "openai" if self.runtime in OPENAI_RUNTIMES else "v2"


class Manifest(Strict):
    project: Project
    environments: dict[DnsLabel, Environment] = Field(min_length=1)
    endpoints: dict[DnsLabel, Endpoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> Manifest:
        known = ", ".join(sorted(self.endpoints))
        for env_name, env in self.environments.items():
            for i, ep in enumerate(env.endpoints or []):
                if ep not in self.endpoints:
                    raise KeyProblem(
                        ("environments", env_name, "endpoints", i),
                        f"names no endpoint (got {ep!r}; endpoints: {known})",
                    )
            for ep, versions in env.faults.items():
                if ep not in self.endpoints:
                    raise KeyProblem(
                        ("environments", env_name, "faults", ep), f"names no endpoint (endpoints: {known})"
                    )
                for v in versions:
                    if v not in self.endpoints[ep].versions:
                        raise KeyProblem(
                            ("environments", env_name, "faults", ep, v),
                            f"names no version of endpoint {ep!r} ({', '.join(sorted(self.endpoints[ep].versions))})",
                        )
        return self

    def endpoints_in(self, env_name: str) -> dict[str, Endpoint]:
        env = self.environments[env_name]
        names = env.endpoints if env.endpoints is not None else list(self.endpoints)
        return {n: self.endpoints[n] for n in names}
