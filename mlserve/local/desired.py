"""The desired-state document (``.mlserve/local/desired.json``) and the parts derived from it.

``deploy`` plans a whole document from the manifest (:func:`mlserve.local.plan.build_plan`);
the arms API (:mod:`mlserve.local.arms`) adds or removes one model server in the running
one. Both then call :func:`refresh`, so that what depends on the process list (the scrape
configuration, the config fingerprints that tell the supervisor to reload rather than
restart) is computed in one place, and :func:`write` it for the supervisor. The extra arms
a deploy keeps are listed beside it (``.mlserve/local/arms.json``, :func:`load_arms`).

Document (``format`` = ``mlserve.local.desired/v1``, ``protocol`` 2)::

    {"format": ..., "protocol": 2, "generation": N, "env": "local", "project_root": ...,
     "gateway_url": ..., "admin_url": ..., "prometheus_url": ...,
     "processes": [ProcessSpec, ...],          # model servers, the gateway, Prometheus
     "gateway": {mlserve.gateway/v1 config},  # every arm at the server deploy planned for it
     "scrape": {"project": ..., "interval": 1.0, "config_file": ..., "targets": [...],
                "rule_files": {path: digest of its text}}}   # rule_files: only with SLOs or monitoring
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from mlserve import fsutil
from mlserve.local.prometheus import ScrapeTarget, render_config
from mlserve.local.state import LocalPaths, ProcessSpec, read_json

PROTOCOL = 2
ARMS_FORMAT = "mlserve.local.arms/v1"
GATEWAY_JOB = "mlserve-gateway"
MODEL_JOB = "mlserve-model-servers"


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def model_target(spec: ProcessSpec, runtime: str) -> ScrapeTarget | None:
    """The scrape target of a model server's own metrics (labelled by endpoint, version, arm)."""
    if not spec.metrics_url:
        return None
    address, _, path = spec.metrics_url.removeprefix("http://").partition("/")
    labels = {"endpoint": spec.endpoint or "", "version": spec.version or "", "runtime": runtime}
    if spec.route != spec.version:
        labels["arm"] = spec.route
    return ScrapeTarget(job=MODEL_JOB, address=address, metrics_path="/" + path, labels=labels)


def refresh(doc: dict[str, Any]) -> dict[str, str]:
    """Recompute the derived parts in place; returns the files to write (prometheus.yml).

    Prometheus' config fingerprint covers its rule files' texts too (their digests), so a
    change of the alert rules alone reloads it in place."""
    scrape = doc.get("scrape") or {}
    targets = [ScrapeTarget.from_dict(t) for t in scrape.get("targets", [])]
    rules = dict(scrape.get("rule_files") or {})
    text = render_config(
        str(scrape.get("project", "")), float(scrape.get("interval", 2.0)), targets, rule_files=sorted(rules)
    )
    for proc in doc.get("processes", []):
        if proc.get("kind") == "prometheus":
            proc["config_fingerprint"] = fingerprint(text, rules) if rules else fingerprint(text)
        elif proc.get("kind") == "gateway":  # the generation alone changes nothing the gateway does
            proc["config_fingerprint"] = fingerprint({**(doc.get("gateway") or {}), "generation": 0})
    return {str(scrape["config_file"]): text} if scrape.get("config_file") else {}


def write(paths: LocalPaths, doc: dict[str, Any], files: dict[str, str]) -> None:
    """The derived files first, then desired.json (0600: a version's env may carry credentials)."""
    for path, text in files.items():
        p = Path(path)
        try:
            if p.read_text(encoding="utf-8") == text:
                continue
        except OSError:
            pass
        fsutil.atomic_write_text(p, text)
    fsutil.atomic_write_json(paths.desired, doc, mode=0o600)


def with_model(doc: dict[str, Any], spec: ProcessSpec, runtime: str) -> dict[str, Any]:
    """A copy of ``doc`` that also runs ``spec`` (one more model server of an endpoint)."""
    out = copy.deepcopy(doc)
    out["processes"].insert(_first_non_model(out), spec.__dict__)
    ep = out["gateway"]["endpoints"][spec.endpoint]
    ep["versions"][spec.route] = f"http://127.0.0.1:{spec.port}"
    ep.setdefault("traffic", {}).setdefault("weights", {})[spec.route] = 0
    target = model_target(spec, runtime)
    if target is not None:
        out.setdefault("scrape", {}).setdefault("targets", []).append(target.to_dict())
    return out


def without_model(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of ``doc`` without the model server ``name`` (and its route and scrape target)."""
    out = copy.deepcopy(doc)
    spec = next((p for p in out["processes"] if p["name"] == name), None)
    if spec is None:
        return out
    out["processes"] = [p for p in out["processes"] if p["name"] != name]
    arm = spec.get("arm") or spec.get("version")
    ep = out["gateway"]["endpoints"].get(spec.get("endpoint"), {})
    ep.get("versions", {}).pop(arm, None)
    ep.get("faults", {}).pop(arm, None)
    weights = ep.get("traffic", {}).get("weights", {})
    moved = int(weights.pop(arm, 0))
    if moved and ep.get("baseline") in weights:
        weights[ep["baseline"]] += moved
    address = (spec.get("metrics_url") or "").removeprefix("http://").partition("/")[0]
    scrape = out.get("scrape") or {}
    scrape["targets"] = [t for t in scrape.get("targets", []) if t.get("address") != address]
    return out


def _first_non_model(doc: dict[str, Any]) -> int:
    procs = doc["processes"]
    return next((i for i, p in enumerate(procs) if p.get("kind") != "model"), len(procs))


def load_arms(paths: LocalPaths) -> list[dict[str, str]]:
    """The extra arms (:mod:`mlserve.local.arms`) a deploy keeps: ``.mlserve/local/arms.json``."""
    data = read_json(paths.arms) or {}
    arms = data.get("arms") or []
    return [
        {"endpoint": str(a["endpoint"]), "name": str(a["name"]), "version": str(a["version"])}
        for a in arms
        if isinstance(a, dict) and {"endpoint", "name", "version"} <= set(a)
    ]


def save_arms(paths: LocalPaths, arms: list[dict[str, str]]) -> None:
    fsutil.atomic_write_json(paths.arms, {"format": ARMS_FORMAT, "arms": arms})
