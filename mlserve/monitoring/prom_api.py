"""Prometheus' HTTP API as the monitoring commands read it (the local Prometheus or a
cluster's alike): one GET, its ``data`` member, and one error naming the server."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from mlserve.errors import TargetError


def api_get(
    prom_url: str, path: str, params: Mapping[str, str] | None = None, timeout: float = 5.0, hint: str | None = None
) -> Any:
    """``data`` of ``GET {prom_url}/api/v1/{path}?{params}`` (None when the answer has none)."""
    base = prom_url.rstrip("/")
    url = f"{base}/api/v1/{path}" + (f"?{urllib.parse.urlencode(dict(params))}" if params else "")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = json.loads(resp.read())
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise TargetError(f"Prometheus at {base} did not answer: {exc}", hint=hint) from None
    return data.get("data") if isinstance(data, dict) else None
