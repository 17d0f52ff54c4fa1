"""The three target interfaces: the traffic plan's format, the factory, what each target's
metrics source says it can do, and the kubernetes router keeping other endpoints' traffic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlserve.errors import UsageError
from mlserve.project import load_project
from mlserve.targets import FACTORIES, open_environment, open_target
from mlserve.targets.base import Arm, Mode, Plan, Role
from mlserve.targets.kubernetes import KubernetesMetrics, KubernetesRouter, KubernetesTarget
from mlserve.targets.local import GatewayRouter, LocalMetrics, LocalTarget
from tests.support.kubectl import recording_kubectl


def test_a_plan_is_arms_and_a_third_arm_needs_no_new_format() -> None:
    control = Plan(
        Mode.CANARY,
        {
            "v1": Arm("v1", 80, Role.PRIMARY),
            "v1-control": Arm("v1", 10, Role.CONTROL),
            "v2": Arm("v2", 10, Role.CANDIDATE),
        },
    )
    assert control.weights == {"v1": 80, "v1-control": 10, "v2": 10}
    assert control.versions == {"v1": 90, "v2": 10}
    assert control.baseline == "v1" and control.candidate == "v2"
    assert Plan.from_dict(json.loads(json.dumps(control.to_dict()))) == control


@pytest.mark.parametrize(
    ("v1", "plan"),
    [
        ({"baseline": "v1", "candidate": None, "mode": "stable", "weights": {"v1": 100}, "shadow_percent": 0},
         Plan.stable("v1")),
        ({"baseline": "v1", "candidate": "v2", "mode": "canary", "weights": {"v1": 75, "v2": 25}, "shadow_percent": 0},
         Plan.split(Mode.CANARY, "v1", "v2", 25)),
        ({"baseline": "v1", "candidate": "v2", "mode": "ab", "weights": {"v1": 50, "v2": 50}, "shadow_percent": 0},
         Plan.split(Mode.AB, "v1", "v2", 50)),
        ({"baseline": "v1", "candidate": "v2", "mode": "shadow", "weights": {"v1": 100, "v2": 0}, "shadow_percent": 20},
         Plan.shadow("v1", "v2", 20)),
        ({"baseline": "v1", "candidate": None, "mode": "stable", "weights": {"v2": 100}, "shadow_percent": 0},
         Plan.stable("v2")),
    ],
)  # fmt: skip
def test_v1_plans_read_as_arms(v1: dict[str, object], plan: Plan) -> None:
    assert Plan.from_dict(v1) == plan
    assert Plan.from_dict(plan.to_dict()) == plan


def test_one_factory_per_target_and_their_capabilities(project: Path) -> None:
    p = load_project(project)
    assert set(FACTORIES) == {"local", "kubernetes"}
    local = open_environment(p, "local")
    assert isinstance(local.target, LocalTarget) and isinstance(local.router, GatewayRouter)
    assert isinstance(local.metrics, LocalMetrics)
    assert local.metrics.capabilities.shadow_agreement and local.metrics.capabilities.background_load
    scrape = p.manifest.environments["local"].scrape_interval
    assert local.metrics.settle_seconds() == pytest.approx(float(scrape) + 0.5)
    prod = open_environment(p, "prod")
    assert isinstance(prod.target, KubernetesTarget) and isinstance(prod.router, KubernetesRouter)
    assert isinstance(prod.metrics, KubernetesMetrics)
    caps = prod.metrics.capabilities
    assert not caps.shadow_agreement and not caps.background_load and caps.query_set == "seldon"
    assert open_environment(p, "staging").metrics.capabilities.query_set == "istio"
    assert prod.metrics.settle_seconds() == 15.5
    assert prod.target.layered and not local.target.layered
    assert prod.target.entry_url() is None


def test_the_local_target_refuses_layer_commands_and_the_cluster_refuses_local_logs(project: Path) -> None:
    p = load_project(project)
    with pytest.raises(UsageError, match="`mlserve plan` works on kubernetes environments"):
        open_target(p, "local").plan()
    with pytest.raises(UsageError, match="`mlserve logs` shows local processes"):
        open_target(p, "prod").logs("fraud")


@pytest.fixture
def kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return recording_kubectl(tmp_path, monkeypatch)


def _routes(folder: Path, endpoint: str) -> dict[str, int]:
    docs = [d for d in yaml.safe_load_all((folder / "traffic.yaml").read_text()) if d]
    vs = next(d for d in docs if d["kind"] == "VirtualService" and d["metadata"]["name"] == endpoint)
    return {r["destination"]["subset"]: r["weight"] for r in vs["spec"]["http"][-1]["route"]}


def test_the_kubernetes_router_keeps_the_other_endpoints_traffic(project: Path, kubectl: Path) -> None:
    """Every endpoint is rendered at once: moving one must re-apply the others' live plans,
    which the router remembers (and reads back)."""
    p = load_project(project)
    assert set(p.manifest.endpoints_in("prod")) == {"fraud", "summarize"}
    router = KubernetesRouter(p, "prod")
    router.apply("fraud", Plan.split(Mode.CANARY, "v1", "v2", 10))
    router.apply("summarize", Plan.split(Mode.CANARY, "llama-8b", "llama-8b-q", 20))
    assert router.last_applied is not None
    assert _routes(router.last_applied, "fraud") == {"v1": 90, "v2": 10}
    assert _routes(router.last_applied, "summarize") == {"llama-8b": 80, "llama-8b-q": 20}
    assert len(kubectl.read_text().splitlines()) == 2
    assert KubernetesRouter(p, "prod").current("fraud") == Plan.split(Mode.CANARY, "v1", "v2", 10)
    assert router.current("nope") is None


def test_a_look_that_needs_token_streams_reads_the_source_s_llm_series(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollout asks for token streams (LLM metric kinds); each source says where they are:
    the local gateway's mlserve_llm_* series, vLLM's own metrics on a cluster."""
    import mlserve.metrics
    from mlserve.metrics import Collected, LookRequest

    seen: list[LookRequest] = []

    def collect(_query: object, request: LookRequest, _previous: object) -> Collected:
        seen.append(request)
        return Collected({}, {})

    monkeypatch.setattr(mlserve.metrics, "collect_look", collect)
    p = load_project(project)
    local = LocalMetrics(LocalTarget(p, "local"), query=lambda *_: [])
    prod = KubernetesMetrics(p, "prod", query=lambda *_: [])
    assert local.capabilities.llm_query_set == "local" and prod.capabilities.llm_query_set == "vllm"
    for source in (local, prod):
        for wanted in (True, False):
            source.look(LookRequest("chat", ["v1", "v2"], {"v1": 50, "v2": 50}, 1.0, 2.0, token_streams=wanted), None)
    assert [r.llm_source for r in seen] == ["local", None, "vllm", None]
    assert [r.source for r in seen] == ["local", "local", "seldon", "seldon"]


def test_an_llm_shadow_s_example_pairs_are_the_latest_since_the_step_s_anchor(tmp_path: Path) -> None:
    from mlserve.local.state import LocalPaths, read_shadow_samples

    paths = LocalPaths(tmp_path)
    assert read_shadow_samples(paths, "chat", 0.0) == ()  # no file yet
    paths.local_dir.mkdir(parents=True)
    pairs = [{"at": float(t), "prompt": f"p{t}"} for t in range(10)]
    paths.shadow_samples.write_text(json.dumps({"endpoints": {"chat": [*pairs, "junk"]}}))
    assert [x["prompt"] for x in read_shadow_samples(paths, "chat", 0.0)] == ["p5", "p6", "p7", "p8", "p9"]
    assert [x["prompt"] for x in read_shadow_samples(paths, "chat", 8.0)] == ["p8", "p9"]
    assert read_shadow_samples(paths, "fraud", 0.0) == ()
    paths.shadow_samples.write_text("{not json")
    assert read_shadow_samples(paths, "chat", 0.0) == ()  # a nicety of the report: never a held look
