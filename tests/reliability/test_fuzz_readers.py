"""hypothesis against the three readers of user files, always through the CLI (in-process):
``mlserve validate`` (manifest), ``mlserve analyze --replay`` (snapshot) and
``mlserve analyze --replay S --policy P`` (policy).

The rule for every input: never a traceback and never exit 1; a bad file exits 2 with a
message that names the file and the field (a dotted key path, or the line and column of a
syntax error). tests/manifest/test_fuzz.py and tests/stats/test_fuzz.py fuzz the readers in
process with fewer examples; here every example goes through the CLI, 500 in the default
run and 10,000 in the slow-marked run (``MLSERVE_FUZZ_EXAMPLES`` overrides the default).
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import tempfile
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlserve.scaffold import manifest_text
from tests.conftest import run_cli
from tests.reliability.conftest import Recorder
from tests.stats.test_cli import example
from tests.stats.test_fuzz import mutated_snapshots
from tests.support.fuzz import tree_paths

DEFAULT_EXAMPLES = int(os.environ.get("MLSERVE_FUZZ_EXAMPLES", "500"))
SLOW_EXAMPLES = 10_000

# ---------------------------------------------------------------------------
# Values and mutations
# ---------------------------------------------------------------------------

HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "../../etc/passwd",
        "/abs/path",
        "${var.x}",
        "%{ if true }x%{ endif }",
        "{{ 7*7 }}",
        "{% raw %}",
        '"; rm -rf / #',
        "a\nb",
        "---\nkind: Secret",
        "\\",
        "\x00",
        "\x1b[31m",
        "é" * 3,
        "x" * 5000,
        "30s",
        "-5m",
        "10%",
        "1e999",
        "NaN",
        "v1",
        "v2",
        "canary",
        "kserve",
        "local",
        "latency",
        "error_rate",
    ]
)
KEYS = st.sampled_from(
    [
        "name",
        "target",
        "steps",
        "versions",
        "v1",
        "v3",
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
        "interval",
        "numerator",
        "Bad Key",
        "",
    ]
) | st.text(min_size=1, max_size=10)
SCALARS = (
    st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.text(max_size=30)
    | HOSTILE_TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=10,
)


@st.composite
def mutated_docs(draw: st.DrawFn, base: dict[str, Any]) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """The base document with 1-3 nodes replaced, deleted, or given an extra key.
    Returns the document and the first mutated path (the field an error should name)."""
    doc = copy.deepcopy(base)
    first: tuple[Any, ...] = ()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = tree_paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete":
            if isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent.pop(path[-1])
        elif action == "add" and isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(KEYS)] = draw(VALUES)
        else:
            parent[path[-1]] = draw(VALUES)
        first = first or path
    return doc, first


def _toml(doc: Any) -> str | None:
    try:
        return tomlkit.dumps(doc)
    except Exception:  # None, or a value TOML cannot hold: not a file anyone could write
        return None


@st.composite
def byte_damage(draw: st.DrawFn, text: str) -> bytes:
    """A valid file with a few bytes overwritten, inserted or cut (typos, truncation, binary)."""
    data = bytearray(text.encode("utf-8"))
    rng = random.Random(draw(st.integers(min_value=0, max_value=2**32)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not data:
            break
        at = rng.randrange(len(data))
        what = rng.choice(["flip", "insert", "cut", "truncate"])
        if what == "flip":
            data[at] = rng.choice(b'"[]=.\n\\{}#\x00\xff' + bytes([rng.randrange(256)]))
        elif what == "insert":
            data[at:at] = rng.choice([b'"', b"[", b"]]", b"\n[x]\n", b"\xc3", b"=", b"'''"])
        elif what == "cut":
            del data[at : at + rng.randrange(1, 40)]
        else:
            del data[at:]
    return bytes(data)


# ---------------------------------------------------------------------------
# Checking one CLI answer
# ---------------------------------------------------------------------------

_PROBLEM = re.compile(r"^(?P<src>[^:\n]+?)(?::(?P<line>\d+))?: (?P<rest>.+)$")
# a dotted key path: bare parts, "quoted parts" and [indexes], then ': '
_FIELD = re.compile(
    r'^(?:[A-Za-z0-9_+-]+|"(?:[^"\\]|\\.)*"|\[\d+\])(?:\.?(?:[A-Za-z0-9_+-]+|"(?:[^"\\]|\\.)*"|\[\d+\]))*: '
)
_SYNTAX = ("invalid TOML", "invalid JSON", "not valid UTF-8", "nests too deeply", "nested too deeply")


def _names_a_field(problem: str, source: str) -> bool:
    """``SRC[:LINE]: dotted.path: message``, or a syntax error with its line."""
    m = _PROBLEM.match(problem)
    if not m or not m.group("src").endswith(source):
        return False
    rest = m.group("rest")
    if any(rest.startswith(s) for s in _SYNTAX):
        return True
    if rest.startswith(("a snapshot must be", "unknown field ")):  # the document itself, or the field named
        return True
    m = _FIELD.match(rest)
    return bool(m and m.group(0).strip(": "))


class Tally:
    """Exit codes seen over a run of examples, for the reliability table."""

    def __init__(self) -> None:
        self.codes: Counter[int] = Counter()
        self.bad: list[str] = []

    def check(self, res: Any, source: str, allowed: tuple[int, ...]) -> None:
        self.codes[res.exit_code] += 1
        assert "Traceback" not in res.output, res.output[-3000:]
        assert res.exit_code in allowed, res.output[-3000:]
        envelope = json.loads(res.stdout)
        if res.exit_code == 2:
            err = envelope["error"]
            problems = err.get("problems") or err["message"].splitlines()
            assert problems, envelope
            assert all(_names_a_field(p, source) for p in problems), problems

    def summary(self) -> str:
        return ", ".join(f"exit {k}: {v}" for k, v in sorted(self.codes.items()))


def _run(examples: int, strategy: st.SearchStrategy[Any], body: Callable[[Any], None]) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(strategy)
    def inner(value: Any) -> None:
        body(value)

    inner()


# ---------------------------------------------------------------------------
# The manifest: mlserve validate
# ---------------------------------------------------------------------------

MANIFEST = manifest_text("acme-ml")
MANIFEST_DOC = tomllib.loads(MANIFEST)


def _manifest_inputs() -> st.SearchStrategy[bytes]:
    def encode(pair: tuple[dict[str, Any], tuple[Any, ...]]) -> bytes | None:
        text = _toml(pair[0])
        return None if text is None else text.encode("utf-8", "surrogatepass")

    structured = mutated_docs(MANIFEST_DOC).map(encode).filter(lambda b: b is not None)
    return st.one_of(structured, byte_damage(MANIFEST))  # type: ignore[arg-type]


def fuzz_manifest(examples: int, reliability: Recorder) -> None:
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = root / "mlserve.toml"

        def body(data: bytes) -> None:
            manifest.write_bytes(data)
            res = run_cli("--project-dir", str(root), "validate", "--json")
            tally.check(res, "mlserve.toml", (0, 2))

        _run(examples, _manifest_inputs(), body)
    reliability.case(
        "fuzz",
        f"manifest loader, {examples} mutated or damaged mlserve.toml files",
        expected="`mlserve validate`: exit 0 or 2, never a traceback; every problem names file and key (or line)",
        measured=tally.summary() + "; 0 tracebacks, 0 problems without a field",
        sent=sum(tally.codes.values()),
        failed=0,
        examples=examples,
    )


def test_fuzz_manifest_cli(reliability: Recorder, fast_cli: None) -> None:
    fuzz_manifest(DEFAULT_EXAMPLES, reliability)


@pytest.mark.slow
def test_fuzz_manifest_cli_10k(reliability: Recorder, fast_cli: None) -> None:
    fuzz_manifest(SLOW_EXAMPLES, reliability)


# ---------------------------------------------------------------------------
# The policy: mlserve analyze --replay S --policy P
# ---------------------------------------------------------------------------

POLICY_DOC: dict[str, Any] = copy.deepcopy(MANIFEST_DOC["endpoints"]["fraud"]["rollout"])
POLICY_DOC["metrics"].append(
    {
        "name": "conversions",
        "kind": "ratio",
        "direction": "higher",
        "margin": "5%",
        "numerator": 'sum(conversions_total{variant="{variant}"})',
        "denominator": 'sum(requests_total{variant="{variant}"})',
    }
)
POLICY_TEXT = tomlkit.dumps(POLICY_DOC)


def _policy_inputs() -> st.SearchStrategy[bytes]:
    def encode(args: tuple[tuple[dict[str, Any], tuple[Any, ...]], bool]) -> bytes | None:
        (doc, _), wrapped = args
        text = _toml({"rollout": doc} if wrapped else doc)
        return None if text is None else text.encode("utf-8", "surrogatepass")

    structured = st.tuples(mutated_docs(POLICY_DOC), st.booleans()).map(encode).filter(lambda b: b is not None)
    return st.one_of(structured, byte_damage(POLICY_TEXT))  # type: ignore[arg-type]


def fuzz_policy(examples: int, reliability: Recorder) -> None:
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        snap = root / "snap.json"
        snap.write_text(json.dumps(example()), encoding="utf-8")
        policy = root / "policy.toml"

        def body(data: bytes) -> None:
            policy.write_bytes(data)
            res = run_cli("analyze", "--replay", str(snap), "--policy", str(policy), "--json", cwd=root)
            tally.check(res, "policy.toml", (0, 2, 3, 4))

        _run(examples, _policy_inputs(), body)
    reliability.case(
        "fuzz",
        f"policy reader, {examples} mutated or damaged policy files",
        expected="`mlserve analyze --replay S --policy P`: exit 0/3/4 or 2 naming file and key; never a traceback",
        measured=tally.summary() + "; 0 tracebacks, 0 problems without a field",
        sent=sum(tally.codes.values()),
        failed=0,
        examples=examples,
    )


def test_fuzz_policy_cli(reliability: Recorder, fast_cli: None) -> None:
    fuzz_policy(DEFAULT_EXAMPLES, reliability)


@pytest.mark.slow
def test_fuzz_policy_cli_10k(reliability: Recorder, fast_cli: None) -> None:
    fuzz_policy(SLOW_EXAMPLES, reliability)


# ---------------------------------------------------------------------------
# The snapshot: mlserve analyze --replay S
# ---------------------------------------------------------------------------


def _snapshot_inputs() -> st.SearchStrategy[bytes]:
    structured = mutated_snapshots().map(lambda d: json.dumps(d, allow_nan=True).encode("utf-8", "surrogatepass"))
    return st.one_of(structured, byte_damage(json.dumps(example(), indent=1)))


def fuzz_snapshot(examples: int, reliability: Recorder) -> None:
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        snap = root / "snap.json"

        def body(data: bytes) -> None:
            snap.write_bytes(data)
            res = run_cli("analyze", "--replay", str(snap), "--json", cwd=root)
            tally.check(res, "snap.json", (0, 2, 3, 4))

        _run(examples, _snapshot_inputs(), body)
    reliability.case(
        "fuzz",
        f"snapshot reader, {examples} mutated or damaged snapshots",
        expected="`mlserve analyze --replay`: exit 0/3/4 or 2 naming file, look and field; never a traceback",
        measured=tally.summary() + "; 0 tracebacks, 0 errors without a field",
        sent=sum(tally.codes.values()),
        failed=0,
        examples=examples,
    )


def test_fuzz_snapshot_cli(reliability: Recorder, fast_cli: None) -> None:
    fuzz_snapshot(DEFAULT_EXAMPLES, reliability)


@pytest.mark.slow
def test_fuzz_snapshot_cli_10k(reliability: Recorder, fast_cli: None) -> None:
    fuzz_snapshot(SLOW_EXAMPLES, reliability)
