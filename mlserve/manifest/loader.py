"""Load ``mlserve.toml`` (or a policy file) into models, with errors a person can act on.

Every problem becomes one line ``FILE:LINE: dotted.key[2]: message``. Pydantic's
errors are translated here, once, so that no caller ever shows a ValidationError.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mlserve.errors import ManifestError
from mlserve.manifest.models import KeyProblem, Manifest, RolloutPolicy

MANIFEST_NAME = "mlserve.toml"

M = TypeVar("M", bound=BaseModel)

Loc = tuple[str | int, ...]


def format_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if not re.match(r"^[A-Za-z0-9_-]+$", text):
                # JSON escapes: a key holding a newline or a control character stays on one line
                text = "".join(
                    c if c.isprintable() else f"\\u{ord(c):04x}" for c in json.dumps(text, ensure_ascii=False)
                )
            out += ("." if out else "") + text
    return out


# ---------------------------------------------------------------------------
# Locating a key path in the TOML text (best effort; tomllib keeps no positions)
# ---------------------------------------------------------------------------

_KEY_PART = r'(?:"(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_-]+)'
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER_RE = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN_RE = re.compile(rf"^\s*({_DOTTED})\s*=")
_PART_RE = re.compile(_KEY_PART)


def _split_key(dotted: str) -> list[str]:
    parts = []
    for m in _PART_RE.finditer(dotted):
        token = m.group(0)
        if token[0] in "\"'":
            token = token[1:-1]
        parts.append(token)
    return parts


def index_lines(text: str) -> dict[Loc, int]:
    """Map each table header and key assignment to its 1-based line number."""
    lines: dict[Loc, int] = {}
    table: Loc = ()
    aot_counts: dict[Loc, int] = {}
    in_multiline: str | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if in_multiline in raw:
                in_multiline = None
            continue
        header = _HEADER_RE.match(raw)
        if header:
            path = tuple(_split_key(header.group(2)))
            if header.group(1) == "[[":
                idx = aot_counts.get(path, 0)
                aot_counts[path] = idx + 1
                table = (*path, idx)
            else:
                table = path
            lines.setdefault(table, lineno)
            continue
        assign = _ASSIGN_RE.match(raw)
        if assign:
            key = (*table, *_split_key(assign.group(1)))
            lines.setdefault(key, lineno)
            rest = raw[assign.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) == 1:
                    in_multiline = quote
    return lines


def line_of(loc: Sequence[str | int], lines: dict[Loc, int]) -> int | None:
    """The line of the deepest prefix of ``loc`` that appears in the text."""
    for end in range(len(loc), 0, -1):
        found = lines.get(tuple(loc[:end]))
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------------
# Translating pydantic errors
# ---------------------------------------------------------------------------


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional/Annotated/Union."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_unwrap(arg))
        return out
    return [annotation]


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """Walk the model tree along ``loc`` and return the model that owns its last key."""
    current: Any = root
    i = 0
    while i < len(loc):
        candidates = _unwrap(current)
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is not None:
            field = model.model_fields.get(str(loc[i]))
            if field is None:
                return None
            current = field.annotation
            i += 1
            continue
        container = next((c for c in candidates if typing.get_origin(c) in (dict, list)), None)
        if container is None:
            return None
        args = typing.get_args(container)
        current = args[-1]
        i += 1
    candidates = _unwrap(current)
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _message(err: Any, root: type[BaseModel]) -> tuple[Loc, str]:
    loc: Loc = tuple(err["loc"])
    etype = err["type"]
    ctx = err.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, KeyProblem):
        return (*loc, *inner.key), str(inner)
    if etype == "extra_forbidden":
        owner = _model_at(root, loc[:-1])
        key = str(loc[-1])
        msg = f"unknown key {key!r}"
        if owner is not None:
            allowed = list(owner.model_fields)
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
            else:
                msg += f" (allowed: {', '.join(allowed)})"
        return loc, msg
    if etype == "missing":
        return loc, "required key is missing"
    if etype == "value_error" and inner is not None:
        return loc, str(inner)
    if etype == "literal_error":
        return loc, f"must be one of {ctx.get('expected', '')} (got {_short(err.get('input'))})"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    msg = msg[0].lower() + msg[1:] if msg else msg
    msg = msg.replace("input should be", "must be")
    if "got" not in msg and "input" in err and not isinstance(err["input"], dict):
        msg += f" (got {_short(err['input'])})"
    return loc, msg


def problems_from(exc: ValidationError, root: type[BaseModel], source: str, lines: dict[Loc, int]) -> list[str]:
    out: list[str] = []
    for err in exc.errors():
        loc, msg = _message(err, root)
        # pydantic puts union/tagged-branch names in loc; drop non-key parts it invents
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        line = line_of(loc, lines)
        where = f"{source}:{line}" if line is not None else source
        path = format_path(loc)
        out.append(f"{where}: {path}: {msg}" if path else f"{where}: {msg}")
    return list(dict.fromkeys(out))


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        detail = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", detail)
        if m:
            detail = detail[: m.start()].strip()
            raise ManifestError([f"{source}:{m.group(1)}: invalid TOML: {detail} (column {m.group(2)})"]) from None
        raise ManifestError([f"{source}: invalid TOML: {detail}"]) from None


_NO_MANIFEST_HINT = "run 'mlserve init' to create a project, or pass --project-dir"


def read_text(path: Path, *, missing_hint: str = _NO_MANIFEST_HINT) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError([f"{path}: file not found"], hint=missing_hint) from None
    except IsADirectoryError:
        raise ManifestError([f"{path}: is a directory, not a file"]) from None
    except OSError as exc:
        raise ManifestError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ManifestError([f"{path}:{line}: not valid UTF-8"]) from None


def validate_data(model: type[M], data: Any, source: str, text: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(problems_from(exc, model, source, index_lines(text))) from None
    except RecursionError:
        raise ManifestError([f"{source}: document nests too deeply"]) from None


def loads_manifest(text: str, source: str = MANIFEST_NAME) -> Manifest:
    return validate_data(Manifest, parse_toml(text, source), source, text)


def load_manifest(path: Path) -> Manifest:
    """Read and validate a manifest file; raise ManifestError listing every problem."""
    text = read_text(path)
    return loads_manifest(text, _display(path))


def load_policy(path: Path) -> RolloutPolicy:
    """A policy file holds the keys of an endpoint's ``[rollout]`` table, at the top level
    or under ``[rollout]``."""
    text = read_text(path, missing_hint="--policy names a TOML file holding the keys of a [rollout] table")
    source = _display(path)
    data = parse_toml(text, source)
    if set(data) == {"rollout"} and isinstance(data["rollout"], dict):
        lines = {k[1:]: v for k, v in index_lines(text).items() if k and k[0] == "rollout"}
        try:
            return RolloutPolicy.model_validate(data["rollout"])
        except ValidationError as exc:
            probs = problems_from(exc, RolloutPolicy, source, lines)
            raise ManifestError([p.replace(": ", ": rollout.", 1) if ": " in p else p for p in probs]) from None
    return validate_data(RolloutPolicy, data, source, text)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
