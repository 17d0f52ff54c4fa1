"""What goes wrong on a cluster, rehearsed: a missing series holds the look naming its query;
a route changed by someone else stops the rollout and nothing more is applied; a missing CRD
and an invalid object are refused by the (stand-in) API server with kubectl's own words."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from mlserve.project import load_project
from mlserve.rollout import service
from mlserve.targets.kube_conflict import RouteConflict
from tests.conftest import run_cli
from tests.support.apiserver import all_crd_files
from tests.support.exposition import Behaviour
from tests.support.policy import set_policy
from tests.support.rehearsal import rehearsal

pytestmark = [pytest.mark.prometheus]

HARMLESS = {"v1": Behaviour(0.0, 0.02), "v2": Behaviour(0.0, 0.02)}


def _mlserve_patches(cluster: object) -> list[dict[str, object]]:
    return [r for r in cluster.requests if r.get("manager") == "mlserve" and not r.get("dry_run")]  # type: ignore[attr-defined]


@pytest.mark.slow
def test_missing_series_holds_the_look_naming_the_query(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_policy(project, interval="1s", max_duration="1m", steps=[25, 100])
    with rehearsal(project, tmp_path, monkeypatch, env="staging", versions=HARMLESS) as r:
        r.exposition.silent.add("fraud-v2")  # the candidate's sidecar is not scraped
        p = load_project(project)
        service.start(p, "fraud", "v2", env="staging")
        service.step(load_project(project), "fraud")  # enters step 1: 75/25 applied
        assert r.cluster.get("InferenceService", "fraud-v2", "ml-staging") is not None
        time.sleep(4.0)  # one settle time (1s convergence + 1s scrape + 0.5s) and a scrape more
        res = service.step(load_project(project), "fraud")
        hold = res.to_dict()["last_hold"]
        assert hold is not None and res.exit_code == 4, res.to_dict()
        query = (
            'istio_requests_total{reporter="destination",destination_workload_namespace="ml-staging",'
            'destination_workload="fraud-v2-predictor",destination_canonical_revision="v2"}'
        )
        assert query in hold["reason"], hold
        assert res.to_dict()["looks"] == 0  # no verdict was taken on the baseline alone
        held = [json.loads(x) for x in (Path(res.run_dir) / "events.jsonl").read_text().splitlines()]
        assert any(e["event"] == "held" and query in e["reason"] for e in held)


@pytest.mark.slow  # the router alone, in the default run: tests/cluster/test_router.py
@pytest.mark.parametrize("router", ["gateway-api", "istio"])
def test_route_changed_by_someone_else_stops_the_rollout_and_nothing_more_is_applied(
    router: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_policy(project, interval="1s", max_duration="1m", steps=[25, 100])
    keys = {"router": "gateway-api"} if router == "gateway-api" else {}
    with rehearsal(project, tmp_path, monkeypatch, env="staging", versions=HARMLESS, **keys) as r:
        kind, field = ("HTTPRoute", "spec.rules") if router == "gateway-api" else ("VirtualService", "spec.http")
        theirs = r.cluster.get(kind, "fraud", "ml-staging")
        assert theirs is not None
        edited = json.loads(json.dumps(theirs["spec"][field.split(".")[1]]))
        edited[-1]["name"] = "hand-edited"
        r.cluster.update(kind, "fraud", "ml-staging", {field: edited}, manager="kubectl-edit")
        before = len(_mlserve_patches(r.cluster))
        service.start(load_project(project), "fraud", "v2", env="staging")
        result = run_cli("--project-dir", str(project), "rollout", "step", "fraud")
        assert result.exit_code == 1, result.output
        text = " ".join(result.output.split())
        assert f".{field}" in text and "kubectl-edit" in text and "stops here and applies nothing more" in text
        # the object keeps the other manager's change; mlserve sent its one refused request and stopped
        assert r.cluster.get(kind, "fraud", "ml-staging")["spec"][field.split(".")[1]] == edited  # type: ignore[index]
        after = _mlserve_patches(r.cluster)[before:]
        if router == "gateway-api":  # arms first (the candidate's objects), then the one refused route
            assert [p["kind"] for p in after][-1] == "HTTPRoute"
            assert sum(p["kind"] == "HTTPRoute" for p in after) == 1
        with pytest.raises(RouteConflict):
            service.step(load_project(project), "fraud")  # retried later: still refused, still stopped
        state = json.loads(next((project / "experiments" / "fraud").glob("*/state.json")).read_text())
        assert state["status"] == "running" and state["pending"] is not None and state["steps"] == []


@pytest.mark.slow
def test_a_missing_crd_is_refused_with_kubectls_message(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crds = [f for f in all_crd_files() if f.name != "gateway-api.httproutes.yaml"]
    with rehearsal(project, tmp_path, monkeypatch, env="staging", crd_files=crds, deploy=False, router="gateway-api"):
        result = run_cli("--project-dir", str(project), "deploy", "--env", "staging", "--layer", "kubernetes", "--yes")
        assert result.exit_code == 1, result.output
        text = " ".join(result.output.split())
        assert 'no matches for kind "HTTPRoute" in version "gateway.networking.k8s.io/v1"' in text, text
        assert "ensure CRDs are installed first" in text


@pytest.mark.slow
def test_every_object_mlserve_applies_is_validated_and_an_invalid_one_is_refused(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_policy(project, interval="1s", max_duration="1m", steps=[25, 100])
    with rehearsal(project, tmp_path, monkeypatch, env="staging", router="gateway-api") as r:
        service.start(load_project(project), "fraud", "v2", env="staging")
        service.step(load_project(project), "fraud")
        applied = _mlserve_patches(r.cluster)
        assert {"HTTPRoute", "InferenceService", "Gateway", "Namespace"} <= {str(p["kind"]) for p in applied}
        assert ("InferenceService", "fraud-control") in {(p["kind"], p["name"]) for p in applied}  # the control's
        checked = {(k, n) for k, n, _how in r.cluster.validated}
        assert all((p["kind"], p["name"]) in checked for p in applied)
        assert ("HTTPRoute", "fraud", "crd") in r.cluster.validated
        bad = tmp_path / "bad.yaml"
        bad.write_text(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: fraud, namespace: ml-staging}\n"
            "spec:\n  rules:\n    - backendRefs: [{name: fraud-v2-predictor, port: 80, weight: 2000000}]\n"
        )
        done = subprocess.run(
            ["kubectl", "--context", "acme-ml-staging", "apply", "--server-side", "--field-manager=mlserve", "-f", str(bad)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1 and "is invalid" in done.stderr and "weight" in done.stderr, done.stderr
