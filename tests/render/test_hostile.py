"""Hostile values in every free-text manifest field: either the manifest is rejected with
a message naming the key, or the value is quoted so that parsing the rendered output
(YAML, HCL, and terraform itself) gives back exactly the input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import hcl2
import pytest
import tomlkit
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlserve.errors import ManifestError
from mlserve.project import Project, load_project
from mlserve.render import render_environment, render_files
from mlserve.render.context import aws_tag_value, backend_context
from mlserve.render.filters import hcl
from mlserve.render.filters import yaml as yaml_filter
from mlserve.tools import run
from tests.render.k8s_schemas import validate_object
from tests.support.hostile import hostile_manifest

PARSE = hcl2.SerializationOptions(strip_string_quotes=True)

EXPLICIT = [
    'say "hi"',
    "it's",
    "${var.secret}",
    "$${already escaped}",
    "%{ if true }x%{ endif }",
    "%%{",
    "{{ project.name }}",
    "{% raw %}",
    "line one\nline two\n",
    "tab\there",
    "back\\slash\\",
    "trailing backslash \\",
    '\\"',
    "- item\n  key: value",
    "key: value",
    "null",
    "true",
    "0x1F",
    "1e3",
    "~",
    "&anchor *alias !!tag",
    "# not a comment",
    "---\napiVersion: v1\nkind: Secret",
    '"}]} ; rm -rf / #',
    "\u2028line separator\u2029",
    "\u0085nel",
    "\ufeffbom",
    "emoji \U0001f680 and accents éü",
    " leading and trailing spaces ",
    "",
    "x" * 4096,
    "$" * 50 + "{" + "%" * 20 + "{",
]


def write_project(s: str, root: Path) -> Project:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "mlserve.toml").write_text(tomlkit.dumps(hostile_manifest(s)), encoding="utf-8")
    return load_project(root)


def hcl_value(raw: Any) -> Any:
    """A string literal as python-hcl2 reads it (quotes stripped, escapes decoded)."""
    assert isinstance(raw, str)
    return raw


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def check_rendered(project: Project, s: str) -> None:
    eks = render_files(project, "eks")
    onprem = render_files(project, "onprem")

    # Terraform: the backend block holds exactly the manifest's values, nothing injected.
    for layer in ("cluster", "platform"):
        parsed = hcl2.loads(eks[layer][f"terraform/{layer}/backend.tf"], serialization_options=PARSE)
        backend = parsed["terraform"][0]["backend"][0]["s3"]
        expected = backend_context(project.manifest, "eks", layer)
        assert expected is not None
        assert {k: hcl_value(v) for k, v in backend.items() if not k.startswith("__")} == expected["config"]
        assert hcl_value(backend["bucket"]) == s
    variables = hcl2.loads(eks["cluster"]["terraform/cluster/variables.tf"], serialization_options=PARSE)
    tags = next(v["tags"] for v in variables["variable"] if "tags" in v)["default"]
    if s:
        assert hcl_value(tags["owner"]) == aws_tag_value(s)
    platform_vars = hcl2.loads(onprem["platform"]["terraform/platform/variables.tf"], serialization_options=PARSE)
    ctx = next(v["kube_context"] for v in platform_vars["variable"] if "kube_context" in v)
    assert hcl_value(ctx["default"]) == s
    assert set(ctx) - {"__is_block__"} == {"description", "type", "default"}

    # YAML: every free-text field comes back unchanged, and the object count is fixed.
    for env, files, workload in (("eks", eks, "InferenceService"), ("onprem", onprem, "SeldonDeployment")):
        ns = docs(files["kubernetes"]["kubernetes/namespace.yaml"])
        assert [d["kind"] for d in ns] == ["Namespace", "PeerAuthentication", "NetworkPolicy"]
        assert ns[0]["metadata"]["annotations"] == {"mlserve.io/description": s or s, "mlserve.io/owner": s}
        objs = docs(files["kubernetes"]["kubernetes/endpoints/e.yaml"])
        kinds = [d["kind"] for d in objs]
        assert kinds == [
            workload,
            "Service",
            "DestinationRule",
            "VirtualService",
            "AuthorizationPolicy",
            "PodDisruptionBudget",
        ], (env, kinds)
        authz = objs[4]["spec"]["rules"]
        assert authz[1]["from"][0]["source"]["principals"] == [s]
        if workload == "InferenceService":
            model = objs[0]["spec"]["predictor"]["model"]
            assert objs[0]["metadata"]["annotations"]["mlserve.io/description"] == (s or s)
            assert model["args"] == [s, "--x"]
            assert model["env"] == [{"name": "HOSTILE", "value": s}]
        else:
            pred = objs[0]["spec"]["predictors"][0]
            container = pred["componentSpecs"][0]["spec"]["containers"][0]
            assert container["args"] == [s, "--x"]
            assert container["env"] == [{"name": "HOSTILE", "value": s}]
            traffic = docs(files["kubernetes"]["kubernetes/traffic.yaml"])
            assert [d["kind"] for d in traffic] == ["VirtualService", "SeldonDeployment"]
            assert traffic[1]["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["args"][0] == s


FREE_TEXT = st.lists(
    st.one_of(
        st.sampled_from([*list("\"'\\${}%#:-[]!&*|>?,\n\t` "), "${", "%{", "{{", "}}", "\u2028", "\x85", "\ufeff"]),
        st.characters(blacklist_categories=("Cs",)),
    ),
    max_size=120,
).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=FREE_TEXT)
def test_hypothesis_free_text_is_quoted_or_rejected(tmp_path: Path, s: str) -> None:
    root = tmp_path / "p"
    try:
        project = write_project(s, root)
    except ManifestError as err:
        # Rejected: only for control characters, and the message names a key and the reason.
        assert any((ord(c) < 0x20 and c not in "\t\n") or ord(c) == 0x7F for c in s)
        assert "control characters" in str(err) and "mlserve.toml" in str(err)
        return
    check_rendered(project, s)


@pytest.mark.parametrize("s", EXPLICIT, ids=[f"case{i}" for i in range(len(EXPLICIT))])
def test_explicit_hostile_values_round_trip(tmp_path: Path, s: str) -> None:
    check_rendered(write_project(s, tmp_path / "p"), s)


@pytest.mark.parametrize("s", ["nul\x00", "bell\x07", "escape\x1b[31m", "cr\r", "del\x7f", "y" * 4097])
def test_control_characters_and_oversized_text_are_rejected_with_the_key(tmp_path: Path, s: str) -> None:
    with pytest.raises(ManifestError) as info:
        write_project(s, tmp_path / "p")
    message = str(info.value)
    assert "mlserve.toml" in message
    assert "project.description" in message or "description" in message
    assert "control characters" in message or "at most 4096" in message


@pytest.mark.slow
@pytest.mark.terraform
def test_hostile_values_survive_kustomize_strict_validation_and_terraform(tmp_path: Path) -> None:
    """The real parsers: kubectl kustomize (go-yaml), the CRD schemas, terraform console."""
    tfrc = tmp_path / "terraformrc"
    tfrc.write_text("")
    env = {"TF_CLI_CONFIG_FILE": str(tfrc), "CHECKPOINT_DISABLE": "1"}
    for i, s in enumerate(EXPLICIT):
        project = write_project(s, tmp_path / f"p{i}")
        for env_name in ("eks", "onprem"):
            result = render_environment(project, env_name, tmp_path / f"out{i}")
            built = run(["kubectl", "kustomize", str(result.layer_dirs["kubernetes"])], timeout=60).stdout
            objs = docs(built)
            for obj in objs:
                validate_object(obj)
            ns = next(o for o in objs if o["kind"] == "Namespace")
            # kustomize (go-yaml, YAML 1.2) writes NEL/LS/PS unescaped, and PyYAML (YAML 1.1)
            # reads those as line breaks: compare only where both YAML versions agree.
            if not any(c in s for c in "\x85\u2028\u2029"):
                assert ns["metadata"]["annotations"]["mlserve.io/owner"] == s
        # terraform's own parser reads the variable defaults back (variables need no provider)
        probe = tmp_path / f"tf{i}"
        probe.mkdir()
        platform = render_environment(project, "onprem", tmp_path / f"out{i}").layer_dirs["platform"]
        shutil.copy(platform / "variables.tf", probe / "variables.tf")
        out = run(
            ["terraform", "console", "-no-color"], cwd=probe, env=env, input_text="jsonencode(var.kube_context)\n"
        ).stdout.strip()
        assert json.loads(json.loads(out)) == s


def test_filters_round_trip_through_their_parsers() -> None:
    for s in EXPLICIT:
        assert yaml.safe_load("v: " + yaml_filter(s))["v"] == s
        parsed = hcl2.loads(f"v = {hcl(s)}\n", serialization_options=PARSE)
        assert hcl_value(parsed["v"]) == s
    assert yaml_filter({"b": [1, True, None], "a": "x"}) == '{"a": "x", "b": [1, true, null]}'
    assert hcl({"b": [1, True, None], "a": "x"}) == '{ "a" = "x", "b" = [1, true, null] }'
