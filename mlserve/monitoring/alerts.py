"""Alerts as ``mlserve status`` shows them: Prometheus' ``/api/v1/alerts`` made flat and
stable (name, state, severity, endpoint, variant, since, summary), firing ones first."""

from __future__ import annotations

from typing import Any

from mlserve.monitoring.prom_api import api_get


def flatten(alert: dict[str, Any]) -> dict[str, Any]:
    labels = alert.get("labels") if isinstance(alert.get("labels"), dict) else {}
    notes = alert.get("annotations") if isinstance(alert.get("annotations"), dict) else {}
    assert isinstance(labels, dict) and isinstance(notes, dict)
    known = {"alertname", "severity", "endpoint", "variant"}
    return {
        "name": str(labels.get("alertname", "")),
        "state": str(alert.get("state", "")),
        "severity": str(labels.get("severity", "")),
        "endpoint": str(labels.get("endpoint", "")),
        "variant": str(labels.get("variant", "")),
        "since": str(alert.get("activeAt", "")),
        "value": str(alert.get("value", "")),
        "summary": str(notes.get("summary", "")),
        "labels": {str(k): str(v) for k, v in labels.items() if k not in known},
    }


def read_alerts(prometheus_url: str, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Pending and firing alerts of ``/api/v1/alerts``, flat, firing ones first, then by age."""
    data = api_get(prometheus_url, "alerts", timeout=timeout)
    alerts = data.get("alerts", []) if isinstance(data, dict) else []
    raw = [a for a in alerts if isinstance(a, dict)]
    raw.sort(key=lambda a: (a.get("state") != "firing", str(a.get("activeAt", ""))))
    return [flatten(a) for a in raw]
