"""The import graph keeps the layering of DESIGN.md and docs/architecture.md: no cycles,
data flowing one way (manifest -> render -> target -> metrics -> stats -> rollout -> report),
and the CLI's libraries only in the CLI."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator

import grimp
import pytest

ROOT = "mlserve"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(ROOT, include_external_packages=True, cache_dir=None)


def _ours(graph: grimp.ImportGraph) -> list[str]:
    return sorted(m for m in graph.modules if m == ROOT or m.startswith(ROOT + "."))


def _cycles(nodes: list[str], edges: dict[str, set[str]]) -> Iterator[list[str]]:
    """Strongly connected groups of more than one node (Tarjan), i.e. import cycles."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in nodes:
        if v not in index:
            visit(v)
    yield from found


def test_no_module_imports_another_that_imports_it_back(graph: grimp.ImportGraph) -> None:
    mods = _ours(graph)
    edges = {m: {d for d in graph.find_modules_directly_imported_by(m) if d.startswith(ROOT)} for m in mods}
    assert list(_cycles(mods, edges)) == []


def test_no_cycle_between_packages(graph: grimp.ImportGraph) -> None:
    packages = sorted(graph.find_children(ROOT))
    both = [
        (a, b)
        for a, b in itertools.combinations(packages, 2)
        if graph.chain_exists(importer=a, imported=b, as_packages=True)
        and graph.chain_exists(importer=b, imported=a, as_packages=True)
    ]
    assert both == []


FORBIDDEN = [
    # the statistics are pure functions over snapshots and specs
    ("mlserve.stats", "mlserve.metrics"),
    ("mlserve.stats", "mlserve.targets"),
    ("mlserve.stats", "mlserve.rollout"),
    ("mlserve.stats", "mlserve.report"),
    ("mlserve.stats", "mlserve.manifest"),
    ("mlserve.stats", "mlserve.local"),
    ("mlserve.stats", "mlserve.cli"),
    # data flows one way
    ("mlserve.metrics", "mlserve.rollout"),
    ("mlserve.metrics", "mlserve.targets"),
    ("mlserve.report", "mlserve.rollout"),
    ("mlserve.targets", "mlserve.rollout"),
    ("mlserve.local", "mlserve.targets"),
    ("mlserve.local", "mlserve.rollout"),
    ("mlserve.render", "mlserve.targets"),
    ("mlserve.manifest", "mlserve.render"),
    # monitoring (profiles, drift summaries, rules, dashboards) is used by the local runtime,
    # the renderer and the CLI, and uses none of them
    ("mlserve.monitoring", "mlserve.local"),
    ("mlserve.monitoring", "mlserve.targets"),
    ("mlserve.monitoring", "mlserve.render"),
    ("mlserve.monitoring", "mlserve.rollout"),
    ("mlserve.stats", "mlserve.monitoring"),
]


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN, ids=[f"{a}-/->{b}" for a, b in FORBIDDEN])
def test_layers(graph: grimp.ImportGraph, importer: str, imported: str) -> None:
    chain = graph.find_shortest_chain(importer=importer, imported=imported, as_packages=True)
    assert chain is None, " -> ".join(chain or ())


@pytest.mark.parametrize("library", ["typer", "rich", "click"])
def test_only_the_cli_speaks_to_the_terminal(graph: grimp.ImportGraph, library: str) -> None:
    users = {m for m in graph.find_modules_that_directly_import(library) if m.startswith(ROOT)}
    assert users, f"nothing imports {library}: is it still the CLI's library?"
    assert {m for m in users if not m.startswith("mlserve.cli")} == set()


def test_the_rules_bite() -> None:
    """The checks above see imports inside functions and TYPE_CHECKING blocks (where the
    cycles hid), and a cycle when there is one."""
    g = grimp.build_graph(ROOT, include_external_packages=True, cache_dir=None)
    g.add_import(importer="mlserve.stats.engine", imported="mlserve.rollout.machine")
    mods = _ours(g)
    edges = {m: {d for d in g.find_modules_directly_imported_by(m) if d.startswith(ROOT)} for m in mods}
    assert any("mlserve.stats.engine" in group for group in _cycles(mods, edges))
    assert g.find_shortest_chain(importer="mlserve.stats", imported="mlserve.rollout", as_packages=True)
    lazy = grimp.build_graph(ROOT, cache_dir=None)
    # service.py imports open_environment inside a function
    assert "mlserve.targets" in lazy.find_modules_directly_imported_by("mlserve.rollout.service")
