"""Which workload serves each arm of a rollout on a cluster, read from the live objects.

A look names its arms (primary, candidate, a control); the router's last plan says each
arm's version and role. The cluster says which object runs it: the InferenceService (KServe)
or the SeldonDeployment predictor (Seldon) labelled ``mlserve.io/endpoint`` and
``mlserve.io/version`` with that ``mlserve.io/role``. From it come the names the series carry:

- KServe RawDeployment: the Deployment ``ISVC-predictor`` (Istio's ``destination_workload``)
  and its Service ``ISVC-predictor`` (the Gateway API router's backend);
- KServe serverless: the revision in ``status.components.predictor.latestReadyRevision``
  (Knative's ``revision_name``; its pods belong to the Deployment ``REVISION-deployment``);
- KServe LLMInferenceService (an LLM endpoint's versions, ``runtime = "vllm"``): the
  Deployment KServe creates for it, ``status.workloads.primary`` where the API reports it
  (v1alpha2), else ``NAME-kserve``; behind the Gateway API, the arm's backend (its
  InferencePool ``NAME`` where an endpoint picker is set, else mlserve's Service
  ``NAME-arm``);
- Seldon Core v1: the predictor's name (the executor's ``predictor_name``) and its
  Deployment ``SDEP-PREDICTOR-0-model``.

A rollout's control is an object of its own (``ENDPOINT-control``, or predictor ``control``):
its ``mlserve.io/version`` label (and its pods' canonical revision, which Istio reports) is
the arm's name, its role ``control`` and its pods' ``mlserve.io/model-version`` the baseline
version it serves. The control arm resolves to that object only, and the primary never to it,
so the two instances of one version are never counted as one.

An arm with no object, or with two, holds the look with the kubectl query that found it so:
a series is never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlserve.errors import ToolError
from mlserve.metrics import MetricsUnavailable
from mlserve.render.kubernetes import (
    LLM_ARM_SERVICE_SUFFIX,  # an LLM arm's Service behind the Gateway API
    MODEL_VERSION_LABEL,  # a control's pods: the version they serve
)
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


@dataclass(frozen=True)
class _Found:
    """One object serving an arm, as the cluster lists it."""

    name: str  # the InferenceService, or the Seldon predictor
    arm: str  # its ``mlserve.io/version`` label: the version, or a control's arm name
    model_version: str  # the version its pods serve (``mlserve.io/model-version`` on a control's pods)
    role: str  # ``mlserve.io/role``: baseline | candidate | control
    obj: Any

    def describe(self) -> str:
        served = f", serving {self.model_version}" if self.model_version != self.arm else ""
        return f"{self.name} (version {self.arm}{served}, role {self.role or '-'})"


def _pod_labels(serving: str, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    if serving == "seldon":
        specs = obj.get("componentSpecs") or [{}]
        return ((specs[0] or {}).get("metadata") or {}).get("labels") or {}
    if obj.get("kind") == "LLMInferenceService":
        return (obj.get("spec") or {}).get("labels") or {}
    return ((obj.get("spec") or {}).get("predictor") or {}).get("labels") or {}


def _found(serving: str, name: str, labels: Mapping[str, Any], role: str, obj: Any) -> _Found:
    arm = str(labels.get("mlserve.io/version", name))
    served = str(_pod_labels(serving, obj).get(MODEL_VERSION_LABEL) or arm)
    return _Found(name, arm, served, role, obj)


def _pick(found: list[_Found], want: Wanted, endpoint: str, query: str) -> _Found:
    """The one object serving ``want``. A control is the object of role ``control`` whose pods
    serve the wanted version (by its arm name where several do); the primary and the
    candidate are the objects labelled with their version, never a control of it."""
    role = RENDERED_ROLE.get(want.role, want.role)
    if want.role == "control":
        same = [f for f in found if f.role == "control" and f.model_version == want.version]
        named = [f for f in same if want.arm in (f.arm, f.name)]
        chosen = named or same
    else:
        same = [f for f in found if f.arm == want.version and f.model_version == want.version and f.role != "control"]
        exact = [f for f in same if f.role == role]
        chosen = exact or (same if len(same) == 1 else [])
    if not chosen:
        have = ", ".join(f.describe() for f in found) or "nothing"
        raise MetricsUnavailable(
            f"no workload for arm {want.arm} of {endpoint} (version {want.version}, role {want.role}): "
            f"{query} lists {have}"
        )
    if len(chosen) > 1:
        names = ", ".join(f.name for f in chosen)
        raise MetricsUnavailable(
            f"ambiguous workload for arm {want.arm} of {endpoint}: {query} lists {len(chosen)} objects of version "
            f"{want.version} with role {role} ({names}); mlserve does not add up different workloads' series"
        )
    return chosen[0]


def resolve(
    kubectl: Kubectl,
    *,
    serving: str,
    router: str,
    namespace: str,
    endpoint: str,
    wanted: Sequence[Wanted],
    llm: bool = False,
    pools: bool = False,
) -> dict[str, dict[str, str]]:
    """Arm -> what its series are selected by (workload, version, predictor, service, revision).
    ``llm``: the versions are KServe LLMInferenceServices; ``pools``: behind the Gateway API,
    each of their arms is an InferencePool."""
    if serving == "seldon":
        resource = f"seldondeployments.machinelearning.seldon.io/{endpoint}"
    elif llm:
        resource = "llminferenceservices.serving.kserve.io"
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
    return select(data, serving=serving, router=router, endpoint=endpoint, wanted=wanted, query=query, pools=pools)


def select(
    data: Mapping[str, Any],
    *,
    serving: str,
    router: str,
    endpoint: str,
    wanted: Sequence[Wanted],
    query: str,
    pools: bool = False,
) -> dict[str, dict[str, str]]:
    """:func:`resolve` on what kubectl returned (``query``: how, for the messages)."""
    found: list[_Found] = []
    if serving == "seldon":
        for p in (data.get("spec") or {}).get("predictors", []) or []:
            found.append(_found(serving, str(p.get("name")), p.get("labels") or {}, _role_of(p), p))
    else:
        for item in data.get("items", []) or []:
            meta = item.get("metadata") or {}
            found.append(_found(serving, str(meta.get("name")), meta.get("labels") or {}, _role_of(meta), item))
    out: dict[str, dict[str, str]] = {}
    for want in wanted:
        f = _pick(found, want, endpoint, query)
        # the series carry the pods' canonical revision: the version, or a control's arm name
        name, version = f.name, f.arm
        if serving == "seldon":
            out[want.arm] = {
                "object": name,
                "version": version,
                "predictor": name,
                "workload": f"{endpoint}-{name}-0-model",
                "service": endpoint if router == "istio" else f"{endpoint}-{name}",
            }
            continue
        if f.obj.get("kind") == "LLMInferenceService":
            out[want.arm] = llm_arm(f.obj, name, version, endpoint, router, pools)
            continue
        meta = f.obj.get("metadata") or {}
        mode = (meta.get("annotations") or {}).get("serving.kserve.io/deploymentMode", "Serverless")
        entry = {"object": name, "version": version, "service": endpoint if router == "istio" else f"{name}-predictor"}
        if mode == "RawDeployment":
            entry["workload"] = f"{name}-predictor"
        else:
            predictor = ((f.obj.get("status") or {}).get("components") or {}).get("predictor") or {}
            revision = predictor.get("latestReadyRevision")
            if not revision:
                raise MetricsUnavailable(
                    f"arm {want.arm} of {endpoint}: InferenceService {name} reports no ready revision yet "
                    f"(status.components.predictor.latestReadyRevision, {query} -o json)"
                )
            entry.update(revision=str(revision), workload=f"{revision}-deployment")
        out[want.arm] = entry
    return out


LLM_WORKLOAD_SUFFIX = "-kserve"  # the Deployment KServe creates for an LLMInferenceService


def llm_arm(obj: Mapping[str, Any], name: str, version: str, endpoint: str, router: str, pools: bool) -> dict[str, str]:
    """An LLMInferenceService arm's selectors: the Deployment KServe runs it in (as its status
    reports it where the API has ``status.workloads``, else by KServe's naming) and the
    Service or InferencePool the router sends its requests to."""
    workloads = (obj.get("status") or {}).get("workloads") or {}
    primary = (workloads.get("primary") or {}).get("name")
    workload = str(primary) if primary else f"{name}{LLM_WORKLOAD_SUFFIX}"
    backend = name if pools else f"{name}{LLM_ARM_SERVICE_SUFFIX}"  # the InferencePool, or mlserve's Service
    service = endpoint if router == "istio" else backend
    return {"object": name, "version": version, "workload": workload, "service": service}
