"""A Kubernetes API server stand-in on loopback that the real ``kubectl`` talks to.

No API server can run on this machine, so the cluster path is rehearsed against this one:
mlserve's :class:`~mlserve.tools.kubectl.Kubectl` runs the real kubectl binary (argv
parsing, kustomize, discovery, server-side apply requests, ``diff``, ``wait``, ``get``)
against an HTTP server that answers the way kube-apiserver does for the part mlserve uses:

- discovery (``/api``, ``/apis``, per group-version resource lists) and OpenAPI v3 documents
  that declare ``fieldValidation`` on PATCH, so kubectl leaves validation to the server;
- server-side apply (``application/apply-patch+yaml``) with field managers: each manager
  owns the leaf fields it applied, another manager's differing value is a 409 conflict
  naming the fields and the manager (as ``kubectl apply --server-side`` prints it), ``force``
  takes them over, ``dryRun=All`` changes nothing; lists are atomic (Gateway API's and
  Istio's are ``x-kubernetes-list-type: atomic`` or unmarked, which CRDs treat as atomic);
- every applied object validated against its CRD's ``openAPIV3Schema`` (strict: unknown
  fields are errors; CEL ``x-kubernetes-validations`` are not evaluated) or, for core
  kinds, the Kubernetes OpenAPI schema (kubernetes-validate): an invalid object is a 422;
- a kind whose CRD is not installed is missing from discovery, so kubectl fails with its own
  "no matches for kind ... ensure CRDs are installed first";
- status written by stand-in controllers the way KServe (conditions ``PredictorReady``,
  ``IngressReady``, ``Ready``, ``components.predictor``, ``modelStatus``; an
  LLMInferenceService's ``MainWorkloadReady``, ``RouterReady``, ``Ready``) and Seldon Core v1
  (``state: Available``, ``deploymentStatus``, conditions) report it;
- list with label and field selectors, and watch (one event per matching object, enough for
  ``kubectl wait``).

Tests change objects "as someone else" with :meth:`FakeCluster.update` (a non-apply update
by another manager, the way ``kubectl edit`` or ``kubectl scale`` would) and read what was
applied with :meth:`FakeCluster.get` and :attr:`FakeCluster.requests`.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.render.k8s_schemas import CRD_DIR, InvalidObject, crd_documents, validate_object

Path_ = tuple[str, ...]
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    status: bool = True  # has a status subresource

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version


CORE: tuple[Resource, ...] = (
    Resource("", "v1", "Namespace", "namespaces", namespaced=False),
    Resource("", "v1", "Service", "services"),
    Resource("", "v1", "ConfigMap", "configmaps", status=False),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", status=False),
    Resource("apps", "v1", "Deployment", "deployments"),
    Resource("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Resource("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", status=False),
    Resource("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
)


def crd_resources(paths: Iterable[Path]) -> list[Resource]:
    return [r for path in paths for r in _resources_of(Path(path).resolve())]


@functools.cache
def _resources_of(path: Path) -> tuple[Resource, ...]:
    """The resources one CRD file serves (the files are megabytes of YAML, parsed once per
    process: a few seconds each on a busy machine, and every rehearsal starts a cluster)."""
    out = []
    for doc in crd_documents(path):
        spec = doc["spec"]
        for v in spec["versions"]:
            if not v.get("served", True):
                continue
            out.append(
                Resource(
                    spec["group"],
                    v["name"],
                    spec["names"]["kind"],
                    spec["names"]["plural"],
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                    status="status" in (v.get("subresources") or {}),
                )
            )
    return tuple(out)


def all_crd_files() -> list[Path]:
    return sorted(CRD_DIR.glob("*.yaml"))


# ---------------------------------------------------------------------------
# field sets (server-side apply)
# ---------------------------------------------------------------------------


def leaves(obj: Any, prefix: Path_ = ()) -> dict[Path_, Any]:
    """Leaf paths of an object; a list is one leaf (atomic), an empty map is a leaf too."""
    if isinstance(obj, dict) and obj:
        out: dict[Path_, Any] = {}
        for k, v in obj.items():
            out.update(leaves(v, (*prefix, str(k))))
        return out
    return {prefix: obj}


def lookup(obj: Any, path: Path_) -> tuple[bool, Any]:
    cur = obj
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return False, None
        cur = cur[p]
    return True, cur


def put(obj: dict[str, Any], path: Path_, value: Any) -> None:
    cur = obj
    for p in path[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[path[-1]] = copy.deepcopy(value)


def remove(obj: dict[str, Any], path: Path_) -> None:
    chain = [obj]
    cur: Any = obj
    for p in path[:-1]:
        if not isinstance(cur, dict) or p not in cur:
            return
        cur = cur[p]
        chain.append(cur)
    if isinstance(cur, dict):
        cur.pop(path[-1], None)
    # drop maps emptied by the removal
    for depth in range(len(path) - 1, 0, -1):
        parent, key = chain[depth - 1], path[depth - 1]
        if isinstance(parent.get(key), dict) and not parent[key]:
            del parent[key]


def overlaps(a: Path_, b: Path_) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def dotted(path: Path_) -> str:
    return "." + ".".join(path)


def fields_v1(paths: Iterable[Path_]) -> dict[str, Any]:
    """A managedFields ``fieldsV1`` tree (``f:`` prefixed keys)."""
    tree: dict[str, Any] = {}
    for p in sorted(paths):
        cur = tree
        for part in p:
            cur = cur.setdefault(f"f:{part}", {})
    return tree


MANAGED_META = {"name", "namespace"}  # identity, not owned


@dataclass
class Stored:
    obj: dict[str, Any]
    managers: dict[str, set[Path_]] = field(default_factory=dict)  # manager -> leaf paths it owns
    operations: dict[str, str] = field(default_factory=dict)  # manager -> Apply | Update


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.causes = code, reason, message, causes or []

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.causes:
            out["details"] = {"causes": self.causes}
        return out


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------
# controllers: status as KServe and Seldon report it
# ---------------------------------------------------------------------------


def _condition(kind: str, status: str = "True") -> dict[str, str]:
    return {"type": kind, "status": status, "lastTransitionTime": _now()}


def kserve_status(obj: dict[str, Any], generation: int) -> dict[str, Any]:
    meta, spec = obj["metadata"], obj.get("spec", {})
    name, ns = meta["name"], meta.get("namespace", "default")
    mode = (meta.get("annotations") or {}).get("serving.kserve.io/deploymentMode", "Serverless")
    predictor: dict[str, Any] = {"url": f"http://{name}-predictor.{ns}.svc.cluster.local"}
    if mode != "RawDeployment":
        revision = f"{name}-predictor-{generation:05d}"
        predictor.update(
            latestCreatedRevision=revision,
            latestReadyRevision=revision,
            traffic=[{"revisionName": revision, "percent": 100, "latestRevision": True}],
        )
    replicas = int(spec.get("predictor", {}).get("minReplicas", 1) or 0)
    return {
        "observedGeneration": generation,
        "url": f"http://{name}.{ns}.svc.cluster.local",
        "address": {"url": f"http://{name}-predictor.{ns}.svc.cluster.local"},
        "components": {"predictor": predictor},
        "conditions": [_condition("IngressReady"), _condition("PredictorReady"), _condition("Ready")],
        "modelStatus": {
            "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
            "transitionStatus": "UpToDate",
            "copies": {"failedCopies": 0, "totalCopies": max(replicas, 1)},
        },
        "deploymentMode": mode,
    }


def seldon_status(obj: dict[str, Any], generation: int) -> dict[str, Any]:
    meta, spec = obj["metadata"], obj.get("spec", {})
    name, ns = meta["name"], meta.get("namespace", "default")
    deployments = {}
    for p in spec.get("predictors", []) or []:
        replicas = int(p.get("replicas", 1) or 1)
        deployments[f"{name}-{p['name']}-0-model"] = {"availableReplicas": replicas, "replicas": replicas}
    return {
        "state": "Available",
        "deploymentStatus": deployments,
        "address": {"url": f"http://{name}-default.{ns}.svc.cluster.local:8000/api/v1.0/predictions"},
        "conditions": [_condition("DeploymentsReady"), _condition("ServicesReady"), _condition("Ready")],
        "replicas": sum(d["replicas"] for d in deployments.values()),
        "observedGeneration": generation,
    }


def llm_status(obj: dict[str, Any], generation: int) -> dict[str, Any]:
    """KServe's LLMInferenceService status (v1alpha1 has no ``workloads``: the Deployment it
    runs is ``NAME-kserve`` by KServe's naming)."""
    meta = obj["metadata"]
    name, ns = meta["name"], meta.get("namespace", "default")
    return {
        "observedGeneration": generation,
        "url": f"http://{name}.{ns}.svc.cluster.local",
        "address": {"url": f"http://{name}-kserve-workload-svc.{ns}.svc.cluster.local:8000"},
        "conditions": [
            _condition("MainWorkloadReady"), _condition("RouterReady"), _condition("PresetsCombined"),
            _condition("Ready"),
        ],
    }  # fmt: skip


