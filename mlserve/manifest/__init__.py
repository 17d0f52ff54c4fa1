"""The ``mlserve.toml`` manifest: models, loading and validation."""

from __future__ import annotations

from mlserve.manifest.loader import MANIFEST_NAME, load_manifest, load_policy, loads_manifest
from mlserve.manifest.models import (
    Endpoint,
    Environment,
    Manifest,
    MetricSpec,
    RolloutPolicy,
    Version,
)
from mlserve.manifest.units import Margin, format_duration, parse_duration, parse_margin

__all__ = [
    "MANIFEST_NAME",
    "Endpoint",
    "Environment",
    "Manifest",
    "Margin",
    "MetricSpec",
    "RolloutPolicy",
    "Version",
    "format_duration",
    "load_manifest",
    "load_policy",
    "loads_manifest",
    "parse_duration",
    "parse_margin",
]
