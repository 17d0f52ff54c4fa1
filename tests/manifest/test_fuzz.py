"""Random documents and random values into the manifest loader: exit 0 or 2, never a traceback."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlserve.errors import ManifestError
from mlserve.manifest import loads_manifest
from mlserve.scaffold import manifest_text
from tests.conftest import run_cli
from tests.manifest.test_errors import BASE
from tests.support.fuzz import set_path, tree_paths

KEYS = st.sampled_from(
    [
        "project",
        "name",
        "environments",
        "endpoints",
        "local",
        "target",
        "steps",
        "versions",
        "v1",
        "rollout",
        "metrics",
        "margin",
        "gpu",
        "baseline",
        "runtime",
        "kind",
        "quantile",
        "alpha",
        "model_uri",
        "faults",
    ]
) | st.text(min_size=1, max_size=12)

SCALARS = (
    st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.text(max_size=40)
    | st.sampled_from(["30s", "5m", "10%", "v1", "kserve", "local", "canary", "../x", "${x}", "{{ y }}"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


BASE_DOC = tomllib.loads(BASE)
BASE_PATHS = tree_paths(BASE_DOC)


def _dump(doc: Any) -> str | None:
    try:
        return tomlkit.dumps(doc)
    except Exception:  # values TOML cannot hold (e.g. None in arrays): not a loader input
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(KEYS, VALUES, max_size=6))
def test_random_documents(doc: dict[str, Any]) -> None:
    text = _dump(doc)
    if text is None:
        return
    try:
        loads_manifest(text)
    except ManifestError as exc:
        assert exc.problems and all(p.startswith("mlserve.toml") for p in exc.problems)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(BASE_PATHS), value=VALUES)
def test_random_values_in_a_valid_manifest(path: tuple[Any, ...], value: Any) -> None:
    doc = copy.deepcopy(BASE_DOC)
    set_path(doc, path, value)
    text = _dump(doc)
    if text is None:
        return
    try:
        loads_manifest(text)
    except ManifestError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith("mlserve.toml"), problem


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(BASE_PATHS), value=VALUES, raw=st.text(max_size=200))
def test_cli_exit_codes(tmp_path: Path, path: tuple[Any, ...], value: Any, raw: str) -> None:
    doc = copy.deepcopy(BASE_DOC)
    set_path(doc, path, value)
    for text in (_dump(doc), raw):
        if text is None:
            continue
        (tmp_path / "mlserve.toml").write_text(text, encoding="utf-8", errors="surrogatepass")
        res = run_cli("--project-dir", str(tmp_path), "validate")
        assert res.exit_code in (0, 2), res.output
        assert "Traceback" not in res.output
        if res.exit_code == 2:
            assert "mlserve.toml" in res.stderr


@pytest.mark.parametrize("blob", [b"\xff\xfe\x00garbage", b'[project]\nname = "a"\n' * 3, b"a = [" * 5000])
def test_binary_and_pathological_files(tmp_path: Path, blob: bytes) -> None:
    (tmp_path / "mlserve.toml").write_bytes(blob)
    res = run_cli("--project-dir", str(tmp_path), "validate")
    assert res.exit_code == 2, res.output
    assert "mlserve.toml" in res.stderr


def test_scaffold_manifest_is_the_example() -> None:
    """The repository's example and what `mlserve init` writes never drift apart."""
    root = Path(__file__).resolve().parents[2]
    assert (root / "mlserve.toml").read_text() == manifest_text("acme-ml")
