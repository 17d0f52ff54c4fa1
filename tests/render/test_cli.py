"""`mlserve render`: writing, --check with a per-file summary, stale-file removal that
never touches files mlserve did not write, --out, template overrides, errors."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def _edit(project: Path, old: str, new: str) -> None:
    path = project / "mlserve.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_render_writes_every_kubernetes_environment(project: Path) -> None:
    result = run_cli("render", "--json", cwd=project)
    assert result.exit_code == 0, result.output
    envs = {e["environment"]: e for e in result.json["result"]["environments"]}
    assert set(envs) == {"staging", "prod"}
    assert set(envs["staging"]["layers"]) == {"cluster", "platform", "kubernetes"}
    assert (project / "stacks/staging/terraform/cluster/node_groups.tf").is_file()
    assert (project / "stacks/prod/kubernetes/kustomization.yaml").is_file()
    assert not (project / "stacks/local").exists()
    again = run_cli("render", "--json", cwd=project).json["result"]["environments"]
    assert all(not e["written"] and e["unchanged"] for e in again)


def test_local_environment_renders_nothing(project: Path) -> None:
    result = run_cli("render", "--env", "local", cwd=project)
    assert result.exit_code == 0, result.output
    assert "nothing to render" in result.stdout
    assert not (project / "stacks").exists()


def test_check_reports_added_changed_and_removed_files(project: Path) -> None:
    assert run_cli("render", "--all", cwd=project).exit_code == 0
    ok = run_cli("render", "--all", "--check", cwd=project)
    assert ok.exit_code == 0 and "up to date" in ok.stdout

    _edit(project, "max_replicas = 10", "max_replicas = 12")
    (project / "stacks/prod/kubernetes/namespace.yaml").unlink()
    stale = project / "stacks/prod/kubernetes/endpoints/old.yaml"
    stale.write_text("# Rendered by mlserve from mlserve.toml. Do not edit.\nkind: ConfigMap\n")
    (project / "stacks/prod/kubernetes/notes.txt").write_text("mine, not mlserve's\n")

    result = run_cli("render", "--all", "--check", cwd=project)
    assert result.exit_code == 1, result.output
    assert "changed  staging/kubernetes/endpoints/fraud.yaml" in result.stdout
    assert "added    prod/kubernetes/namespace.yaml" in result.stdout
    assert "removed  prod/kubernetes/endpoints/old.yaml" in result.stdout
    assert "-    maxReplicas: 10" in result.stdout and "+    maxReplicas: 12" in result.stdout
    assert "notes.txt" not in result.stdout

    data = run_cli("render", "--all", "--check", "--json", cwd=project).json
    assert data["exit_code"] == 1 and data["result"]["up_to_date"] is False
    statuses = {d["path"]: d["status"] for d in data["result"]["differences"]}
    assert statuses["prod/kubernetes/endpoints/old.yaml"] == "removed"

    # --check wrote nothing
    assert stale.is_file() and not (project / "stacks/prod/kubernetes/namespace.yaml").exists()


def test_render_removes_stale_owned_files_only(project: Path) -> None:
    assert run_cli("render", "--env", "staging", cwd=project).exit_code == 0
    mine = project / "stacks/staging/kubernetes/README.local.md"
    mine.write_text("notes\n")
    tf_work = project / "stacks/staging/terraform/cluster/.terraform/providers/x"
    tf_work.parent.mkdir(parents=True)
    tf_work.write_text("# Rendered by mlserve from mlserve.toml. (a copy terraform keeps)\n")
    state = project / "stacks/staging/terraform/cluster/terraform.tfstate"
    state.write_text("{}")
    empty = project / "stacks/staging/kubernetes/overlays"
    empty.mkdir()
    _edit(project, 'endpoints = ["fraud"]\nscrape_interval', 'endpoints = ["fraud"]\nscrape_interval')
    _edit(
        project,
        'target = "kubernetes"\nendpoints = ["fraud", "summarize"]',
        'target = "kubernetes"\nendpoints = ["fraud"]',
    )

    result = run_cli("render", "--env", "staging", "--json", cwd=project)
    assert result.exit_code == 0, result.output
    removed = result.json["result"]["environments"][0]["removed"]
    assert removed == ["kubernetes/endpoints/summarize.yaml", "kubernetes/monitoring/summarize.yaml"]
    assert not (project / "stacks/staging/kubernetes/endpoints/summarize.yaml").exists()
    assert mine.is_file() and tf_work.is_file() and state.is_file() and empty.is_dir()
    assert run_cli("render", "--env", "staging", "--check", cwd=project).exit_code == 0


def test_out_dir(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    result = run_cli("render", "--env", "prod", "--out", str(out), cwd=project)
    assert result.exit_code == 0, result.output
    assert (out / "prod/kubernetes/traffic.yaml").is_file()
    assert not (project / "stacks").exists()
    assert run_cli("render", "--env", "prod", "--out", str(out), "--check", cwd=project).exit_code == 0
    assert run_cli("render", "--env", "prod", "--check", cwd=project).exit_code == 1


def test_project_template_overrides_a_builtin_template(project: Path) -> None:
    override = project / "templates/kubernetes/pdb.yaml.j2"
    override.parent.mkdir(parents=True, exist_ok=True)
    override.write_text(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {{ v.name | yaml }}\n"
        "  namespace: {{ namespace | yaml }}\nspec:\n  minAvailable: 1\n"
        '  selector: {matchLabels: {"mlserve.io/version": {{ v.version | yaml }}}}\n'
    )
    assert run_cli("render", "--env", "staging", cwd=project).exit_code == 0
    text = (project / "stacks/staging/kubernetes/endpoints/fraud.yaml").read_text()
    assert "minAvailable: 1" in text and "maxUnavailable: 1" not in text  # the built-in PDB is gone


def test_undefined_variable_in_a_template_is_a_clear_error(project: Path) -> None:
    override = project / "templates/kubernetes/pdb.yaml.j2"
    override.parent.mkdir(parents=True, exist_ok=True)
    override.write_text("name: {{ v.nmae | yaml }}\n")
    result = run_cli("render", "--env", "staging", cwd=project)
    assert result.exit_code == 1
    assert "kubernetes/pdb.yaml.j2" in result.stderr and "nmae" in result.stderr
    assert "Traceback" not in result.output


def test_usage_errors(project: Path) -> None:
    bad = run_cli("render", "--env", "nope", cwd=project)
    assert bad.exit_code == 2 and "unknown environment 'nope'" in bad.stderr
    both = run_cli("render", "--env", "prod", "--all", cwd=project)
    assert both.exit_code == 2


def test_check_on_a_project_never_rendered_lists_every_file_as_added(project: Path) -> None:
    result = run_cli("render", "--env", "staging", "--check", "--json", cwd=project)
    assert result.exit_code == 1
    diffs = result.json["result"]["differences"]
    assert diffs and all(d["status"] == "added" for d in diffs)
    assert len(diffs) == result.json["result"]["files"]


def test_render_environment_api_contract(project: Path, tmp_path: Path) -> None:
    from mlserve.project import load_project
    from mlserve.render import EndpointTraffic, render_environment

    result = render_environment(
        load_project(project),
        "staging",
        tmp_path / "out",
        traffic={"fraud": EndpointTraffic("v1", "v2", "canary", {"v1": 75, "v2": 25})},
    )
    assert result.environment == "staging" and result.env_dir == (tmp_path / "out" / "staging").resolve()
    assert list(result.layers) == ["cluster", "platform", "kubernetes"]
    assert result.layer_dirs["cluster"] == result.env_dir / "terraform" / "cluster"
    for layer, files in result.layers.items():
        assert files and all((result.env_dir / f).is_file() for f in files)
        assert all(
            f.startswith({"cluster": "terraform/cluster/", "platform": "terraform/platform/"}.get(layer, "kubernetes/"))
            for f in files
        )
    assert sorted(result.written) == result.files and not result.unchanged and not result.removed
    assert "weight: 25" in (result.layer_dirs["kubernetes"] / "traffic.yaml").read_text()
