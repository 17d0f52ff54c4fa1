"""Which Prometheus series hold each source's requests, errors and latency, per variant.

A look needs counts *since the rollout started*. ``increase(metric[W])`` anchored at the
start is the textbook answer, but it only sees samples inside the window and extrapolates
to the edges: over the short windows of a canary step (seconds to minutes at a 1-5 s
scrape interval) it misses the traffic between the last sample before the start and the
first one after, and we measured it undercounting a 900-request burst by half. So the
collector reads each series' raw counter value at the start and at the look (instant
queries, exact integers; a series born after the start counts from zero) and takes the
difference. Where ``resets(metric[W])`` says a counter restarted inside the window (a
gateway or pod restart), that series is summed step by step over its raw samples in the
window (``metric[W]``), a drop counting as a restart from zero, with nothing extrapolated.
Scrape gaps only delay counts: an instant query returns the latest sample.

Names reaching a selector are DNS-1123 labels (the manifest enforces it), so they cannot
break out of a PromQL string. Custom ratio metrics are the user's own PromQL, filled with
:func:`fill`, which replaces only the named placeholders (``{endpoint}``, ``{variant}``,
``{namespace}``, ``{window}``, ``{selector}``) so PromQL's own braces need no escaping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlserve.metrics.buckets import LATENCY_BUCKETS

PLACEHOLDERS = (
    "selector", "endpoint", "variant", "namespace", "window", "revision", "workload", "version", "predictor", "service",
)  # fmt: skip


def fill(template: str, **values: str) -> str:
    out = template
    for key in PLACEHOLDERS:
        if key in values:
            out = out.replace("{" + key + "}", values[key])
    return out


@dataclass(frozen=True)
class QuerySet:
    """How one source names requests, errors and latency for a variant."""

    name: str
    description: str
    selector: str  # label matchers for one variant (without braces)
    requests: str  # counter of requests (all outcomes)
    error_label: str  # label of ``requests`` that tells an error ...
    error_regex: str  # ... when its value fully matches this regex
    buckets: str  # histogram bucket counter (has ``le``)
    latency_sum: str  # histogram sum counter
    le_to_seconds: float  # multiply a bucket's ``le`` (and the sum) by this to get seconds
    gpu_selector: str = ""  # DCGM exporter matchers for the variant's pods, where known
    # labels whose value names one arm's workload: the series a selector returns must agree
    # on them, else the look is held as ambiguous (different workloads are never added up)
    identity: tuple[str, ...] = ()
    # the ratio between neighbouring latency bucket bounds, as far as mlserve knows it: 1.03
    # where mlserve sets the buckets (its gateway; Istio sidecars through the rendered
    # sidecar.istio.io/statsHistogramBuckets annotation), the source's default elsewhere. A
    # latency margin narrower than ratio - 1 cannot be resolved (mlserve validate warns)
    bucket_ratio: float = 1.03
    bucket_origin: str = "mlserve's own buckets"


# Bucket bounds (seconds) of the local gateway's mlserve_request_duration_seconds histogram:
# the gateway exports them (3% apart, mlserve.metrics.buckets, so a quantile is compared to
# within a fraction of a 10% margin), the SLO rules measure latency objectives at them.
GATEWAY_LATENCY_BUCKETS = LATENCY_BUCKETS

_LOCAL = QuerySet(
    name="local",
    description="mlserve's local gateway (mlserve_* metrics)",
    selector='endpoint="{endpoint}",variant="{variant}"',
    requests="mlserve_requests_total",
    # 5xx answers, upstream timeouts and refused connections are the model's failures;
    # 4xx are the caller's.
    error_label="code",
    error_regex="5..|connect_error",
    buckets="mlserve_request_duration_seconds_bucket",
    latency_sum="mlserve_request_duration_seconds_sum",
    le_to_seconds=1.0,
)

_ISTIO = QuerySet(
    name="istio",
    description="Istio sidecars (istio_requests_total, istio_request_duration_milliseconds), per arm workload",
    # One arm is one Deployment: the destination sidecar reports it as destination_workload
    # (KServe RawDeployment: ISVC-predictor) and the pod label service.istio.io/canonical-revision
    # as destination_canonical_revision. reporter="destination" counts each request once (a
    # gateway or client sidecar reports the same request again with reporter="source").
    selector=(
        'reporter="destination",destination_workload_namespace="{namespace}",'
        'destination_workload="{workload}",destination_canonical_revision="{version}"'
    ),
    requests="istio_requests_total",
    error_label="response_code",
    error_regex="5..",
    buckets="istio_request_duration_milliseconds_bucket",
    latency_sum="istio_request_duration_milliseconds_sum",
    le_to_seconds=0.001,
    gpu_selector='namespace="{namespace}",pod=~"{workload}-[a-z0-9]+-[a-z0-9]+"',
    identity=("destination_workload", "destination_canonical_revision"),
)

_SELDON = QuerySet(
    name="seldon",
    description="Seldon Core v1 executor (seldon_api_executor_client_requests_seconds)",
    selector='namespace="{namespace}",deployment_name="{endpoint}",predictor_name="{predictor}"',
    requests="seldon_api_executor_client_requests_seconds_count",
    error_label="code",
    error_regex="5..",
    buckets="seldon_api_executor_client_requests_seconds_bucket",
    latency_sum="seldon_api_executor_client_requests_seconds_sum",
    le_to_seconds=1.0,
    gpu_selector='namespace="{namespace}",pod=~"{endpoint}-{predictor}-.*"',
    identity=("deployment_name", "predictor_name"),
    # the executor's histogram has the client library's default buckets (as its recorded
    # exposition in tests/cluster shows); mlserve cannot set them from the SeldonDeployment
    bucket_ratio=2.5,
    bucket_origin="Seldon's executor histogram, 5 ms to 10 s with bounds 2-2.5x apart",
)

_KSERVE = QuerySet(
    name="kserve",
    description="KServe on Knative (revision_request_count, revision_request_latencies)",
    # KServe names revisions itself; the rollout resolves each variant's revision name
    # from the InferenceService status and passes it as {revision}.
    selector='namespace_name="{namespace}",revision_name="{revision}"',
    requests="revision_request_count",
    error_label="response_code_class",
    error_regex="5xx",
    buckets="revision_request_latencies_bucket",
    latency_sum="revision_request_latencies_sum",
    le_to_seconds=0.001,
    gpu_selector='namespace="{namespace}",pod=~"{revision}-deployment-.*"',
    identity=("revision_name",),
    bucket_ratio=2.0,
    bucket_origin="Knative's queue-proxy histogram, bounds about 2x apart",
)

QUERY_SETS: dict[str, QuerySet] = {q.name: q for q in (_LOCAL, _ISTIO, _SELDON, _KSERVE)}


def query_set_name(target: str, serving: str | None) -> str:
    """The query set a rollout reads on an environment: the gateway's locally, Seldon's
    executor for Seldon Core, Istio's sidecars for KServe."""
    if target == "local":
        return "local"
    return "seldon" if serving == "seldon" else "istio"


