"""A shadow look's agreement on a cluster: the comparator's counters for the primary and the
shadow arm, over the step (see :mod:`mlserve.targets.comparator` for how they are counted).

No series (the comparator is down, not scraped, or not rendered for this endpoint: no shadow
step; a KServe LLMInferenceService, which has no logger) holds the
look with the query named: a shadow step never passes on missing agreement. A policy with
``shadow_agreement = 0`` (the gate off) asks for none (``LookRequest.agreement``).
"""

from __future__ import annotations

from collections.abc import Mapping

from mlserve.manifest.models import Manifest
from mlserve.metrics import LookRequest, MetricsUnavailable, QueryFn
from mlserve.metrics.collect import counter_increase
from mlserve.metrics.queries import window

PAIR = "mlserve_shadow_agreement_total"


def selector(namespace: str, endpoint: str, a: str, b: str) -> str:
    first, second = sorted((a, b))
    return f'{PAIR}{{namespace="{namespace}",endpoint="{endpoint}",first="{first}",second="{second}"}}'


def agreement(
    query: QueryFn, manifest: Manifest, env_name: str, req: LookRequest, arms: Mapping[str, Mapping[str, str]]
) -> tuple[dict[str, int], tuple[str, ...]]:
    """({"agree", "compared"}, the query) for the look's primary (first variant) and shadow (last)."""
    ep = manifest.endpoints[req.endpoint]
    primary, shadow = req.variants[0], req.variants[-1]
    promql = selector(req.namespace, req.endpoint, arms[primary]["object"], arms[shadow]["object"])
    if ep.rollout.strategy not in ("shadow", "shadow+canary"):
        raise MetricsUnavailable(
            f"no agreement for the shadow of {req.endpoint}/{shadow}: environments.{env_name} renders the shadow "
            f"comparator and its payload loggers only for endpoints whose rollout.strategy has a shadow step "
            f"(endpoints.{req.endpoint}.rollout.strategy is {ep.rollout.strategy!r}), so {promql} cannot exist"
        )
    from mlserve.render.kubernetes import llm_service

    serving = manifest.environments[env_name].serving or "kserve"
    if llm_service(ep, serving):
        raise MetricsUnavailable(
            f"no agreement for the shadow of {req.endpoint}/{shadow}: its versions are KServe LLMInferenceServices "
            f"(runtime = 'vllm' on environments.{env_name}), which have no payload logger, so the shadow comparator "
            f"is not fed for this endpoint and {promql} cannot exist (not built yet); "
            f"endpoints.{req.endpoint}.rollout.shadow_agreement = 0 shadows it without the agreement gate"
        )
    counts = counter_increase(query, promql, window(max(1.0, req.at - req.started_at)), req.started_at, req.at)
    if not counts:
        raise MetricsUnavailable(
            f"no data for the shadow comparison of {req.endpoint}/{shadow}: Prometheus has no series {promql} "
            "(is the mlserve-comparator Deployment running and scraped, and do both arms log their answers to it?)"
        )
    agree = round(sum(v for k, v in counts.items() if dict(k).get("agree") == "true"))
    compared = round(sum(counts.values()))
    return {"agree": agree, "compared": compared}, (promql,)
