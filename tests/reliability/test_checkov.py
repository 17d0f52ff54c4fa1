"""checkov over freshly rendered stacks: zero failed checks outside .checkov-allowlist.yaml.

checkov runs from its own virtual environment (``scripts/checkov.sh`` creates
``.venv-checkov/`` on first use, in CI too), because its pinned dependencies would break
mlserve's. The allowlist is kept honest both ways: a finding not on it fails, and so does an
entry that no finding needs any more.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, run_cli
from tests.reliability.conftest import Recorder

SCRIPT = REPO / "scripts" / "checkov.sh"
ALLOWLIST = REPO / ".checkov-allowlist.yaml"
FRAMEWORKS = "terraform,kubernetes,secrets"


def load_allowlist() -> list[dict[str, Any]]:
    entries = yaml.safe_load(ALLOWLIST.read_text(encoding="utf-8")) or []
    for e in entries:
        assert set(e) <= {"id", "resources", "reason"}, e
        assert isinstance(e.get("id"), str) and e["id"].startswith("CKV"), e
        reason = e.get("reason")
        assert isinstance(reason, str) and reason.strip() and "\n" not in reason.strip(), e
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids)), "one entry per check"
    return entries


def run_checkov(directory: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["bash", str(SCRIPT), "-d", str(directory), "--framework", FRAMEWORKS, "-o", "json", "--quiet",
         "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr[-3000:]  # 1: findings (judged below)
    data = json.loads(out.stdout)
    return data if isinstance(data, list) else [data]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stacks")
    res = run_cli("--project-dir", str(REPO), "render", "--all", "--out", str(out))
    assert res.exit_code == 0, res.output
    return out


def _allowed(finding: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    resource = str(finding.get("resource", "")).split("[", 1)[0]
    for e in entries:
        if e["id"] == finding["check_id"] and (not e.get("resources") or resource in e["resources"]):
            return e
    return None


def test_rendered_stacks_pass_checkov(rendered: Path, reliability: Recorder) -> None:
    entries = load_allowlist()
    reports = run_checkov(rendered)
    failed: list[dict[str, Any]] = []
    passed = resources = parse_errors = 0
    for r in reports:
        summary = r.get("summary", {})
        passed += summary.get("passed", 0)
        resources += summary.get("resource_count", 0)
        parse_errors += summary.get("parsing_errors", 0)
        failed.extend(r.get("results", {}).get("failed_checks", []))
    unexpected = [f"{f['check_id']} {f['resource']} ({f['file_path']})" for f in failed if not _allowed(f, entries)]
    used = {id(_allowed(f, entries)) for f in failed}
    stale = [e["id"] for e in entries if id(e) not in used]
    by_id = sorted({f["check_id"] for f in failed})
    reliability.case(
        "checkov",
        f"checkov ({FRAMEWORKS}) over `mlserve render --all` of the example project",
        expected="no failed check outside .checkov-allowlist.yaml; no stale allowlist entry; no parse error",
        measured=f"{resources} resources, {passed} checks passed, {len(failed)} failed, all allowlisted "
        f"({', '.join(by_id)})"
        if not unexpected
        else f"{len(unexpected)} failed outside the allowlist",
        sent=resources,
        failed=len(unexpected),
        decisions=f"{len(entries)} allowlist entries, {len(stale)} stale",
    )
    assert parse_errors == 0
    assert not unexpected, unexpected
    assert not stale, f"allowlist entries no finding needs any more: {stale}"
