"""The structure of a Grafana dashboard as Grafana documents its JSON model, for checking the
dashboards of :mod:`mlserve.monitoring.dashboards` (only what mlserve emits is allowed)."""

from __future__ import annotations

from typing import Any

# Structure of a dashboard as Grafana documents its JSON model ("JSON model" page of the
# Grafana docs: top-level uid/title/panels/schemaVersion/time/templating/annotations; each
# panel's id/type/title/gridPos on the 24-column grid/targets). Only what mlserve emits is
# allowed, so an unexpected key fails a test before it is a surprise in Grafana.
DASHBOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["uid", "title", "panels", "schemaVersion", "time", "templating", "annotations"],
    "additionalProperties": False,
    "properties": {
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "timezone": {"enum": ["browser", "utc", ""]},
        "editable": {"type": "boolean"},
        "graphTooltip": {"enum": [0, 1, 2]},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "version": {"type": "integer"},
        "refresh": {"type": "string", "pattern": "^[0-9]+[smhd]$"},
        "time": {
            "type": "object",
            "required": ["from", "to"],
            "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
            "additionalProperties": False,
        },
        "templating": {
            "type": "object",
            "required": ["list"],
            "additionalProperties": False,
            "properties": {
                "list": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "type"],
                        "properties": {
                            "name": {"type": "string"},
                            "label": {"type": "string"},
                            "type": {"enum": ["datasource", "query", "custom", "interval", "constant"]},
                            "query": {"type": "string"},
                            "current": {"type": "object"},
                            "hide": {"enum": [0, 1, 2]},
                        },
                        "additionalProperties": False,
                    },
                }
            },
        },
        "annotations": {
            "type": "object",
            "required": ["list"],
            "additionalProperties": False,
            "properties": {
                "list": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "datasource", "enable", "expr"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "datasource": {"$ref": "#/$defs/datasource"},
                            "enable": {"type": "boolean"},
                            "iconColor": {"type": "string"},
                            "expr": {"type": "string", "minLength": 1},
                            "step": {"type": "string"},
                            "titleFormat": {"type": "string"},
                            "textFormat": {"type": "string"},
                        },
                    },
                }
            },
        },
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos", "targets", "datasource"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "type": {"enum": ["timeseries", "stat", "gauge", "table", "bargauge"]},
                    "title": {"type": "string", "minLength": 1},
                    "description": {"type": "string"},
                    "datasource": {"$ref": "#/$defs/datasource"},
                    "gridPos": {
                        "type": "object",
                        "required": ["h", "w", "x", "y"],
                        "additionalProperties": False,
                        "properties": {
                            "h": {"type": "integer", "minimum": 1},
                            "w": {"type": "integer", "minimum": 1, "maximum": 24},
                            "x": {"type": "integer", "minimum": 0, "maximum": 23},
                            "y": {"type": "integer", "minimum": 0},
                        },
                    },
                    "fieldConfig": {
                        "type": "object",
                        "required": ["defaults", "overrides"],
                        "properties": {"defaults": {"type": "object"}, "overrides": {"type": "array"}},
                    },
                    "options": {"type": "object"},
                    "targets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["expr", "refId"],
                            "additionalProperties": False,
                            "properties": {
                                "datasource": {"$ref": "#/$defs/datasource"},
                                "expr": {"type": "string", "minLength": 1},
                                "legendFormat": {"type": "string"},
                                "refId": {"type": "string", "pattern": "^[A-Z]$"},
                            },
                        },
                    },
                },
            },
        },
    },
    "$defs": {
        "datasource": {
            "type": "object",
            "required": ["type", "uid"],
            "additionalProperties": False,
            "properties": {"type": {"const": "prometheus"}, "uid": {"type": "string"}},
        }
    },
}
