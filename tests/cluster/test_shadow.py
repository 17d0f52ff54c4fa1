"""A shadow rollout on the simulated cluster: the rendered comparison path (payload loggers ->
mlserve's comparator -> Prometheus) gives the agreement that gates the step, as locally."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlserve.project import load_project
from mlserve.rollout import service
from tests.support.exposition import Behaviour
from tests.support.policy import set_policy
from tests.support.rehearsal import rehearsal

pytestmark = [pytest.mark.prometheus]


def _without_monitoring(project: Path) -> None:
    """fraud's arms log to the drift collector when its monitoring is on (one logger per
    predictor): the comparison path is rendered for it only with monitoring off."""
    import tomlkit

    path = project / "mlserve.toml"
    doc = tomlkit.parse(path.read_text())
    doc["endpoints"]["fraud"].pop("monitoring", None)  # type: ignore[union-attr,index]
    path.write_text(tomlkit.dumps(doc))


SHADOW = {
    "strategy": "shadow",
    "shadow_percent": 100,
    "shadow_agreement": 0.9,
    "interval": "1s",
    "max_duration": "60s",
    "min_requests": 200,
    "metrics": [{"name": "error_rate", "kind": "error_rate", "margin": 0.02, "critical": True}],
}


@pytest.mark.parametrize(
    ("env", "agree", "status"),
    [("staging", 1.0, "promoted"), pytest.param("staging", 0.6, "rolled_back", marks=pytest.mark.slow)],
)
def test_shadow_agreement_from_the_comparator_gates_the_step(
    env: str, agree: float, status: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_monitoring(project)
    set_policy(project, **SHADOW)
    versions = {"v1": Behaviour(), "v2": Behaviour(agree=agree)}
    with rehearsal(project, tmp_path, monkeypatch, env=env, versions=versions, rate=100.0, comparator=True) as r:
        vs = r.cluster.get("VirtualService", "fraud", "ml-staging")
        assert vs is not None
        isvc = r.cluster.get("InferenceService", "fraud-v1", "ml-staging")
        assert isvc is not None and isvc["spec"]["predictor"]["logger"]["mode"] == "response"
        service.start(load_project(project), "fraud", "v2", env=env)
        out = service.run_to_end(load_project(project), "fraud").to_dict()
        assert out["status"] == status, out
        agreement = out["decision"]["agreement"]
        assert agreement is not None and agreement["compared"] >= 100, out["decision"]
        assert abs(agreement["agree"] / agreement["compared"] - agree) < 0.1, agreement
        events = [json.loads(x) for x in (Path(out["run_dir"]) / "events.jsonl").read_text().splitlines()]
        looks = [e for e in events if e["event"] == "look"]
        assert any("mlserve_shadow_agreement_total" in q and 'first="fraud-v1",second="fraud-v2"' in q
                   for q in looks[-1]["queries"])  # fmt: skip


@pytest.mark.slow
def test_seldon_shadow_agreement_gates_the_step(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seldon: the executor's logged answers carry ce-requestid (the puid the mirroring route sets)."""
    _without_monitoring(project)
    set_policy(project, **SHADOW)
    versions = {"v1": Behaviour(), "v2": Behaviour(agree=0.6)}
    with rehearsal(
        project, tmp_path, monkeypatch, env="prod", versions=versions, rate=100.0, comparator=True,
        components=("seldon", "istio"),
    ) as r:  # fmt: skip
        vs = r.cluster.get("VirtualService", "fraud", "ml-prod")
        assert vs is not None
        service.start(load_project(project), "fraud", "v2", env="prod")
        out = service.run_to_end(load_project(project), "fraud").to_dict()
        assert out["status"] == "rolled_back", out
        assert "agree with the baseline's on only" in out["outcome"]["reason"], out["outcome"]
        agreement = out["decision"]["agreement"]
        assert agreement is not None and agreement["compared"] >= 100, out["decision"]
        assert abs(agreement["agree"] / agreement["compared"] - 0.6) < 0.1, agreement


@pytest.mark.slow
def test_comparator_down_holds_the_shadow_look(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _without_monitoring(project)
    set_policy(project, **SHADOW)
    with rehearsal(project, tmp_path, monkeypatch, env="staging", rate=100.0, comparator=True) as r:
        p = load_project(project)
        service.start(p, "fraud", "v2", env="staging")
        service.step(load_project(project), "fraud")  # the mirror is on
        r.exposition.comparator.terminate()  # type: ignore[attr-defined]
        r.exposition.comparator.wait(10)  # type: ignore[attr-defined]
        time.sleep(4.0)  # Prometheus marks the comparator's series stale after its next failed scrape
        res = service.step(load_project(project), "fraud").to_dict()
        assert res["last_hold"] is not None, res
        assert "mlserve_shadow_agreement_total" in res["last_hold"]["reason"]
        assert "mlserve-comparator" in res["last_hold"]["reason"]
        assert res["looks"] == 0 and res["status"] == "running"


def test_with_monitoring_on_the_one_logger_feeds_the_comparator_which_forwards_to_the_collector(
    project: Path,
) -> None:
    """Monitoring on: each arm's one payload logger posts requests and responses (mode all) to
    the comparator at /log/fraud/VERSION, and the comparator passes them on to fraud's drift
    collector (--forward); the collector is still rendered. Without the comparator's series the
    shadow look is held, naming the query (never passed without agreement)."""
    import yaml

    from mlserve.metrics import LookRequest, MetricsUnavailable
    from mlserve.render import render_files
    from mlserve.targets.kube_shadow import agreement

    set_policy(project, **SHADOW)  # fraud keeps the example's monitoring
    p = load_project(project)
    files = render_files(p, "staging")["kubernetes"]
    docs = [d for d in yaml.safe_load_all(files["kubernetes/endpoints/fraud.yaml"]) if d]
    isvcs = [d for d in docs if d["kind"] == "InferenceService"]
    assert isvcs
    for isvc in isvcs:
        version = isvc["metadata"]["labels"]["mlserve.io/version"]
        logger = isvc["spec"]["predictor"]["logger"]
        assert logger["mode"] == "all"
        assert logger["url"] == f"http://mlserve-comparator.ml-staging.svc.cluster.local/log/fraud/{version}"
    assert files["kubernetes/endpoints/fraud.yaml"].count("logger:") == len(isvcs)  # one per arm, not two
    comparator = [d for d in yaml.safe_load_all(files["kubernetes/comparator.yaml"]) if d]
    command = next(d for d in comparator if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = command["command"]
    assert args[args.index("--forward") + 1] == "fraud=http://mlserve-drift-fraud.ml-staging.svc.cluster.local"
    assert any(d["metadata"]["name"] == "mlserve-drift-fraud" for f, text in files.items() if f.startswith(
        "kubernetes/monitoring/") for d in yaml.safe_load_all(text) if d)  # fmt: skip
    req = LookRequest("fraud", ["v1", "v2"], {"v1": 100, "v2": 0}, 0.0, 10.0, namespace="ml-staging", shadow=True)
    arms = {"v1": {"object": "fraud-v1"}, "v2": {"object": "fraud-v2"}}
    with pytest.raises(MetricsUnavailable, match=r"no data for the shadow comparison of fraud/v2"):
        agreement(lambda q, at: [], p.manifest, "staging", req, arms)