def not_ready(status: dict[str, Any]) -> dict[str, Any]:
    """A status whose workload is still starting: conditions False, Seldon's state Creating."""
    out = dict(status, conditions=[dict(c, status="False") for c in status.get("conditions", [])])
    if "state" in out:
        out["state"] = "Creating"
    return out


CONTROLLERS: dict[str, Callable[[dict[str, Any], int], dict[str, Any]]] = {
    "InferenceService": kserve_status,
    "LLMInferenceService": llm_status,
    "SeldonDeployment": seldon_status,
}


# ---------------------------------------------------------------------------
# the cluster
# ---------------------------------------------------------------------------


class FakeCluster:
    """Objects, field managers and the HTTP server kubectl talks to."""

    def __init__(self, crd_files: Iterable[Path] | None = None, *, version: str = "1.31") -> None:
        files = list(all_crd_files() if crd_files is None else crd_files)
        self.resources = [*CORE, *crd_resources(files)]
        self.version = version
        self.store: dict[tuple[str, str, str, str], Stored] = {}  # (group, plural, ns, name)
        self.requests: list[dict[str, Any]] = []  # every mutating request: method, path, manager, kind, name
        self.lock = threading.RLock()
        self.fail_next: list[ApiError] = []  # errors returned by the next mutating requests
        # names of objects whose controller reports them not ready (a server still starting)
        self.unready: set[str] = set()
        self.validated: list[tuple[str, str, str]] = []  # (kind, name, how) of every object checked on apply
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.rv = 1

    # -- lookups -----------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Resource | None:
        return next((r for r in self.resources if r.api_version == api_version and r.kind == kind), None)

    def by_plural(self, group: str, version: str, plural: str) -> Resource | None:
        return next(
            (r for r in self.resources if r.group == group and r.version == version and r.plural == plural), None
        )

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        with self.lock:
            for (_g, _p, ns, n), st in self.store.items():
                if st.obj.get("kind") == kind and n == name and (namespace is None or ns == namespace):
                    return copy.deepcopy(st.obj)
        return None

    def objects(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(s.obj) for s in self.store.values() if kind is None or s.obj.get("kind") == kind]

    def owners(self, kind: str, name: str, namespace: str) -> dict[str, set[Path_]]:
        with self.lock:
            for (_g, _p, ns, n), st in self.store.items():
                if st.obj.get("kind") == kind and n == name and ns == namespace:
                    return {m: set(p) for m, p in st.managers.items()}
        return {}

    # -- serving -----------------------------------------------------------------

    def start(self) -> str:
        handler = _handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def kubeconfig(self, path: Path, contexts: Iterable[str]) -> Path:
        names = list(contexts)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "rehearsal", "cluster": {"server": self.url}}],
            "users": [{"name": "rehearsal", "user": {}}],
            "contexts": [{"name": n, "context": {"cluster": "rehearsal", "user": "rehearsal"}} for n in names],
            "current-context": names[0],
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    # -- writes ------------------------------------------------------------------

    def _key(self, res: Resource, ns: str, name: str) -> tuple[str, str, str, str]:
        return (res.group, res.plural, ns if res.namespaced else "", name)

    def apply(
        self,
        res: Resource,
        ns: str,
        name: str,
        body: dict[str, Any],
        *,
        manager: str,
        force: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Server-side apply of ``body`` by ``manager``."""
        if body.get("kind") != res.kind or body.get("apiVersion") != res.api_version:
            raise ApiError(400, "BadRequest", f"the body's kind/apiVersion do not match {res.plural}")
        if res.namespaced and ns and ns not in {n for (_g, p, _ns, n) in self.store if p == "namespaces"}:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found')
        applied = copy.deepcopy(body)
        applied.pop("status", None)
        meta = applied.setdefault("metadata", {})
        meta.setdefault("name", name)
        if res.namespaced:
            meta.setdefault("namespace", ns)
        try:
            how = validate_object(applied)
            with self.lock:
                self.validated.append((res.kind, name, how))
        except InvalidObject as exc:
            raise ApiError(
                422,
                "Invalid",
                f'{res.kind}.{res.group or "core"} "{name}" is invalid: {exc}',
                [{"reason": "FieldValueInvalid", "message": str(exc)}],
            ) from None
        with self.lock:
            key = self._key(res, ns, name)
            stored = self.store.get(key)
            live = copy.deepcopy(stored.obj) if stored else {"apiVersion": res.api_version, "kind": res.kind}
            managers = {m: set(p) for m, p in (stored.managers if stored else {}).items()}
            mine = {p: v for p, v in leaves(_owned_part(applied)).items() if p}
            conflicts: list[tuple[str, Path_]] = []
            for other, paths in managers.items():
                if other == manager:
                    continue
                for p in paths:
                    for q, value in mine.items():
                        if not overlaps(p, q):
                            continue
                        found, current = lookup(live, q)
                        if not found or current != value:
                            conflicts.append((other, p))
                            break
            if conflicts and not force:
                causes = [
                    {
                        "reason": "FieldManagerConflict",
                        "message": f'conflict with "{m}"',
                        "field": dotted(p),
                    }
                    for m, p in sorted(set(conflicts))
                ]
                gv = res.api_version
                found = sorted(set(conflicts))
                if len(found) == 1:
                    m, p = found[0]
                    text = f'Apply failed with 1 conflict: conflict with "{m}" using {gv}: {dotted(p)}'
                else:
                    text = f"Apply failed with {len(found)} conflicts: " + "\n".join(
                        f'conflict with "{m}" using {gv}: {dotted(p)}' for m, p in found
                    )
                raise ApiError(409, "Conflict", text, causes)
            new = copy.deepcopy(live)
            # fields this manager applied before and applies no more are removed unless shared
            for p in managers.get(manager, set()) - set(mine):
                shared = any(p in ps for m, ps in managers.items() if m != manager)
                if not shared:
                    remove(new, p)
            for p, v in mine.items():
                put(new, p, v)
            new["metadata"]["name"] = name
            if res.namespaced:
                new["metadata"]["namespace"] = ns
            for other in list(managers):
                if other == manager:
                    continue
                kept = set()
                for p in managers[other]:
                    clash = [q for q in mine if overlaps(p, q)]
                    if not clash or (p in mine and lookup(live, p) == (True, mine[p])):
                        kept.add(p)  # untouched, or shared: both managers applied the same value
                if kept:
                    managers[other] = kept
                else:
                    del managers[other]
            managers[manager] = set(mine)
            if dry_run:
                return self._decorate(new, managers, stored, changed=new != live)
            generation = int((live.get("metadata") or {}).get("generation", 0))
            spec_changed = (live.get("spec") != new.get("spec")) or stored is None
            meta_new = new["metadata"]
            meta_new["generation"] = generation + 1 if spec_changed else max(generation, 1)
            meta_new.setdefault("uid", str(uuid.uuid4()))
            meta_new.setdefault("creationTimestamp", _now())
            if stored is not None and "status" in stored.obj:
                new["status"] = stored.obj["status"]
            ops = dict(stored.operations) if stored else {}
            ops[manager] = "Apply"
            out = self._decorate(new, managers, stored, changed=new != live, operations=ops)
            self.store[key] = Stored(out, managers, ops)
            controller = CONTROLLERS.get(res.kind)
            if controller is not None:
                out["status"] = controller(out, int(meta_new["generation"]))
                if meta_new["name"] in self.unready:
                    out["status"] = not_ready(out["status"])
            return copy.deepcopy(out)

    def make_ready(self, kind: str, name: str, namespace: str) -> None:
        """The controller's next report on a held object: ready (its server has started)."""
        with self.lock:
            self.unready.discard(name)
            for st in self.store.values():
                meta = st.obj.get("metadata") or {}
                if st.obj.get("kind") == kind and meta.get("name") == name and meta.get("namespace") == namespace:
                    controller = CONTROLLERS[kind]
                    st.obj["status"] = controller(st.obj, int(meta.get("generation", 1)))
                    self.rv += 1
                    meta["resourceVersion"] = str(self.rv)

    def update(
        self, kind: str, name: str, namespace: str, changes: Mapping[str, Any], *, manager: str = "kubectl-edit"
    ) -> dict[str, Any]:
        """A non-apply update by another manager (``kubectl edit``): ``changes`` maps dotted
        paths (``spec.rules``) to new values; the manager takes ownership of them."""
        with self.lock:
            for key, st in self.store.items():
                if st.obj.get("kind") == kind and key[3] == name and key[2] == namespace:
                    for dotted_path, value in changes.items():
                        path = tuple(dotted_path.split("."))
                        put(st.obj, path, value)
                        owned = set(leaves(value, path))
                        for m in list(st.managers):
                            st.managers[m] = {p for p in st.managers[m] if not any(overlaps(p, q) for q in owned)}
                            if not st.managers[m]:
                                del st.managers[m]
                        st.managers.setdefault(manager, set()).update(owned)
                        st.operations[manager] = "Update"
                    st.obj["metadata"]["generation"] = int(st.obj["metadata"].get("generation", 1)) + 1
                    st.obj = self._decorate(st.obj, st.managers, st, changed=True, operations=st.operations)
                    self.requests.append({"method": "UPDATE", "manager": manager, "kind": kind, "name": name})
                    return copy.deepcopy(st.obj)
        raise KeyError(f"{kind}/{name} in {namespace}")

    def _decorate(
        self,
        obj: dict[str, Any],
        managers: Mapping[str, set[Path_]],
        stored: Stored | None,
        *,
        changed: bool,
        operations: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if changed or stored is None:
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
        ops = operations or {}
        meta["managedFields"] = [
            {
                "manager": m,
                "operation": ops.get(m, "Apply"),
                "apiVersion": obj.get("apiVersion"),
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_v1(paths),
                "time": _now(),
            }
            for m, paths in sorted(managers.items())
        ]
        return obj

    def delete(self, res: Resource, ns: str, name: str) -> dict[str, Any]:
        with self.lock:
            st = self.store.pop(self._key(res, ns, name), None)
        if st is None:
            raise ApiError(404, "NotFound", f'{res.plural}.{res.group} "{name}" not found')
        return st.obj

    def list(self, res: Resource, ns: str | None, query: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        labels = _selector(query.get("labelSelector", [""])[0])
        fields = _selector(query.get("fieldSelector", [""])[0])
        out = []
        with self.lock:
            for (g, p, ons, name), st in sorted(self.store.items()):
                if g != res.group or p != res.plural or (ns and res.namespaced and ons != ns):
                    continue
                meta = st.obj.get("metadata", {})
                if any((meta.get("labels") or {}).get(k) != v for k, v in labels.items()):
                    continue
                if fields.get("metadata.name", name) != name:
                    continue
                if fields.get("metadata.namespace", ons) != ons:
                    continue
                out.append(copy.deepcopy(st.obj))
        return out


def _owned_part(obj: dict[str, Any]) -> dict[str, Any]:
    """What a manager owns when it applies ``obj``: everything but identity and bookkeeping."""
    out = copy.deepcopy(obj)
    out.pop("apiVersion", None)
    out.pop("kind", None)
    meta = out.get("metadata", {})
    for k in (*MANAGED_META, "managedFields", "resourceVersion", "uid", "generation", "creationTimestamp"):
        meta.pop(k, None)
    if not meta:
        out.pop("metadata", None)
    return out


def _selector(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "==" in part:
            k, v = part.split("==", 1)
        elif "=" in part:
            k, v = part.split("=", 1)
        else:
            continue
        out[k.strip()] = v.strip()
    return out


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


def _discovery(cluster: FakeCluster) -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for r in cluster.resources:
        if r.group:
            versions = groups.setdefault(r.group, [])
            if r.version not in versions:
                versions.append(r.version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": g,
                "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
            }
            for g, vs in sorted(groups.items())
        ],
    }


def _resource_list(cluster: FakeCluster, group: str, version: str) -> dict[str, Any] | None:
    found = [r for r in cluster.resources if r.group == group and r.version == version]
    if not found:
        return None
    items = []
    for r in found:
        items.append(
            {
                "name": r.plural,
                "singularName": r.kind.lower(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
        )
        if r.status:
            items.append({"name": f"{r.plural}/status", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": found[0].group_version, "resources": items}


def _openapi_root(cluster: FakeCluster) -> dict[str, Any]:
    paths = {}
    for gv in sorted({r.group_version for r in cluster.resources}):
        rel = "api/v1" if gv == "v1" else f"apis/{gv}"
        paths[rel] = {"serverRelativeURL": f"/openapi/v3/{rel}?hash=rehearsal"}
    return {"paths": paths}


def _openapi_doc(cluster: FakeCluster, group: str, version: str) -> dict[str, Any] | None:
    found = [r for r in cluster.resources if r.group == group and r.version == version]
    if not found:
        return None
    paths = {}
    for r in found:
        base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        tail = f"namespaces/{{namespace}}/{r.plural}/{{name}}" if r.namespaced else f"{r.plural}/{{name}}"
        paths[f"{base}/{tail}"] = {
            "patch": {
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": r.kind},
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": "string"}}
                    for n in ("dryRun", "fieldManager", "fieldValidation", "force")
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": cluster.version}, "paths": paths}


def _handler(cluster: FakeCluster) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, err: ApiError) -> None:
            self._send(err.code, err.status())

        def _route(self) -> tuple[Resource, str, str | None, dict[str, list[str]]] | None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            seg = [s for s in parts.path.split("/") if s]
            if seg[:1] == ["api"]:
                group, version, rest = "", seg[1], seg[2:]
            elif seg[:1] == ["apis"] and len(seg) >= 3:
                group, version, rest = seg[1], seg[2], seg[3:]
            else:
                return None
            ns = ""
            if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
                ns, rest = rest[1], rest[2:]
            if not rest:
                return None
            res = cluster.by_plural(group, version, rest[0])
            if res is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            name = rest[1] if len(rest) > 1 else None
            if res.plural == "namespaces" and name is None and len(rest) == 1:
                name = None
            return res, ns, name, query

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            p = parts.path.rstrip("/")
            if p == "/version":
                major, minor = cluster.version.split(".")
                self._send(200, {"major": major, "minor": minor, "gitVersion": f"v{cluster.version}.0"})
                return
            if p == "/api":
                self._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
                return
            if p == "/apis":
                self._send(200, _discovery(cluster))
                return
            if p == "/openapi/v3":
                self._send(200, _openapi_root(cluster))
                return
            if p == "/openapi/v2":  # asked for a kind without a v3 document (no CRD): no schemas
                # an empty openapi_v2.Document, protobuf-encoded, is zero bytes
                self.send_response(200)
                self.send_header("Content-Type", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if p.startswith("/openapi/v3/"):
                rel = p[len("/openapi/v3/") :].split("/")
                group, version = ("", rel[1]) if rel[0] == "api" else (rel[1], rel[2])
                doc = _openapi_doc(cluster, group, version)
                if doc is None:
                    self._error(ApiError(404, "NotFound", "the server could not find the requested resource"))
                else:
                    self._send(200, doc)
                return
            seg = [s for s in p.split("/") if s]
            if (seg[:1] == ["api"] and len(seg) == 2) or (seg[:1] == ["apis"] and len(seg) == 3):
                group, version = ("", seg[1]) if seg[0] == "api" else (seg[1], seg[2])
                listing = _resource_list(cluster, group, version)
                if listing is None:
                    self._error(ApiError(404, "NotFound", "the server could not find the requested resource"))
                else:
                    self._send(200, listing)
                return
            try:
                routed = self._route()
                if routed is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                res, ns, name, query = routed
                if name is not None:
                    obj = next(iter(cluster.list(res, ns, {"fieldSelector": [f"metadata.name={name}"]})), None)
                    if obj is None:
                        raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
                    self._send(200, obj)
                    return
                items = cluster.list(res, ns or None, query)
                if query.get("watch", ["false"])[0] in ("true", "1"):
                    self._watch(items)
                    return
                self._send(
                    200,
                    {
                        "kind": f"{res.kind}List",
                        "apiVersion": res.api_version,
                        "metadata": {"resourceVersion": str(cluster.rv)},
                        "items": items,
                    },
                )
            except ApiError as err:
                self._error(err)

        def _watch(self, items: list[dict[str, Any]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for obj in items:
                line = json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

        def do_PATCH(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            try:
                routed = self._route()
                if routed is None or routed[2] is None:
                    raise ApiError(405, "MethodNotAllowed", "patch needs an object")
                res, ns, name, query = routed
                assert name is not None
                ctype = self.headers.get("Content-Type", "")
                if "apply-patch" not in ctype:
                    raise ApiError(415, "UnsupportedMediaType", f"only server-side apply is served here (got {ctype})")
                body = yaml.load(raw.decode(), Loader=_LOADER) or {}
                manager = query.get("fieldManager", [""])[0]
                if not manager:
                    raise ApiError(422, "Invalid", "PatchOptions.meta.k8s.io is invalid: fieldManager: Required value")
                dry = query.get("dryRun", [""])[0] == "All"
                force = query.get("force", ["false"])[0] == "true"
                entry = {"method": "PATCH", "manager": manager, "kind": res.kind, "name": name, "dry_run": dry}
                with cluster.lock:
                    cluster.requests.append(entry)
                    if cluster.fail_next and not dry:
                        raise cluster.fail_next.pop(0)
                out = cluster.apply(res, ns, name, body, manager=manager, force=force, dry_run=dry)
                self._send(200, out)
            except ApiError as err:
                self._error(err)
            except yaml.YAMLError as exc:
                self._error(ApiError(400, "BadRequest", f"invalid apply patch: {exc}"))

        def do_DELETE(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            if length:
                self.rfile.read(length)
            try:
                routed = self._route()
                if routed is None or routed[2] is None:
                    raise ApiError(405, "MethodNotAllowed", "delete needs an object")
                res, ns, name, _q = routed
                assert name is not None
                with cluster.lock:
                    cluster.requests.append({"method": "DELETE", "kind": res.kind, "name": name})
                obj = cluster.delete(res, ns, name)
                self._send(200, obj)
            except ApiError as err:
                self._error(err)

    return Handler
