"""Which workload serves each arm of a rollout on a cluster, read from the live objects.

A look names its arms (primary, candidate, a control); the router's last plan says each
arm's version and role. The cluster says which object runs it: the InferenceService (KServe)
or the SeldonDeployment predictor (Seldon) labelled ``mlserve.io/endpoint`` and
``mlserve.io/version`` with that ``mlserve.io/role``. From it come the names the series carry:

- KServe RawDeployment: the Deployment ``ISVC-predictor`` (Istio's ``destination_workload``)
  and its Service ``ISVC-predictor`` (the Gateway API router's backend);
- KServe serverless: the revision in ``status.components.predictor.latestReadyRevision``
  (Knative's ``revision_name``; its pods belong to the Deployment ``REVISION-deployment``);
- Seldon Core v1: the predictor's name (the executor's ``predictor_name``) and its
  Deployment ``SDEP-PREDICTOR-0-model``.

An arm with no object, or with two, holds the look with the kubectl query that found it so:
a series is never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlserve.errors import ToolError
from mlserve.metrics import MetricsUnavailable
from mlserve.tools.kubectl import Kubectl

ROLE_LABEL = "mlserve.io/role"
RENDERED_ROLE = {"primary": "baseline"}  # the plan's role -> the rendered objects' word for it


@dataclass(frozen=True)
class Wanted:
    arm: str
    version: str
    role: str  # primary | candidate | control


def wanted_arms(variants: Sequence[str], plan_arms: Mapping[str, Any] | None) -> list[Wanted]:
    """Each variant's version and role from the router's plan (``Arm`` values), else by position."""
    out = []
    for i, name in enumerate(variants):
        arm = (plan_arms or {}).get(name)
        if arm is not None:
            out.append(Wanted(name, str(arm.version), str(arm.role)))
        else:
            out.append(Wanted(name, name, "primary" if i == 0 else "candidate"))
    return out


def _role_of(meta: Mapping[str, Any]) -> str:
    return str((meta.get("annotations") or {}).get(ROLE_LABEL) or (meta.get("labels") or {}).get(ROLE_LABEL) or "")


def _pick(found: list[tuple[str, str, str, Any]], want: Wanted, endpoint: str, query: str) -> tuple[str, str, str, Any]:
    """(name, version, role, object) of the one object serving ``want``."""
    role = RENDERED_ROLE.get(want.role, want.role)
    same_version = [f for f in found if f[1] == want.version]
    exact = [f for f in same_version if f[2] == role]
    chosen = exact or (same_version if len(same_version) == 1 else [])
    if not chosen:
        have = ", ".join(f"{n} (version {v}, role {r or '-'})" for n, v, r, _ in found) or "nothing"
        raise MetricsUnavailable(
            f"no workload for arm {want.arm} of {endpoint} (version {want.version}, role {want.role}): "
            f"{query} lists {have}"
        )
    if len(chosen) > 1:
        names = ", ".join(n for n, *_ in chosen)
        raise MetricsUnavailable(
            f"ambiguous workload for arm {want.arm} of {endpoint}: {query} lists {len(chosen)} objects of version "
            f"{want.version} with role {role} ({names}); mlserve does not add up different workloads' series"
        )
    return chosen[0]


def resolve(
    kubectl: Kubectl, *, serving: str, router: str, namespace: str, endpoint: str, wanted: Sequence[Wanted]
) -> dict[str, dict[str, str]]:
    """Arm -> what its series are selected by (workload, version, predictor, service, revision)."""
    if serving == "seldon":
        resource = f"seldondeployments.machinelearning.seldon.io/{endpoint}"
    else:
        resource = "inferenceservices.serving.kserve.io"
    selector = None if serving == "seldon" else f"mlserve.io/endpoint={endpoint}"
    query = f"kubectl --context {kubectl.context} get {resource} -n {namespace}" + (
        f" -l {selector}" if selector else ""
    )
    try:
        data = kubectl.get_json(resource, namespace=namespace, selector=selector)
    except ToolError as exc:
        raise MetricsUnavailable(f"cannot read the arms of {endpoint} ({query}): {exc.message}") from None
    found: list[tuple[str, str, str, Any]] = []
    if serving == "seldon":
        for p in (data.get("spec") or {}).get("predictors", []) or []:
            labels = p.get("labels") or {}
            found.append((str(p.get("name")), str(labels.get("mlserve.io/version", p.get("name"))), _role_of(p), p))
    else:
        for item in data.get("items", []) or []:
            meta = item.get("metadata") or {}
            labels = meta.get("labels") or {}
            found.append((str(meta.get("name")), str(labels.get("mlserve.io/version", "")), _role_of(meta), item))
    out: dict[str, dict[str, str]] = {}
    for want in wanted:
        name, version, _role, obj = _pick(found, want, endpoint, query)
        if serving == "seldon":
            out[want.arm] = {
                "object": name,
                "version": version,
                "predictor": name,
                "workload": f"{endpoint}-{name}-0-model",
                "service": endpoint if router == "istio" else f"{endpoint}-{name}",
            }
            continue
        meta = obj.get("metadata") or {}
        mode = (meta.get("annotations") or {}).get("serving.kserve.io/deploymentMode", "Serverless")
        entry = {"object": name, "version": version, "service": endpoint if router == "istio" else f"{name}-predictor"}
        if mode == "RawDeployment":
            entry["workload"] = f"{name}-predictor"
        else:
            predictor = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
            revision = predictor.get("latestReadyRevision")
            if not revision:
                raise MetricsUnavailable(
                    f"arm {want.arm} of {endpoint}: InferenceService {name} reports no ready revision yet "
                    f"(status.components.predictor.latestReadyRevision, {query} -o json)"
                )
            entry.update(revision=str(revision), workload=f"{revision}-deployment")
        out[want.arm] = entry
    return out
