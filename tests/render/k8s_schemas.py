"""Strict offline validation of rendered Kubernetes objects.

Custom resources are checked against the upstream CRD schemas in /work/shared/crds
(``openAPIV3Schema`` of the object's version) with ``additionalProperties: false``
injected wherever a schema lists properties and does not say otherwise, so an unknown
field is an error, as ``kubectl apply --validate=strict`` reports it. Schemas marked
``x-kubernetes-preserve-unknown-fields`` keep accepting anything. Core kinds go
through ``kubernetes-validate`` in strict mode.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml


def _crd_dir() -> Path:
    """The upstream CRD schemas: ../shared/crds beside the repository (where CI puts it),
    or MLSERVE_CRDS_DIR."""
    import os

    if os.environ.get("MLSERVE_CRDS_DIR"):
        return Path(os.environ["MLSERVE_CRDS_DIR"])
    beside = Path(__file__).resolve().parents[3] / "shared" / "crds"
    return beside if beside.is_dir() else Path("/work/shared/crds")


CRD_DIR = _crd_dir()
K8S_VERSION = "1.31.0"
CORE_GROUPS = ("v1", "apps/", "policy/", "networking.k8s.io/", "autoscaling/", "rbac.authorization.k8s.io/")
META_FIELDS = {"name", "namespace", "labels", "annotations"}
# The CRD files are megabytes of YAML: libyaml reads them in a second, pure Python in a minute.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def strictify(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: strictify(v) for k, v in schema.items()}
        if out.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strictify(s) for s in schema]
    return schema


@functools.cache
def crd_documents(path: Path) -> tuple[dict[str, Any], ...]:
    """The CustomResourceDefinitions in one file, read once per process (shared with the
    rehearsal's API server stand-in; nobody changes them)."""
    docs = yaml.load_all(path.read_text(encoding="utf-8"), Loader=_LOADER)
    return tuple(d for d in docs if d and d.get("kind") == "CustomResourceDefinition")


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the upstream openAPIV3Schema (strictified on first use)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for doc in crd_documents(path.resolve()):
            group = doc["spec"]["group"]
            kind = doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                out[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return out


@functools.cache
def _validator(key: tuple[str, str]) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(strictify(copy.deepcopy(crd_schemas()[key])))


class InvalidObject(AssertionError):
    pass


def validate_object(obj: dict[str, Any]) -> str:
    """Raise InvalidObject when ``obj`` is not valid; return how it was checked."""
    api, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    name = f"{kind}/{obj.get('metadata', {}).get('name')}"
    key = (api, kind)
    if key in crd_schemas():
        extra = set(obj.get("metadata", {})) - META_FIELDS
        if extra:
            raise InvalidObject(f"{name}: unexpected metadata fields {sorted(extra)}")
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        validator = _validator(key)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:300]}" for e in errors[:10]]
            raise InvalidObject(f"{name} ({api}) fails its CRD schema:\n" + "\n".join(lines))
        return "crd"
    if api.startswith(CORE_GROUPS) or api == "v1":
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise InvalidObject(f"{name} ({api}): {exc.message}") from None
        return "core"
    raise InvalidObject(f"{name}: no schema for {api} {kind}")
