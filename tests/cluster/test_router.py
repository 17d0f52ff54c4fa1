"""The Gateway API router against the stand-in API server (real kubectl): a weight change is one
server-side apply of one HTTPRoute; capacity is added before traffic moves to it and removed
after traffic left it; and each arm's workload is resolved from the live objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlserve.metrics import MetricsUnavailable
from mlserve.project import load_project
from mlserve.targets import kube_arms
from mlserve.targets.base import Mode, Plan
from mlserve.targets.kube_router import GatewayApiRouter
from mlserve.tools.kubectl import Kubectl
from tests.support.apiserver import FakeCluster
from tests.support.policy import set_policy
from tests.support.rehearsal import set_env


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    c = FakeCluster()
    c.start()
    monkeypatch.setenv("KUBECONFIG", str(c.kubeconfig(tmp_path / "kubeconfig", ["acme-edge", "acme-ml-staging"])))
    monkeypatch.setenv("KUBECACHEDIR", str(tmp_path / "kube-cache"))
    yield c
    c.stop()


def _applied(c: FakeCluster, since: int) -> list[tuple[str, str]]:
    return [
        (str(r["kind"]), str(r["name"])) for r in c.requests[since:] if r.get("method") == "PATCH" and not r["dry_run"]
    ]


def test_weights_move_in_one_request_and_capacity_is_added_first_removed_last(
    project: Path, cluster: FakeCluster
) -> None:
    set_policy(project, "summarize", canary_size="weight", scale_primary=True)
    router = GatewayApiRouter(load_project(project), "edge")
    router.apply("summarize", Plan.split(Mode.CANARY, "llama-8b", "llama-8b-q", 25))
    first = _applied(cluster, 0)
    route_at = first.index(("HTTPRoute", "summarize"))
    assert ("LLMInferenceService", "summarize-llama-8b-q") in first[:route_at]  # the new arm exists before traffic
    assert ("InferencePool", "summarize-llama-8b-q") in first[:route_at]
    assert sum(k == "HTTPRoute" for k, _ in first) == 1
    # 50%: the candidate grows (before the route), the primary shrinks (after it)
    n = len(cluster.requests)
    router.apply("summarize", Plan.split(Mode.CANARY, "llama-8b", "llama-8b-q", 50))
    second = _applied(cluster, n)
    assert second == [
        ("LLMInferenceService", "summarize-llama-8b-q"),
        ("HTTPRoute", "summarize"),
        ("LLMInferenceService", "summarize-llama-8b"),
    ]
    isvc = cluster.get("LLMInferenceService", "summarize-llama-8b", "ml-edge")
    assert isvc is not None and isvc["spec"]["scaling"]["maxReplicas"] == 2
    refs = cluster.get("HTTPRoute", "summarize", "ml-edge")["spec"]["rules"][-1]["backendRefs"]  # type: ignore[index]
    assert [(r["name"], r["weight"]) for r in refs] == [("summarize-llama-8b", 50), ("summarize-llama-8b-q", 50)]
    # the same plan again: nothing changed, one request (the route; applying it twice is harmless)
    n = len(cluster.requests)
    router.apply("summarize", Plan.split(Mode.CANARY, "llama-8b", "llama-8b-q", 50))
    assert _applied(cluster, n) == [("HTTPRoute", "summarize")]
    assert router.current("summarize") == Plan.split(Mode.CANARY, "llama-8b", "llama-8b-q", 50)
    owners = cluster.owners("HTTPRoute", "summarize", "ml-edge")
    assert set(owners) == {"mlserve"} and ("spec", "rules") in owners["mlserve"]


@pytest.mark.slow
def test_arms_resolve_from_live_objects_raw_serverless_and_missing(project: Path, cluster: FakeCluster) -> None:
    set_env(project, "staging", router="gateway-api")
    router = GatewayApiRouter(load_project(project), "staging")
    router.apply("fraud", Plan.split(Mode.CANARY, "v1", "v2", 10))
    kubectl = Kubectl("acme-ml-staging")
    wanted = kube_arms.wanted_arms(["v1", "v2"], router.current("fraud").arms)  # type: ignore[union-attr]
    arms = kube_arms.resolve(kubectl, serving="kserve", router="gateway-api", namespace="ml-staging",
                             endpoint="fraud", wanted=wanted)  # fmt: skip
    assert arms["v2"] == {
        "object": "fraud-v2",
        "version": "v2",
        "service": "fraud-v2-predictor",
        "workload": "fraud-v2-predictor",
    }
    # serverless: the revision KServe reports in the status names the series
    isvc = cluster.get("InferenceService", "fraud-v2", "ml-staging")
    assert isvc is not None
    isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] = "Serverless"
    for k in ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp"):
        isvc["metadata"].pop(k, None)
    isvc.pop("status")
    res = cluster.resource("serving.kserve.io/v1beta1", "InferenceService")
    assert res is not None
    cluster.apply(res, "ml-staging", "fraud-v2", isvc, manager="mlserve")
    arms = kube_arms.resolve(kubectl, serving="kserve", router="gateway-api", namespace="ml-staging",
                             endpoint="fraud", wanted=wanted)  # fmt: skip
    assert arms["v2"]["revision"] == "fraud-v2-predictor-00001"
    assert arms["v2"]["workload"] == "fraud-v2-predictor-00001-deployment"
    # an arm whose object is gone holds the look, naming the kubectl query
    with pytest.raises(
        MetricsUnavailable, match=r"no workload for arm v3 .* -l mlserve.io/endpoint=fraud lists fraud-v1"
    ):
        kube_arms.resolve(kubectl, serving="kserve", router="gateway-api", namespace="ml-staging", endpoint="fraud",
                          wanted=[kube_arms.Wanted("v3", "v3", "candidate")])  # fmt: skip


def test_a_route_edited_by_someone_else_stops_the_router_and_nothing_more_is_applied(
    project: Path, cluster: FakeCluster
) -> None:
    """The router alone (the full rollout on both routers: tests/cluster/test_failures.py, slow):
    an HTTPRoute another manager edited refuses mlserve's apply; RouteConflict names the field
    and the manager, the route keeps their change, and the arms that would shrink after the
    route are not applied."""
    from mlserve.targets.kube_conflict import RouteConflict

    set_policy(project, "summarize", canary_size="weight", scale_primary=True)
    router = GatewayApiRouter(load_project(project), "edge")
    router.apply("summarize", Plan.split(Mode.CANARY, "llama-8b", "llama-8b-q", 25))
    theirs = cluster.get("HTTPRoute", "summarize", "ml-edge")
    assert theirs is not None
    edited = [dict(r) for r in theirs["spec"]["rules"]]
    edited[-1]["name"] = "hand-edited"
    cluster.update("HTTPRoute", "summarize", "ml-edge", {"spec.rules": edited}, manager="kubectl-edit")
    n = len(cluster.requests)
    with pytest.raises(RouteConflict) as err:
        router.apply("summarize", Plan.split(Mode.CANARY, "llama-8b", "llama-8b-q", 50))
    text = " ".join(err.value.message.split())
    assert ".spec.rules" in text and "kubectl-edit" in text and "applies nothing more" in text
    after = _applied(cluster, n)
    assert after[-1] == ("HTTPRoute", "summarize") and ("LLMInferenceService", "summarize-llama-8b") not in after
    assert cluster.get("HTTPRoute", "summarize", "ml-edge")["spec"]["rules"] == edited  # type: ignore[index]


@pytest.mark.parametrize("router_kind", ["gateway-api", pytest.param("istio", marks=pytest.mark.slow)])
def test_the_control_comes_and_goes_with_its_objects_rollout_after_rollout(
    router_kind: str, project: Path, cluster: FakeCluster
) -> None:
    """Both routers share one copy of the control's lifecycle (mlserve.targets.control_arms):
    start_arm applies its InferenceService at weight 0, stop_arm routes without it and deletes
    it, and the next rollout's control is applied again (the Gateway API router forgets the
    deleted object, so it is not skipped as already applied)."""
    from mlserve.targets.kubernetes import KubernetesRouter

    if router_kind == "gateway-api":
        set_env(project, "staging", router="gateway-api")
    p = load_project(project)
    router = GatewayApiRouter(p, "staging") if router_kind == "gateway-api" else KubernetesRouter(p, "staging")
    for _rollout in range(2):
        router.apply("fraud", Plan.split(Mode.CANARY, "v1", "v2", 25))
        router.start_arm("fraud", "control", "v1")
        router.start_arm("fraud", "control", "v1")  # idempotent: adopted, not added twice
        isvc = cluster.get("InferenceService", "fraud-control", "ml-staging")
        assert isvc is not None and isvc["spec"]["predictor"]["labels"]["mlserve.io/model-version"] == "v1"
        assert router.arms("fraud") == ("control",)
        assert router.current("fraud").weights == {"v1": 75, "v2": 25, "control": 0}  # type: ignore[union-attr]
        router.stop_arm("fraud", "control")
        router.stop_arm("fraud", "control")  # idempotent: stopping an arm that is gone is done
        assert cluster.get("InferenceService", "fraud-control", "ml-staging") is None
        assert router.arms("fraud") == ()
        router.apply("fraud", Plan.stable("v1"))


def test_the_control_takes_no_traffic_before_its_workload_is_ready(project: Path, cluster: FakeCluster) -> None:
    """Before the first step the live plan is stable: start_arm applies the control beside the
    candidate, both at weight 0, and waits for the control's InferenceService to be Ready
    (kubectl wait). While the stand-in's controller reports it starting, start_arm fails after
    its timeout naming the object, and no weight has moved; once Ready, the next call (as
    `rollout resume` makes it) adopts the arm and returns at once."""
    import threading

    from mlserve.errors import TargetError
    from mlserve.targets.kubernetes import KubernetesRouter

    router = KubernetesRouter(load_project(project), "staging")
    router.apply("fraud", Plan.stable("v1"))
    router.control_ready_timeout = 2.0
    cluster.unready.add("fraud-control")
    with pytest.raises(TargetError) as err:
        router.start_arm("fraud", "control", "v1", candidate="v2")
    assert "control arm 'control' of fraud was not ready within 2s" in err.value.message
    assert "inferenceservices.serving.kserve.io/fraud-control" in err.value.message
    isvc = cluster.get("InferenceService", "fraud-control", "ml-staging")
    assert isvc is not None and isvc["status"]["conditions"][-1] == {
        **isvc["status"]["conditions"][-1],
        "status": "False",
    }
    assert router.current("fraud").weights == {"v1": 100, "control": 0, "v2": 0}  # type: ignore[union-attr]
    # the server comes up while a second call waits: it returns once the controller says Ready
    router.control_ready_timeout = 30.0
    later = threading.Timer(1.0, cluster.make_ready, ("InferenceService", "fraud-control", "ml-staging"))
    later.start()
    try:
        router.start_arm("fraud", "control", "v1", candidate="v2")
    finally:
        later.cancel()
    assert (
        cluster.get("InferenceService", "fraud-control", "ml-staging")["status"]["conditions"][-1]["status"] == "True"
    )  # type: ignore[index]
    assert router.arms("fraud") == ("control",)
