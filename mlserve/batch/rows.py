"""Rows of an input file mapped onto an endpoint's declared input.

An endpoint declares one input tensor (``[endpoints.E.input]``: name, datatype, shape
with the batch dimension first). A row of the input file becomes one slice of that
tensor: ``prod(shape[1:])`` values, taken from the feature columns in order, or from one
field that holds the whole vector. A row that cannot be mapped is a *bad row*: it is not
sent, and the reason says which field and why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

INT_RANGES = {"INT32": (-(2**31), 2**31 - 1), "INT64": (-(2**63), 2**63 - 1)}


class BadRow(ValueError):
    """This row cannot be scored; the message is the reason written to the errors file."""


@dataclass(frozen=True)
class InputTensor:
    """The declared input: what one request's tensor looks like."""

    name: str
    datatype: str
    row_shape: tuple[int, ...]  # the declared shape without its batch dimension

    @property
    def per_row(self) -> int:
        return math.prod(self.row_shape)

    def request_shape(self, n: int) -> list[int]:
        return [n, *self.row_shape]

    @classmethod
    def from_spec(cls, spec: Any) -> InputTensor:
        shape = list(spec.shape)
        return cls(name=spec.name, datatype=spec.datatype, row_shape=tuple(shape[1:]))


def flatten(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        out: list[Any] = []
        for v in value:
            out.extend(flatten(v))
        return out
    return [value]


def coerce(value: Any, datatype: str, field: str) -> Any:
    """One value as the tensor's datatype wants it (CSV gives strings, JSON numbers)."""
    if value is None:
        raise BadRow(f"field {field!r} is missing (null)")
    if datatype == "BYTES":
        if isinstance(value, str):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRow(f"field {field!r}: not text (got {_show(value)})")
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise BadRow(f"field {field!r} is empty")
        try:
            value = int(text) if datatype in INT_RANGES else float(text)
        except ValueError:
            kind = "an integer" if datatype in INT_RANGES else "a number"
            raise BadRow(f"field {field!r}: not {kind} (got {_show(value)})") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRow(f"field {field!r}: not a number (got {_show(value)})")
    if datatype in INT_RANGES:
        if isinstance(value, float):
            if not value.is_integer():
                raise BadRow(f"field {field!r}: not an integer (got {value!r})")
            value = int(value)
        lo, hi = INT_RANGES[datatype]
        if not lo <= value <= hi:
            raise BadRow(f"field {field!r}: {value} is out of range for {datatype}")
        return value
    value = float(value)
    if not math.isfinite(value):
        raise BadRow(f"field {field!r}: not a finite number (got {value!r})")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def values_of(raw: Sequence[Any], fields: Sequence[str], tensor: InputTensor) -> list[Any]:
    """Coerce the row's feature values and check their number against the declared input."""
    if len(raw) != tensor.per_row:
        raise BadRow(
            f"wrong arity: {len(raw)} values, but input {tensor.name!r} takes {tensor.per_row} per row "
            f"(shape {list(tensor.row_shape)})"
        )
    dt = tensor.datatype
    return [coerce(v, dt, fields[i] if i < len(fields) else f"[{i}]") for i, v in enumerate(raw)]
