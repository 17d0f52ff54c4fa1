"""Pure routing decisions and the config contract (no processes)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlserve.local.gateway_config import (
    Fault,
    GatewayConfig,
    GatewayConfigError,
    Shadow,
    TrafficFile,
    TrafficState,
    create_token_file,
    load_gateway_config,
    read_token_file,
)
from mlserve.local.routing import RouteTable, outputs_agree, sticky_bucket


def table(weights: dict[str, int], mode: str = "split", **kw: object) -> RouteTable:
    traffic = TrafficState(weights=weights, mode=mode, shadow=kw.get("shadow"))  # type: ignore[arg-type]
    faults = kw.get("faults", {})
    return RouteTable.build("fraud", "v1", ["v1", "v2", "v3"], traffic, faults)  # type: ignore[arg-type]


def test_weighted_choice_follows_weights() -> None:
    rng = random.Random(7)
    t = table({"v1": 70, "v2": 20, "v3": 10})
    seen = Counter(t.choose(None, rng.random) for _ in range(20_000))
    assert abs(seen["v1"] / 20_000 - 0.70) < 0.015
    assert abs(seen["v3"] / 20_000 - 0.10) < 0.01
    assert Counter(table({"v2": 100}).choose(None, rng.random) for _ in range(100)) == {"v2": 100}


@settings(deadline=None)  # the machine is shared: no per-example time limit
@given(st.binary(min_size=1, max_size=300), st.integers(0, 99))
def test_sticky_key_moves_only_towards_a_growing_candidate(key: bytes, w: int) -> None:
    """A key on the candidate at weight w stays there at any larger weight."""
    small = table({"v1": 100 - w, "v2": w}, mode="sticky")
    large = table({"v1": 100 - w - 1, "v2": w + 1}, mode="sticky")
    never = lambda: 1 / 0  # noqa: E731 - sticky routing with a key must not draw randomness
    if small.choose(key, never) == "v2":
        assert large.choose(key, never) == "v2"
    assert small.choose(key, never) == small.choose(key, never)


def test_sticky_bucket_is_stable_and_uniform() -> None:
    assert sticky_bucket(b"alice") == sticky_bucket(b"alice")
    buckets = [sticky_bucket(f"user-{i}".encode()) for i in range(20_000)]
    share = sum(b < 1000 for b in buckets) / len(buckets)
    assert abs(share - 0.10) < 0.01


def test_misroute_and_fallback_and_shadow_sampling() -> None:
    rng = random.Random(3)
    t = table({"v1": 100}, faults={"v2": Fault(misroute_percent=30)})
    seen = Counter(t.choose(None, rng.random) for _ in range(10_000))
    assert abs(seen["v2"] / 10_000 - 0.30) < 0.02
    t = table({"v1": 80, "v2": 20})
    assert {t.fallback("v1", rng.random) for _ in range(50)} == {"v2"}
    assert {t.fallback("v2", rng.random) for _ in range(50)} == {"v1"}
    assert table({"v2": 100}).fallback("v2", rng.random) == "v1"  # no weight elsewhere: the baseline
    t = table({"v1": 100}, shadow=Shadow("v3", 25))
    mirrored = sum(t.shadow_target("v1", rng.random) == "v3" for _ in range(10_000))
    assert abs(mirrored / 10_000 - 0.25) < 0.02
    assert t.shadow_target("v3", rng.random) is None  # never mirror a request to itself


def test_outputs_agree_compares_v2_data_with_tolerance() -> None:
    a = {"outputs": [{"name": "p", "data": [0.1, 0.2]}, {"name": "q", "data": [[1, 2]]}]}
    b = {"id": "other", "outputs": [{"name": "q", "data": [1, 2]}, {"name": "p", "data": [0.1 + 1e-9, 0.2]}]}
    assert outputs_agree(a, b) is True
    assert outputs_agree(a, {"outputs": [{"name": "p", "data": [0.1, 0.3]}, {"name": "q", "data": [1, 2]}]}) is False
    assert outputs_agree(a, {"outputs": [{"name": "p", "data": [0.1, 0.2]}]}) is False
    assert (
        outputs_agree({"outputs": [{"name": "s", "data": ["yes"]}]}, {"outputs": [{"name": "s", "data": ["no"]}]})
        is False
    )
    assert outputs_agree({"error": "x"}, a) is None
    assert outputs_agree(
        {"outputs": [{"name": "p", "data": [float("nan")]}]}, {"outputs": [{"name": "p", "data": [float("nan")]}]}
    )


def test_config_round_trips_and_names_bad_keys(tmp_path: Path) -> None:
    data = {
        "port": 8080,
        "admin_port": 8081,
        "admin_token_file": "../admin-token",
        "state_file": "traffic.json",
        "endpoints": {
            "fraud": {
                "versions": {"v1": "http://127.0.0.1:9001", "v2": "http://127.0.0.1:9002/"},
                "baseline": "v1",
                "sticky_header": "X-User-Id",
                "traffic": {"mode": "sticky", "weights": {"v1": 60, "v2": 40}, "shadow": {"version": "v2"}},
                "faults": {"v2": {"latency_ms": 40, "error_rate": 0.05}},
            }
        },
    }
    path = tmp_path / "local" / "gateway.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    cfg = load_gateway_config(path)
    assert cfg.admin_token_file == tmp_path / "local" / ".." / "admin-token"
    ep = cfg.endpoints["fraud"]
    assert ep.versions["v2"] == "http://127.0.0.1:9002" and ep.sticky_header == "x-user-id"
    assert ep.traffic.shadow == Shadow("v2", 100) and ep.faults["v2"] == Fault(40, 0.05, 0)
    assert GatewayConfig.from_dict(cfg.to_dict()) == cfg

    def bad(change: dict[str, object], message: str) -> None:
        path.write_text(json.dumps({**data, **change}))
        with pytest.raises(GatewayConfigError) as info:
            load_gateway_config(path)
        assert message in str(info.value) and str(path) in str(info.value)

    bad({"admin_host": "0.0.0.0"}, "admin_host: the local gateway listens on 127.0.0.1 only")
    bad({"admin_port": 8080}, "admin_port: must differ from port")
    bad({"extra": 1}, "extra: unknown key")
    bad({"endpoints": {"fraud": {"versions": {"v1": "http://10.0.0.1:80"}, "baseline": "v1"}}}, "loopback URL")
    bad({"endpoints": {"Fraud!": {}}}, "endpoints: must be a DNS-1123 label")
    path.write_text("{")
    with pytest.raises(GatewayConfigError, match="not valid JSON"):
        load_gateway_config(path)


def test_traffic_validation_and_state_file() -> None:
    t = TrafficState.from_dict({"weights": {"v2": 100}}).validated(["v1", "v2"])
    assert dict(t.weights) == {"v1": 0, "v2": 100} and t.mode == "split"
    with pytest.raises(GatewayConfigError, match="must sum to 100"):
        TrafficState.from_dict({"weights": {"v1": 99}}).validated(["v1"])
    with pytest.raises(GatewayConfigError, match="must be an integer"):
        TrafficState.from_dict({"weights": {"v1": True}})
    f = TrafficFile({"fraud": t}, updated_at=1.0)
    assert TrafficFile.from_dict(json.loads(json.dumps(f.to_dict()))) == f


def test_token_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / ".mlserve" / "admin-token"
    token = create_token_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_token_file(path) == token and len(token) >= 32
    path.chmod(0o640)
    with pytest.raises(GatewayConfigError, match="chmod 600"):
        read_token_file(path)


def test_sticky_key_from_header_then_cookie(tmp_path: Path) -> None:
    from mlserve.local.gateway import Gateway

    data = {
        "port": 0,
        "admin_port": 0,
        "admin_token_file": "t",
        "state_file": str(tmp_path / "traffic.json"),
        "endpoints": {
            "fraud": {
                "versions": {"v1": "http://127.0.0.1:9001", "v2": "http://127.0.0.1:9002"},
                "baseline": "v1",
                "sticky_cookie": "uid",
                "traffic": {"mode": "sticky", "weights": {"v1": 50, "v2": 50}},
            }
        },
    }
    gw = Gateway(GatewayConfig.from_dict(data), "token" * 4)
    t = gw.tables["fraud"]
    assert gw.sticky_key([(b"x-user-id", b"alice"), (b"cookie", b"uid=bob")], t) == b"alice"
    assert gw.sticky_key([(b"cookie", b"a=1; uid=bob; z=2")], t) == b"bob"
    assert gw.sticky_key([(b"cookie", b"a=1")], t) is None
    assert gw.sticky_key([], t) is None


def test_saved_traffic_that_no_longer_fits_falls_back_to_the_config(tmp_path: Path) -> None:
    from mlserve.local.gateway import Gateway

    state = tmp_path / "traffic.json"
    saved = TrafficFile(
        {
            "fraud": TrafficState(weights={"v1": 20, "v3": 80}),  # v3 was removed from the config
            "other": TrafficState(weights={"a": 100}),  # endpoint no longer deployed
            "text": TrafficState(weights={"v1": 30, "v2": 70}, mode="sticky"),
        }
    )
    state.write_text(json.dumps(saved.to_dict()))
    versions = {"v1": "http://127.0.0.1:9001", "v2": "http://127.0.0.1:9002"}
    data = {
        "port": 0,
        "admin_port": 0,
        "admin_token_file": "t",
        "state_file": str(state),
        "endpoints": {
            "fraud": {"versions": versions, "baseline": "v1"},
            "text": {"versions": versions, "baseline": "v1"},
        },
    }
    gw = Gateway(GatewayConfig.from_dict(data), "token" * 4)
    assert dict(gw.tables["fraud"].traffic.weights) == {"v1": 100, "v2": 0}
    assert dict(gw.tables["text"].traffic.weights) == {"v1": 30, "v2": 70}
    assert gw.tables["text"].traffic.mode == "sticky"
