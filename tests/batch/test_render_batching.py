"""Server-side batching keys rendered for each target, the KubeRay RayJob, and the
commands' usage errors (no server needed)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from mlserve.errors import ManifestError
from mlserve.manifest import load_manifest
from mlserve.render import render_files
from tests.conftest import run_cli
from tests.render.k8s_schemas import validate_object
from tests.render.manifests import WIDE, project_from

BATCHING = '\n[endpoints.fraud.versions.v2.batching]\nmax_batch_size = 32\nmax_batch_time = "20ms"\n'


def _docs(files: dict[str, dict[str, str]], name: str) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in yaml.safe_load_all(files["kubernetes"][f"kubernetes/{name}"]) if d]


def test_batching_keys_parse_and_reject_runtimes_that_batch_on_their_own(tmp_path: Path, project: Path) -> None:
    manifest = project / "mlserve.toml"
    manifest.write_text(manifest.read_text() + BATCHING)
    b = load_manifest(manifest).endpoints["fraud"].versions["v2"].batching
    assert b is not None and (b.max_batch_size, b.max_batch_time) == (32, 0.02)
    text = WIDE + "\n[endpoints.bespoke.versions.v1.batching]\nmax_batch_size = 8\n"
    with pytest.raises(ManifestError, match=r"endpoints\.bespoke\.versions\.v1\.batching: server-side batching is for"):
        project_from(text, tmp_path / "w")


def test_mlserver_batching_reaches_local_model_settings_and_both_cluster_backends(project: Path) -> None:
    from mlserve.local.servers import launch_for
    from mlserve.project import load_project

    manifest = project / "mlserve.toml"
    manifest.write_text(manifest.read_text() + BATCHING)
    proj = load_project(project)
    ep = proj.manifest.endpoints["fraud"]
    ports = {"http": 20001, "grpc": 20002, "metrics": 20003}
    for version, expected in (("v1", None), ("v2", (32, 0.02))):
        launch = launch_for(
            root=project,
            server_dir=project / ".srv" / version,
            endpoint_name="fraud",
            endpoint=ep,
            version_name=version,
            version=ep.versions[version],
            ports=ports,
        )
        settings = json.loads(launch.files[str(project / ".srv" / version / "model-settings.json")])
        got = (settings["max_batch_size"], settings["max_batch_time"]) if "max_batch_size" in settings else None
        assert got == expected
    for env, kind in (("staging", "InferenceService"), ("prod", "SeldonDeployment")):
        traffic = {"fraud": {"baseline": "v1", "candidate": "v2", "mode": "canary", "weights": {"v1": 90, "v2": 10}}}
        files = render_files(proj, env, traffic)
        docs = _docs(files, "endpoints/fraud.yaml") + _docs(files, "traffic.yaml")
        found = []
        for d in docs:
            validate_object(d)
            if d["kind"] != kind:
                continue
            text = json.dumps(d)
            if "MLSERVER_MODEL_MAX_BATCH_SIZE" in text:
                found.append(d["metadata"]["name"])
                assert '"MLSERVER_MODEL_MAX_BATCH_TIME", "value": "0.02"' in text
        assert found, env
        if kind == "InferenceService":
            assert found == ["fraud-v2"]  # only the version that asks for it


def test_torchserve_batching_is_kserves_batcher_and_not_renderable_on_seldon(tmp_path: Path) -> None:
    text = WIDE + "\n[endpoints.embed.versions.v1.batching]\nmax_batch_size = 16\nmax_batch_time = 0.05\n"
    proj = project_from(text, tmp_path / "w")
    files = render_files(proj, "onprem")
    isvc = next(d for d in _docs(files, "endpoints/embed.yaml") if d["kind"] == "InferenceService")
    validate_object(isvc)
    assert isvc["spec"]["predictor"]["batcher"] == {"maxBatchSize": 16, "maxLatency": 50}
    with pytest.raises(
        ManifestError, match="batches through KServe's batcher; environment 'gpu-eks' serves with Seldon"
    ):
        render_files(proj, "gpu-eks")


def test_rayjob_renders_validates_and_quotes_hostile_paths(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "job.yaml"
    hostile = '/data/in "quoted" $(touch /tmp/x); \nnext: {a: 1}.jsonl'
    res = run_cli(
        "--json", "batch", "fraud", "--env", "staging", "-i", hostile, "-o", "/data/out.csv",
        "--exclude", "label", "--rayjob", str(out), cwd=project,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    docs = [d for d in yaml.safe_load_all(out.read_text()) if d]
    assert [d["kind"] for d in docs] == ["ConfigMap", "RayJob"]
    assert [validate_object(d) for d in docs] == ["core", "crd"]
    job = docs[1]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[argv.index("--input") + 1] == hostile
    assert argv[argv.index("--url") + 1] == "http://fraud-v1-predictor.ml-staging.svc.cluster.local"
    assert argv[argv.index("--ray-address") + 1] == "auto"
    assert docs[0]["data"]["mlserve.toml"] == (project / "mlserve.toml").read_text()
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert workers["replicas"] == 2 and res.json["result"]["name"] == job["metadata"]["name"]
    prod = run_cli(
        "batch", "fraud", "--env", "prod", "-i", "/data/a.csv", "-o", "/data/b.csv", "--rayjob", str(out), cwd=project
    )
    assert prod.exit_code == 0, prod.output
    for d in yaml.safe_load_all(out.read_text()):
        validate_object(d)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["batch", "fraud", "--env", "local", "-i", "x.csv", "-o", "y.csv", "--rayjob", "j.yaml"], "is local"),
        (
            ["batch", "fraud", "--env", "staging", "-i", "x.csv", "-o", "/data/y.csv", "--rayjob", "j.yaml"],
            "under /data",
        ),
        (["batch", "fraud", "-i", "x.csv", "-o", "y.csv", "--version", "v9"], "has no version 'v9'"),
        (["batch", "fraud", "-i", "x.txt", "-o", "y.csv"], "cannot tell the format"),
        (["batch", "fraud", "-i", "x.csv", "-o", "y.csv", "--batch-size", "0"], "--batch-size: must be between"),
        (["batch", "nope", "-i", "x.csv", "-o", "y.csv"], "unknown endpoint 'nope'"),
        (["compare", "fraud", "v1", "v1", "-i", "x.csv"], "two different versions"),
        (
            ["compare", "fraud", "v1", "v2", "-i", "x.csv", "--min-delta", "f1=0.1"],
            "--min-delta: expected METRIC=VALUE",
        ),
        (["compare", "fraud", "v1", "v2", "-i", "x.csv", "--min-delta", "auc=0"], "--min-delta needs --labels"),
        (["compare", "fraud", "v1", "v2", "-i", "x.csv", "--max-disagreement", "2"], "--max-disagreement: must be"),
    ],
)
def test_usage_errors_exit_2_with_a_message(project: Path, args: list[str], message: str) -> None:
    res = run_cli("--json", *args, cwd=project)
    assert res.exit_code == 2, res.output
    err = res.json["error"]
    assert res.json["ok"] is False and message in err["message"], err
    assert "Traceback" not in res.output


def test_a_local_environment_that_is_not_deployed_is_a_clear_error(project: Path) -> None:
    (project / "in.jsonl").write_text('{"id": 1}\n')
    res = run_cli("batch", "fraud", "-i", "in.jsonl", "-o", "out.jsonl", cwd=project)
    assert res.exit_code == 1 and "not deployed locally" in res.stderr, res.output
