from __future__ import annotations

import json
import tomllib

import jsonschema

from mlserve.manifest.reference import DESCRIPTIONS, iter_keys, reference_markdown
from tests.conftest import REPO, run_cli


def test_every_manifest_key_is_described() -> None:
    keys = [k for k, _, _ in iter_keys()]
    assert [k for k in keys if not DESCRIPTIONS.get(k)] == []
    assert sorted(set(DESCRIPTIONS) - set(keys)) == []


def test_docs_manifest_reference_is_up_to_date() -> None:
    assert (REPO / "docs" / "manifest.md").read_text() == reference_markdown(), (
        "regenerate with: mlserve schema --format markdown > docs/manifest.md"
    )


def test_schema_command_and_example_conforms() -> None:
    res = run_cli("schema")
    assert res.exit_code == 0
    schema = json.loads(res.stdout)
    example = tomllib.loads((REPO / "mlserve.toml").read_text())
    # the JSON Schema is what editors use; the example must satisfy it
    jsonschema.validate(example, schema)
    res = run_cli("schema", "--format", "yaml")
    assert res.exit_code == 2 and "--format must be json or markdown" in res.stderr


def test_docs_cli_reference_is_up_to_date() -> None:
    from mlserve.cli.main import app
    from mlserve.cli.reference import cli_reference_markdown

    text = cli_reference_markdown(app)
    assert "## `rollout run`" in text and "## `analyze`" in text
    assert (REPO / "docs" / "cli.md").read_text() == text, "regenerate with: python scripts/gen_cli_reference.py"
