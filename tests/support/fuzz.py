"""Helpers of the fuzzers that mutate a valid document node by node."""

from __future__ import annotations

from typing import Any


def tree_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path (keys and list indices) of every node below ``node``, depth first, the root
    itself left out."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(tree_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(tree_paths(v, (*prefix, i)))
    return out


def set_path(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value
