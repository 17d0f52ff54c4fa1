"""The Gateway API router, and what both cluster routers do when someone else changed a route.

``router = "gateway-api"``: a plan is a re-render of the environment with the new traffic; the
endpoint's HTTPRoute (every arm's weight, A/B matches, the RequestMirror filter) is then
applied alone, server-side, as one object: one request moves the weights. Before it, the
endpoint's other objects that changed since the router last applied them (a new arm's
InferenceService or predictor, an arm sized for its new share) are applied; objects whose
replica range shrinks (the primary scaled down as it loses traffic) are applied after it, so
capacity is added before traffic moves to it and removed after traffic left it.

A conflict (another field manager owns a field mlserve applies, e.g. someone ran ``kubectl
edit`` on the route) stops the rollout: :class:`RouteConflict` names the object, the fields and
the manager, and nothing more is applied. The run keeps its pending transition, so a later
``rollout run`` retries it once the route is sorted out.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from mlserve import fsutil
from mlserve.errors import TargetError, ToolError
from mlserve.project import Project
from mlserve.targets import control_arms
from mlserve.targets.base import Plan
from mlserve.targets.kube_conflict import conflict_or_error
from mlserve.tools.kubectl import Kubectl


def _key(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('apiVersion')}/{doc.get('kind')}/{meta.get('namespace', '')}/{meta.get('name')}"


def _digest(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def max_replicas(doc: Mapping[str, Any]) -> int:
    """The most replicas an object's autoscaling allows (InferenceService, LLMInferenceService
    or SeldonDeployment)."""
    spec = doc.get("spec") or {}
    if doc.get("kind") == "InferenceService":
        return int((spec.get("predictor") or {}).get("maxReplicas", 0) or 0)
    if doc.get("kind") == "LLMInferenceService":
        return int((spec.get("scaling") or {}).get("maxReplicas", 0) or spec.get("replicas", 0) or 0)
    total = 0
    for p in spec.get("predictors", []) or []:
        for c in p.get("componentSpecs", []) or []:
            total += int(
                (c.get("hpaSpec") or {}).get("maxReplicas", 0)
                or (c.get("kedaSpec") or {}).get("maxReplicaCount", 0)
                or 0
            )
    return total


def endpoint_docs(docs: Iterable[Mapping[str, Any]], endpoint: str) -> list[dict[str, Any]]:
    out = []
    for d in docs:
        labels = (d.get("metadata") or {}).get("labels") or {}
        if labels.get("mlserve.io/endpoint") == endpoint or (
            d.get("kind") == "HTTPRoute" and (d.get("metadata") or {}).get("name") == endpoint
        ):
            out.append(dict(d))
    return out


class GatewayApiRouter(control_arms.ControlArms):
    """Traffic through an HTTPRoute per endpoint; see the module docstring."""

    def __init__(self, project: Project, env_name: str, *, render_root: Path | None = None) -> None:
        self.project = project
        self.env_name = env_name
        self.render_root = render_root or project.state_dir / "rollout-render"
        self.memory = project.state_dir / "rollout-traffic" / f"{env_name}.json"
        self.applied_objects = project.state_dir / "rollout-traffic" / f"{env_name}.objects.json"
        self.last_applied: Path | None = None
        self.requests: list[str] = []  # what each kubectl apply carried, for the report and the tests

    @property
    def context(self) -> str:
        return control_arms.kube_context(self.project, self.env_name)

    def plans(self) -> dict[str, Plan]:
        data = fsutil.read_json(self.memory) or {}
        return {str(ep): Plan.from_dict(p) for ep, p in data.items()}

    def current(self, endpoint: str) -> Plan | None:
        return self.plans().get(endpoint)

    def describe(self) -> str:
        return f"kubernetes environment {self.env_name!r}, Gateway API HTTPRoutes (kubectl context {self.context})"

    # start_arm, stop_arm and arms: the control's lifecycle, shared (mlserve.targets.control_arms)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """An object deleted by name (a stopped control's InferenceService) is no longer known as
        applied, so a later plan that renders it again (the next rollout's control) applies it."""
        known: dict[str, Any] = fsutil.read_json(self.applied_objects) or {}
        gone = [k for k in known if k.split("/")[-3:] == [kind, namespace, name]]
        if gone:
            fsutil.atomic_write_json(self.applied_objects, {k: v for k, v in known.items() if k not in gone})

    def apply(self, endpoint: str, plan: Plan) -> None:
        from mlserve.render import EndpointTraffic
        from mlserve.targets.kubernetes import KubernetesTarget
        from mlserve.targets.live import to_render

        plans = {**self.plans(), endpoint: plan}
        traffic = {ep: to_render(p, EndpointTraffic) for ep, p in plans.items()}
        target = KubernetesTarget(self.project, self.env_name, traffic=traffic, work_root=self.render_root)
        dirs, _hashes = target._render()
        folder = dirs["kubernetes"]
        kubectl = Kubectl(target.kube_context)
        built = [d for d in yaml.safe_load_all(kubectl.kustomize(folder)) if d]
        docs = endpoint_docs(built, endpoint)
        route = next((d for d in docs if d.get("kind") == "HTTPRoute"), None)
        if route is None:
            raise TargetError(f"environment {self.env_name!r} rendered no HTTPRoute for endpoint {endpoint!r}")
        known: dict[str, Any] = fsutil.read_json(self.applied_objects) or {}
        before: list[dict[str, Any]] = []
        after: list[dict[str, Any]] = []
        namespace_docs = [d for d in built if d.get("kind") in ("Namespace", "Gateway")]
        for d in [*namespace_docs, *(d for d in docs if d is not route)]:
            seen = known.get(_key(d))
            if seen is not None and seen.get("digest") == _digest(d):
                continue
            shrinking = seen is not None and max_replicas(d) < int(seen.get("max_replicas", 0))
            (after if shrinking else before).append(d)
        self._apply(kubectl, before, "arms", known)
        self._apply(kubectl, [route], f"httproute/{endpoint}", known)
        self._apply(kubectl, after, "arms scaled down", known)
        self.last_applied = folder
        fsutil.atomic_write_json(self.memory, {ep: p.to_dict() for ep, p in plans.items()})

    def _apply(self, kubectl: Kubectl, docs: list[dict[str, Any]], what: str, known: dict[str, Any]) -> None:
        if not docs:
            return
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, dir=self.render_root) as fh:
            fh.write("---\n".join(yaml.safe_dump(d, sort_keys=True) for d in docs))
            path = Path(fh.name)
        names = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
        try:
            kubectl.apply_file(path, what=f"apply ({what}: {names})")
        except ToolError as exc:
            kind_name = f"{docs[0]['kind'].lower()}/{docs[0]['metadata']['name']}" if len(docs) == 1 else names
            raise conflict_or_error(
                exc, f"{kind_name} -n {docs[0]['metadata'].get('namespace', '')}", kubectl.context or ""
            ) from None
        finally:
            path.unlink(missing_ok=True)
        self.requests.append(names)
        for d in docs:
            known[_key(d)] = {"digest": _digest(d), "max_replicas": max_replicas(d)}
        fsutil.atomic_write_json(self.applied_objects, known)
