"""Quoting filters: every manifest value that reaches a template goes through one of them.

``hcl`` writes a Terraform string literal (template sequences escaped, so ``${...}`` in a
description stays text); ``yaml`` writes a double-quoted YAML scalar with escapes for
everything YAML would otherwise read as structure or fold away. Numbers, booleans,
``None``, lists and mappings are written as literals of the target language, so a
template never has to build syntax from data by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jinja2


class QuoteError(ValueError):
    """A template asked a filter to quote something it cannot represent."""


def _defined(value: Any) -> None:
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError, naming the missing variable


_HCL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def hcl_string(value: str) -> str:
    """A Terraform string literal that reads back as exactly ``value``.

    ``${`` and ``%{`` open template sequences in HCL. Terraform's documented escape is
    ``$${`` / ``%%{``; we write the sigil as a unicode escape instead (``\\u0024{`` /
    ``\\u0025{``), which terraform reads as the same literal text (escapes are decoded
    after template scanning) and which, unlike an unclosed ``$${``, every HCL parser we
    test with (terraform, python-hcl2) accepts.
    """
    out: list[str] = []
    n = len(value)
    for i, ch in enumerate(value):
        if ch in "$%" and i + 1 < n and value[i + 1] == "{":
            out.append("\\u0024" if ch == "$" else "\\u0025")
            continue
        esc = _HCL_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


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


def _yaml_char(ch: str) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\"
    if ch == '"':
        return '\\"'
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    # YAML's printable set, minus the characters YAML 1.1 treats as line breaks (NEL, LS,
    # PS) and the byte-order mark, which a reader may drop: all of those are escaped.
    printable = (0x20 <= code <= 0x7E) or (0xA0 <= code <= 0xD7FF) or (0xE000 <= code <= 0xFFFD) or code >= 0x10000
    if printable and code not in (0x2028, 0x2029, 0xFEFF):
        return ch
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def yaml_string(value: str) -> str:
    return '"' + "".join(_yaml_char(c) for c in value) + '"'


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
