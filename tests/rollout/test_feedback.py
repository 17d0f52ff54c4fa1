"""The gateway's A/B feedback route, in process (no upstream is contacted)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from mlserve.local.gateway import Gateway, data_app
from mlserve.local.gateway_config import EndpointConfig, GatewayConfig, TrafficState


def _gateway(tmp_path: Path, mode: str = "sticky") -> Gateway:
    ep = EndpointConfig(
        versions={"v1": "http://127.0.0.1:9", "v2": "http://127.0.0.1:9"},
        baseline="v1",
        traffic=TrafficState(weights={"v1": 50, "v2": 50}, mode=mode),  # type: ignore[arg-type]
    )
    config = GatewayConfig(
        port=0,
        admin_port=0,
        admin_token_file=tmp_path / "token",
        state_file=tmp_path / "traffic.json",
        endpoints={"fraud": ep},
    )
    return Gateway(config, "x" * 32)


def _post(gw: Gateway, body: Any, headers: dict[str, str] | None = None, path: str = "fraud") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=data_app(gw))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            kw: dict[str, Any] = {"json": body} if not isinstance(body, bytes) else {"content": body}
            return await client.post(f"/v2/models/{path}/feedback", headers=headers or {}, **kw)

    return asyncio.run(go())


def _count(gw: Gateway, variant: str, outcome: str) -> float:
    text = generate_latest(gw.metrics.registry).decode()
    want = f'mlserve_feedback_total{{endpoint="fraud",outcome="{outcome}",variant="{variant}"}}'
    for line in text.splitlines():
        if line.startswith(want):
            return float(line.split()[-1])
    return 0.0


def test_sticky_key_names_the_variant_the_user_was_routed_to(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    table = gw.tables["fraud"]
    seen: dict[str, int] = {}
    for i in range(40):
        key = f"user-{i}"
        routed = table.choose(key.encode(), gw.rand)
        r = _post(gw, {"outcome": "success"}, {"x-user-id": key})
        assert r.status_code == 200, r.text
        assert r.headers["x-mlserve-variant"] == routed == r.json()["variant"]
        seen[routed] = seen.get(routed, 0) + 1
    assert set(seen) == {"v1", "v2"}
    assert _count(gw, "v1", "success") == seen["v1"] and _count(gw, "v2", "success") == seen["v2"]


def test_explicit_variant_and_reward(tmp_path: Path) -> None:
    gw = _gateway(tmp_path, mode="split")
    r = _post(gw, {"outcome": "purchase", "variant": "v2", "reward": 12.5})
    assert r.status_code == 200, r.text
    assert _count(gw, "v2", "purchase") == 1.0
    text = generate_latest(gw.metrics.registry).decode()
    assert 'mlserve_feedback_reward_total{endpoint="fraud",variant="v2"} 12.5' in text


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        ({"outcome": "success"}, {}, 400, "variant"),  # split mode, no variant
        ({"outcome": "Not OK!"}, {"x-user-id": "u"}, 400, "outcome"),
        ({"outcome": "success", "variant": "v9"}, {}, 400, "unknown version"),
        ({"outcome": "success", "variant": "v2", "reward": -1}, {}, 400, "reward"),
        (b"{not json", {}, 400, "JSON"),
        ([1, 2], {}, 400, "object"),
    ],
)
def test_bad_feedback_is_refused(tmp_path: Path, body: Any, headers: dict[str, str], status: int, message: str) -> None:
    gw = _gateway(tmp_path, mode="split")
    r = _post(gw, body, headers)
    assert r.status_code == status and message in r.json()["error"]


def test_unknown_endpoint_is_404(tmp_path: Path) -> None:
    assert _post(_gateway(tmp_path), {"outcome": "success"}, path="nope").status_code == 404


def test_error_series_exist_before_the_first_error(tmp_path: Path) -> None:
    text = generate_latest(_gateway(tmp_path).metrics.registry).decode()
    for v in ("v1", "v2"):
        for code in ("200", "500", "connect_error"):
            assert f'mlserve_requests_total{{code="{code}",endpoint="fraud",variant="{v}"}} 0.0' in text