def unresolved_margins(target: str, serving: str | None, metrics: Sequence[Any]) -> list[tuple[int, str]]:
    """(index, message) for each latency metric whose relative margin is narrower than the
    environment's bucket spacing: the quantile it names cannot be resolved there."""
    qs = QUERY_SETS[query_set_name(target, serving)]
    out = []
    for i, m in enumerate(metrics):
        margin = m.margin
        if m.kind != "latency" or not margin.relative or margin.value >= qs.bucket_ratio - 1:
            continue
        q = f"p{(m.quantile or 0.99) * 100:g}"
        out.append(
            (
                i,
                f"a {margin} margin at {q} is narrower than the latency buckets a rollout reads there "
                f"({qs.bucket_origin}): it will compare the quantile nearest a bucket bound, not {q}, "
                "and its report will say which; widen the margin or give the runtime finer buckets",
            )
        )
    return out


GPU_QUERIES = {
    "gpu_utilization_percent": "avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL{{gpu_selector}}[{window}]))",
    "gpu_memory_used_mib": "max(max_over_time(DCGM_FI_DEV_FB_USED{{gpu_selector}}[{window}]))",
}


def window(seconds: float) -> str:
    """A PromQL range covering ``seconds`` (at least one second, whole seconds)."""
    return f"{max(1, int(-(-seconds // 1)))}s"


@dataclass(frozen=True)
class VariantQueries:
    """Instant selectors of one variant's counters (evaluated at the start and at each look)
    and the window expressions used to detect counter resets."""

    requests: str
    buckets: str
    latency_sum: str
    window: str
    custom: dict[str, tuple[str, str]]  # metric -> (numerator, denominator)
    gpu: dict[str, str]


