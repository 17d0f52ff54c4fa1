"""Hostile text in every free-text field of the manifest cannot change the structure of the
rendered stacks.

tests/render/test_hostile.py checks that chosen fields come back unchanged from the files
they land in. This test is the structural complement: it renders the same manifest twice,
once with a harmless marker in every free-text field and once with a hostile value, parses
*every* rendered file (HCL with python-hcl2, YAML with ``yaml.safe_load_all``) and requires

- the same set of files, the same Terraform blocks (resources, variables, outputs,
  modules, locals, backend), the same Kubernetes objects (kind, name), and the same tree of
  keys and list lengths in each of them; and
- every leaf that held the marker now holds the hostile value, unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import hcl2
import pytest
import tomlkit
import yaml

from mlserve.project import load_project
from mlserve.render import render_files
from mlserve.render.context import aws_tag_value
from tests.reliability.conftest import Recorder
from tests.render.test_hostile import EXPLICIT
from tests.support.hostile import hostile_manifest

PARSE = hcl2.SerializationOptions(strip_string_quotes=True)
MARKER = "mlserve-marker-7f3a"

EXTRA = [
    "---",
    "...\n---\nkind: Secret\nmetadata: {name: x}",
    "${jsonencode(var.cluster_name)}",
    "<<EOF\ninjected = true\nEOF",
    '"\n}\nresource "aws_iam_user" "x" {\n  name = "x',
    "]]\n[[x]]",
    "{{ lookup('env', 'AWS_SECRET_ACCESS_KEY') }}",
    "{%- include '/etc/passwd' -%}",
    "\\n\\u0022\\x00",
    "'\n- kind: Secret",
    "a: b\n  c: d",
    "%{~ for x in [1] ~}${x}%{~ endfor ~}",
]
ALL_VALUES = [v for v in [*EXPLICIT, *EXTRA] if v]  # "" omits optional annotations: tests/render covers it
# The default run: one value per class, and one that holds every class at once.
QUICK = [
    'say "hi" it\'s',
    "${var.secret} $${x} %{ if true }x%{ endif }",
    "{{ project.name }} {% raw %} {%- include '/etc/passwd' -%}",
    "line one\nline two\n- item\n  key: value",
    'back\\slash\\ \\"',
    "---\napiVersion: v1\nkind: Secret",
    '"\n}\nresource "aws_iam_user" "x" {\n  name = "x',
    "x" * 4096,
    "".join(EXTRA + EXPLICIT[:12])[:4096],
]


def render_all(s: str, root: Path) -> dict[str, Any]:
    """path -> parsed content, for every file of both environments."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "mlserve.toml").write_text(tomlkit.dumps(hostile_manifest(s, everything=True)), encoding="utf-8")
    project = load_project(root)
    out: dict[str, Any] = {}
    for env in ("eks", "onprem"):
        for files in render_files(project, env).values():
            for rel, text in files.items():
                key = f"{env}/{rel}"
                if rel.endswith(".tf"):
                    out[key] = hcl2.loads(text, serialization_options=PARSE)
                elif rel.endswith((".yaml", ".yml")):
                    out[key] = [d for d in yaml.safe_load_all(text) if d is not None]
                else:
                    out[key] = text
    return out


def skeleton(node: Any) -> Any:
    """The structure without the string values: keys, list lengths and leaf types."""
    if isinstance(node, dict):
        return {k: skeleton(v) for k, v in node.items()}
    if isinstance(node, list):
        return [skeleton(v) for v in node]
    return type(node).__name__


def leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in leaves(v, (*path, k))]
    if isinstance(node, list):
        return [x for i, v in enumerate(node) for x in leaves(v, (*path, i))]
    return [(path, node)]


def objects(parsed: dict[str, Any]) -> set[tuple[str, ...]]:
    """Terraform blocks and Kubernetes objects by identity."""
    out: set[tuple[str, ...]] = set()
    for path, content in parsed.items():
        if path.endswith(".tf"):
            for block_type, blocks in content.items():
                for block in blocks if isinstance(blocks, list) else [blocks]:
                    names = [k for k in block if not k.startswith("__")] if isinstance(block, dict) else []
                    for name in names:
                        inner = block[name]
                        labels = [k for k in inner if not k.startswith("__")] if block_type == "resource" else []
                        out.add((path, block_type, name, *labels))
        elif isinstance(content, list):
            for doc in content:
                if isinstance(doc, dict):
                    meta = doc.get("metadata") or {}
                    out.add((path, str(doc.get("kind")), str(meta.get("name")), str(meta.get("namespace"))))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return render_all(MARKER, tmp_path_factory.mktemp("ref") / "p")


def test_hostile_text_cannot_change_rendered_structure(
    reference: dict[str, Any], tmp_path: Path, reliability: Recorder
) -> None:
    check_values(QUICK, reference, tmp_path, reliability)


@pytest.mark.slow
def test_all_hostile_values_cannot_change_rendered_structure(
    reference: dict[str, Any], tmp_path: Path, reliability: Recorder
) -> None:
    check_values(ALL_VALUES, reference, tmp_path, reliability)


def check_values(values: list[str], reference: dict[str, Any], tmp_path: Path, reliability: Recorder) -> None:
    ref_objects = objects(reference)
    ref_skeleton = {k: skeleton(v) for k, v in reference.items()}
    marker_leaves = {k: [p for p, v in leaves(c) if v == MARKER] for k, c in reference.items()}
    embedded = sum(1 for c in reference.values() for _, v in leaves(c) if isinstance(v, str) and MARKER in v)
    exact = sum(len(v) for v in marker_leaves.values())
    assert exact > 20, "the reference render should carry the marker in many places"
    tags = {"owner", "description", "Owner", "Description"}
    changed: list[str] = []
    for i, s in enumerate(values):
        parsed = render_all(s, tmp_path / f"p{i}")
        problems = []
        if set(parsed) != set(reference):
            problems.append(f"files differ: {sorted(set(parsed) ^ set(reference))[:4]}")
        elif objects(parsed) != ref_objects:
            problems.append(f"objects differ: {sorted(objects(parsed) ^ ref_objects)[:4]}")
        else:
            for key, content in parsed.items():
                if skeleton(content) != ref_skeleton[key]:
                    problems.append(f"structure of {key} differs")
                    continue
                by_path = dict(leaves(content))
                for p in marker_leaves[key]:
                    got = by_path[p]
                    ok = got == s or (p and str(p[-1]) in tags and got == aws_tag_value(s))
                    if not ok:
                        problems.append(f"{key}: {'.'.join(map(str, p))} = {str(got)[:60]!r}")
        if problems:
            changed.append(f"value {i} {s[:30]!r}: {problems[:3]}")
    reliability.case(
        "render",
        f"{len(values)} hostile values (quotes, ${{...}}, %{{, {{{{ }}}}, {{% %}}, newlines, backslashes, ---, "
        f"4 KiB) in every free-text field; 2 environments (kserve+EKS, seldon+existing)",
        expected="same files, same Terraform blocks and Kubernetes objects, same key tree; "
        "every field comes back as the exact input",
        measured=f"{len(reference)} files, {len(ref_objects)} blocks/objects, {exact} field occurrences per value "
        f"({embedded} strings carry the text); {len(changed)} values changed something",
        sent=len(values),
        failed=len(changed),
    )
    assert not changed, changed
