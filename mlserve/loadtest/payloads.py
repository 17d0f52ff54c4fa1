"""Load-test payloads: V2 inference requests read from a JSONL file or made up from the
endpoint's declared input.

Validation is strict and names the file and line, because a bad payload otherwise shows
up only as a wall of 400s in the middle of a load test.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlserve.errors import UsageError

# Datatypes of the V2 (Open Inference) protocol.
V2_DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)
MAX_PAYLOAD_BYTES = 64 << 20  # the whole file, read into every load-test run
MAX_PAYLOADS = 100_000
MAX_SYNTH_ELEMENTS = 1_000_000
SYNTH_COUNT = 32
SYNTH_SEED = 20261123


class PayloadProblem(ValueError):
    """One request is not a V2 inference request; the message names the field."""


def _leaves(value: Any) -> int:
    """Number of scalar elements in ``data`` (flat or nested lists)."""
    if isinstance(value, list):
        return sum(_leaves(v) for v in value)
    return 1


def check_request(req: Any) -> None:
    """Raise PayloadProblem unless ``req`` is a V2 inference request body."""
    if not isinstance(req, dict):
        raise PayloadProblem(f"must be a JSON object (a V2 inference request), got {type(req).__name__}")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise PayloadProblem('"inputs" must be a non-empty list of tensors')
    for i, tensor in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(tensor, dict):
            raise PayloadProblem(f"{where}: must be an object with name, shape, datatype and data")
        missing = [k for k in ("name", "shape", "datatype", "data") if k not in tensor]
        if missing:
            raise PayloadProblem(f"{where}: missing {', '.join(repr(m) for m in missing)}")
        if not isinstance(tensor["name"], str) or not tensor["name"]:
            raise PayloadProblem(f"{where}.name: must be a non-empty string")
        shape = tensor["shape"]
        if (
            not isinstance(shape, list)
            or not shape
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape)
        ):
            raise PayloadProblem(f"{where}.shape: must be a list of non-negative integers (got {shape!r})")
        if tensor["datatype"] not in V2_DATATYPES:
            raise PayloadProblem(
                f"{where}.datatype: must be one of {', '.join(V2_DATATYPES)} (got {tensor['datatype']!r})"
            )
        data = tensor["data"]
        if not isinstance(data, list):
            raise PayloadProblem(f"{where}.data: must be a list (got {type(data).__name__})")
        want = math.prod(shape)
        got = _leaves(data)
        if got != want:
            raise PayloadProblem(f"{where}.data: has {got} elements but shape {shape} needs {want}")


def read_payloads(path: Path) -> list[dict[str, Any]]:
    """Every request in a JSONL file; UsageError (exit 2) naming ``FILE:LINE`` on the first bad one."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_PAYLOAD_BYTES:
            raise UsageError(f"{path}: payload file is {size} bytes; the limit is {MAX_PAYLOAD_BYTES >> 20} MiB")
        raw = path.read_bytes()
    except IsADirectoryError:
        raise UsageError(f"{path}: cannot read the payload file: it is a directory") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the payload file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        raise UsageError(f"{path}:{bad_line}: not UTF-8 text") from None
    out: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            req = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{path}:{lineno}: not valid JSON ({exc.msg}, column {exc.colno})",
                hint="one V2 inference request per line: "
                '{"inputs": [{"name": ..., "shape": [...], "datatype": "FP32", "data": [...]}]}',
            ) from None
        try:
            check_request(req)
        except PayloadProblem as exc:
            raise UsageError(f"{path}:{lineno}: not a V2 inference request: {exc}") from None
        out.append(req)
        if len(out) > MAX_PAYLOADS:
            raise UsageError(f"{path}: more than {MAX_PAYLOADS} payloads; a sample is enough for a load test")
    if not out:
        raise UsageError(f"{path}: no payloads (the file is empty)")
    return out


def synthesize(name: str, datatype: str, shape: Sequence[int], *, count: int = SYNTH_COUNT) -> list[dict[str, Any]]:
    """``count`` requests shaped like the declared input; deterministic (fixed seed)."""
    n = math.prod(shape)
    if n > MAX_SYNTH_ELEMENTS:
        raise UsageError(
            f"the declared input shape {list(shape)} has {n} elements, too many to synthesise "
            f"(limit {MAX_SYNTH_ELEMENTS})",
            hint="pass --payload FILE.jsonl with real requests",
        )
    rng = random.Random(SYNTH_SEED)
    words = ("refund", "late", "delivery", "card", "charged", "twice", "account", "locked", "thanks")
    out = []
    for _ in range(count):
        data: list[Any]
        if datatype in ("FP16", "FP32", "FP64"):
            data = [round(rng.gauss(0.0, 1.0), 5) for _ in range(n)]
        elif datatype == "BYTES":
            data = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(n)]
        elif datatype == "BOOL":
            data = [rng.random() < 0.5 for _ in range(n)]
        else:
            data = [rng.randint(0, 100) for _ in range(n)]
        req = {"inputs": [{"name": name, "shape": list(shape), "datatype": datatype, "data": data}]}
        check_request(req)
        out.append(req)
    return out


def write_payloads(path: Path, payloads: Sequence[dict[str, Any]]) -> None:
    """Compact JSONL, one request per line, next to the rendered locustfile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for req in payloads:
            fh.write(json.dumps(req, separators=(",", ":")) + "\n")
