"""Quoting filters: every manifest value that reaches a template goes through one of them.

``hcl`` writes a Terraform string literal (template sequences escaped, so ``${...}`` in a
description stays text); ``yaml`` writes a double-quoted YAML scalar with escapes for
everything YAML would otherwise read as structure or fold away. Numbers, booleans,
``None``, lists and mappings are written as literals of the target language, so a
template never has to build syntax from data by hand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2


class QuoteError(ValueError):
    """A template asked a filter to quote something it cannot represent."""


def _defined(value: Any) -> None:
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError, naming the missing variable


_HCL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "$": "\\u0024", "%": "\\u0025"}
# Characters that need an escape: quote, backslash, control characters, and the sigil of
# a template sequence (``${`` / ``%{``).
_HCL_SPECIAL = re.compile(r'[\\"\x00-\x1f\x7f]|[$%](?=\{)')


def _hcl_escape(match: re.Match[str]) -> str:
    ch = match.group()
    return _HCL_ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


def hcl_string(value: str) -> str:
    """A Terraform string literal that reads back as exactly ``value``.

    ``${`` and ``%{`` open template sequences in HCL. Terraform's documented escape is
    ``$${`` / ``%%{``; we write the sigil as a unicode escape instead (``\\u0024{`` /
    ``\\u0025{``), which terraform reads as the same literal text (escapes are decoded
    after template scanning) and which, unlike an unclosed ``$${``, every HCL parser we
    test with (terraform, python-hcl2) accepts.
    """
    return '"' + _HCL_SPECIAL.sub(_hcl_escape, value) + '"'


def hcl(value: Any) -> str:
    """A Terraform literal for a Python value."""
    _defined(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return hcl_string(value)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(f"{hcl_string(str(k))} = {hcl(v)}" for k, v in sorted(value.items()))
        return "{ " + items + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(hcl(v) for v in value) + "]"
    raise QuoteError(f"hcl filter: cannot quote a {type(value).__name__}")


_YAML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
# Outside YAML's printable set, plus the characters YAML 1.1 reads as line breaks (NEL,
# LS, PS) and the byte-order mark, which a reader may drop: all of those are escaped.
_YAML_SPECIAL = re.compile(r'[\\"\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff\ufffe\uffff]')


def _yaml_escape(match: re.Match[str]) -> str:
    ch = match.group()
    return _YAML_ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


def yaml_string(value: str) -> str:
    return '"' + _YAML_SPECIAL.sub(_yaml_escape, value) + '"'


def yaml(value: Any) -> str:
    """A YAML flow scalar (or flow collection) for a Python value; never a bare string."""
    _defined(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return yaml_string(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{yaml_string(str(k))}: {yaml(v)}" for k, v in sorted(value.items()))
        return "{" + items + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(yaml(v) for v in value) + "]"
    raise QuoteError(f"yaml filter: cannot quote a {type(value).__name__}")
