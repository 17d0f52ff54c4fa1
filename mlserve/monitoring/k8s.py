"""Monitoring objects of the kubernetes folder: ``monitoring/ENDPOINT.yaml`` per endpoint.

- a ``PrometheusRule`` (prometheus-operator CRD) with the endpoint's SLO burn-rate and drift
  alerts, labelled ``release: kube-prometheus-stack`` so the chart's Prometheus loads it;
- a ``ConfigMap`` holding the Grafana dashboard JSON, labelled ``grafana_dashboard: "1"`` for
  the chart's Grafana sidecar (the platform layer lets it search every namespace);
- with monitoring on, the drift collector: the serving platform's payload logger (KServe's
  ``spec.predictor.logger``, Seldon's ``graph.logger``, rendered on each version with
  ``mode: all``) posts every request and response as a CloudEvent to
  ``/log/ENDPOINT/VERSION`` of a small Deployment running
  ``python -m mlserve.monitoring.collector``; it keeps the same sliding-window summaries as
  the local gateway (:mod:`mlserve.monitoring.summaries`, never payloads) and exports the same
  ``mlserve_drift_*`` and ``mlserve_predictions_total`` series for Prometheus to scrape.
  Its config and the reference profile travel in a ConfigMap.

Objects are built as data and written with a safe YAML dumper, so no manifest value can
change their structure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlserve.errors import ManifestError
from mlserve.monitoring.dashboards import grafana_dashboard
from mlserve.monitoring.rules import dump_yaml, endpoint_rules_from_manifest, rule_groups

COLLECTOR_PORT = 8080
PROMETHEUS_RELEASE = "kube-prometheus-stack"  # the Helm release of the platform layer


def collector_name(endpoint: str) -> str:
    return f"mlserve-drift-{endpoint}"[:63].rstrip("-")


def logger_url(endpoint: str, version: str, namespace: str) -> str:
    return f"http://{collector_name(endpoint)}.{namespace}.svc.cluster.local/log/{endpoint}/{version}"


def _meta(name: str, namespace: str, project: str, env: str, endpoint: str, **labels: str) -> dict[str, Any]:
    base = {
        "app.kubernetes.io/managed-by": "mlserve",
        "mlserve.io/project": project,
        "mlserve.io/environment": env,
        "mlserve.io/monitors": endpoint,
        **labels,
    }
    return {"name": name, "namespace": namespace, "labels": dict(sorted(base.items()))}


def _profile_text(root: Path, name: str, reference: str) -> str:
    from mlserve.monitoring.profile import ProfileError, load_profile

    try:
        prof = load_profile(root / reference)
    except ProfileError as exc:
        raise ManifestError(
            [f"mlserve.toml: endpoints.{name}.monitoring.reference: {exc.message}"],
            hint=exc.hint or 'write it with `mlserve profile DATA -o PATH`, or set reference = "baseline"',
        ) from None
    return json.dumps(prof.to_dict(), sort_keys=True, separators=(",", ":"))


def endpoint_objects(
    manifest: Any, env_name: str, name: str, ep: Any, namespace: str, source: str, root: Path
) -> list[dict[str, Any]]:
    project = manifest.project.name
    r = endpoint_rules_from_manifest(name, ep, namespace, labels={"namespace": namespace})
    objects: list[dict[str, Any]] = []
    groups = rule_groups(r, source)
    if groups:
        objects.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "PrometheusRule",
                "metadata": _meta(f"mlserve-{name}", namespace, project, env_name, name, release=PROMETHEUS_RELEASE),
                "spec": {"groups": groups},
            }
        )
    dashboard = grafana_dashboard(project, env_name, r, source)
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(
                f"mlserve-dashboard-{name}"[:63], namespace, project, env_name, name, grafana_dashboard="1"
            ),
            "data": {f"mlserve-{name}.json": json.dumps(dashboard, indent=1, sort_keys=True)},
        }
    )
    mon = ep.monitoring
    if mon is None:
        return objects
    cname = collector_name(name)
    config = {
        "endpoint": name,
        "baseline": ep.baseline,
        "versions": sorted(ep.versions),
        "monitoring": {
            "profile": None if mon.reference == "baseline" else "/etc/mlserve/profile.json",
            "window": float(mon.window),
            "slots": int(max(1, min(30, mon.window // 10))),
            "min_samples": mon.min_samples,
            "reference_size": mon.reference_size,
            "positive_threshold": mon.positive_threshold,
            "output": mon.output,
            "bins": mon.bins,
        },
    }
    data = {"collector.json": json.dumps(config, indent=1, sort_keys=True)}
    if mon.reference != "baseline":
        data["profile.json"] = _profile_text(root, name, mon.reference)
    selector = {"app.kubernetes.io/name": "mlserve-drift-collector", "mlserve.io/monitors": name}
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(cname, namespace, project, env_name, name),
            "data": data,
        }
    )
    objects.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(
                cname, namespace, project, env_name, name, **{"app.kubernetes.io/name": "mlserve-drift-collector"}
            ),
            "spec": {
                # one replica: the window lives in memory (a second one would split it)
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {
                        "labels": selector,
                        "annotations": {
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(COLLECTOR_PORT),
                            "prometheus.io/path": "/metrics",
                        },
                    },
                    "spec": {
                        "automountServiceAccountToken": False,  # it talks to no API server
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 10001,
                            "runAsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "collector",
                                "image": mon.collector_image,
                                "imagePullPolicy": "Always",
                                "args": [
                                    "python",
                                    "-m",
                                    "mlserve.monitoring.collector",
                                    "--config",
                                    "/etc/mlserve/collector.json",
                                    "--host",
                                    "0.0.0.0",
                                    "--port",
                                    str(COLLECTOR_PORT),
                                ],
                                "ports": [{"name": "http", "containerPort": COLLECTOR_PORT, "protocol": "TCP"}],
                                "readinessProbe": {"httpGet": {"path": "/healthz", "port": COLLECTOR_PORT}},
                                "livenessProbe": {"httpGet": {"path": "/healthz", "port": COLLECTOR_PORT}},
                                "resources": {
                                    "requests": {"cpu": "100m", "memory": "256Mi"},
                                    "limits": {"cpu": "1", "memory": "512Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True,
                                    "runAsUser": 10001,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/mlserve", "readOnly": True}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": cname}}],
                    },
                },
            },
        }
    )
    objects.append(
        {
            # only the payload loggers (this namespace) and Prometheus (monitoring) reach it
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(cname, namespace, project, env_name, name),
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/metadata.name",
                                            "operator": "In",
                                            "values": sorted({namespace, "monitoring"}),
                                        }
                                    ]
                                }
                            }
                        ],
                        "ports": [{"port": COLLECTOR_PORT, "protocol": "TCP"}],
                    }
                ],
            },
        }
    )
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(cname, namespace, project, env_name, name),
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": COLLECTOR_PORT, "protocol": "TCP"}],
            },
        }
    )
    return objects


def monitoring_files(manifest: Any, env_name: str, root: Path, source: str) -> dict[str, str]:
    """``monitoring/ENDPOINT.yaml`` for every endpoint of the environment."""
    env = manifest.environments[env_name]
    namespace = env.namespace or ""
    out = {}
    for name, ep in sorted(manifest.endpoints_in(env_name).items()):
        docs = endpoint_objects(manifest, env_name, name, ep, namespace, source, root)
        header = f"# {name}: SLO and drift alerts, Grafana dashboard{', drift collector' if ep.monitoring else ''}\n"
        out[f"monitoring/{name}.yaml"] = header + "---\n".join(dump_yaml(d) for d in docs)
    return out