def variant_queries(
    qs: QuerySet,
    *,
    endpoint: str,
    variant: str,
    seconds: float,
    namespace: str = "",
    revision: str = "",
    custom: dict[str, tuple[str, str]] | None = None,
    arm: Mapping[str, str] | None = None,
) -> VariantQueries:
    """``arm``: what the target resolved for this arm (workload, version, predictor, service,
    revision); names it leaves out default to the variant's name."""
    arm = arm or {}
    values = {
        "endpoint": endpoint,
        "variant": variant,
        "namespace": namespace,
        "revision": arm.get("revision") or revision or variant,
        "workload": arm.get("workload", variant),
        "version": arm.get("version", variant),
        "predictor": arm.get("predictor", variant),
        "service": arm.get("service", endpoint),
        "window": window(seconds),
    }
    selector = "{" + fill(qs.selector, **values) + "}"
    with_sel = {**values, "selector": selector}
    gpu: dict[str, str] = {}
    if qs.gpu_selector:
        gsel = fill(qs.gpu_selector, **values)
        gpu = {k: fill(v.replace("{gpu_selector}", gsel), **values) for k, v in GPU_QUERIES.items()}
    return VariantQueries(
        requests=qs.requests + selector,
        buckets=qs.buckets + selector,
        latency_sum=qs.latency_sum + selector,
        window=values["window"],
        custom={name: (fill(n, **with_sel), fill(d, **with_sel)) for name, (n, d) in (custom or {}).items()},
        gpu=gpu,
    )


# ---------------------------------------------------------------------------
# LLM token streams (endpoints with protocol = "openai")
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LlmQuerySet:
    """Where one source keeps a variant's token-stream histograms and counters.

    A histogram name left empty is a statistic the source does not export (that metric kind
    then has no data and holds the rollout: no data is never a pass).
    """

    name: str
    description: str
    selector: str
    ttft_buckets: str  # per request, seconds
    tpot_buckets: str  # per request mean gap between tokens, seconds
    rate_buckets: str  # per request generated tokens per second
    streams: str  # counter of finished streams, with an outcome label
    outcome_label: str
    failed_regex: str  # outcomes that are failures
    counted_regex: str  # outcomes that count as streams (client cancellations are not the server's)
    prompt_tokens: str
    generation_tokens: str


_LLM_LOCAL = LlmQuerySet(
    name="local",
    description="mlserve's local gateway (mlserve_llm_* metrics)",
    selector='endpoint="{endpoint}",variant="{variant}"',
    ttft_buckets="mlserve_llm_time_to_first_token_seconds_bucket",
    tpot_buckets="mlserve_llm_time_per_output_token_seconds_bucket",
    rate_buckets="mlserve_llm_tokens_per_second_bucket",
    streams="mlserve_llm_streams_total",
    outcome_label="outcome",
    failed_regex="failed",
    counted_regex="completed|failed",
    prompt_tokens="mlserve_llm_prompt_tokens_total",
    generation_tokens="mlserve_llm_generation_tokens_total",
)

# vLLM's own metrics (its OpenAI server's /metrics). The rendered vLLM versions serve the
# model names "{endpoint}-{variant}" first (and "{endpoint}", which clients send), and vLLM
# labels its series with the first one as model_name. vLLM has no per-request
# tokens-per-second histogram: that kind holds on vLLM; "abort" counts requests that did
# not finish (client cancellations included).
_LLM_VLLM = LlmQuerySet(
    name="vllm",
    description="vLLM's metrics (vllm:time_to_first_token_seconds, vllm:request_time_per_output_token_seconds, ...)",
    selector='namespace="{namespace}",model_name="{endpoint}-{variant}"',
    ttft_buckets="vllm:time_to_first_token_seconds_bucket",
    tpot_buckets="vllm:request_time_per_output_token_seconds_bucket",
    rate_buckets="",
    streams="vllm:request_success_total",
    outcome_label="finished_reason",
    failed_regex="abort",
    counted_regex=".*",
    prompt_tokens="vllm:prompt_tokens_total",
    generation_tokens="vllm:generation_tokens_total",
)

LLM_QUERY_SETS: dict[str, LlmQuerySet] = {q.name: q for q in (_LLM_LOCAL, _LLM_VLLM)}

# Requests, errors and whole-request latency of vLLM versions come from the mesh (Istio, the
# request-level query sets above) like every other endpoint's; vLLM's own metrics add the
# token-stream statistics.


def llm_selector(lq: LlmQuerySet, *, endpoint: str, variant: str, namespace: str = "") -> str:
    return "{" + fill(lq.selector, endpoint=endpoint, variant=variant, namespace=namespace) + "}"
