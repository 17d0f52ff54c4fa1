"""The kubernetes folder of an environment (filled in by the kubernetes templates)."""

from __future__ import annotations

from typing import Any


def render(jenv: Any, base: dict[str, Any]) -> dict[str, str]:
    return {}
