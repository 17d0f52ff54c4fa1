"""Shared helpers of the rollout tests: policies written into a test project's mlserve.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def set_policy(root: Path, endpoint: str = "fraud", **keys: Any) -> None:
    """Replace keys of ``[endpoints.ENDPOINT.rollout]`` (metrics: a list of tables)."""
    import tomlkit

    path = root / "mlserve.toml"
    doc = tomlkit.parse(path.read_text())
    table = doc["endpoints"][endpoint]["rollout"]  # type: ignore[index]
    for key, value in keys.items():
        if key == "metrics":
            aot = tomlkit.aot()
            for m in value:
                t = tomlkit.table()
                t.update(m)
                aot.append(t)
            table["metrics"] = aot  # type: ignore[index]
        else:
            table[key] = value  # type: ignore[index]
    path.write_text(tomlkit.dumps(doc))


FAST = {
    "interval": "2s",
    "max_duration": "2m",
    "min_requests": 150,
    "steps": [25, 50, 100],
    "metrics": [
        {"name": "error_rate", "kind": "error_rate", "margin": 0.002, "critical": True},
        # the gateway's buckets are 2-2.5x wide: a margin finer than that cannot be resolved
        {"name": "latency_p95", "kind": "latency", "quantile": 0.95, "margin": "50%"},
    ],
}
