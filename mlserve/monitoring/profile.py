"""Reference profiles: fixed bins and reference counts per feature, the yardstick of drift.

``mlserve profile FILE`` reads a reference data set (the training data, or logged requests)
and writes ``mlserve.profile/v1`` JSON: per feature its bins (deciles, or one bin per value
for a feature with few distinct values), the reference counts in them, mean and standard
deviation; optionally the same for the model's prediction. Only these summaries are kept;
the data itself is not copied anywhere.

Accepted files:

- CSV with a header row: every column is a feature except ``--prediction-column`` (its
  values become the prediction's reference) and ``--ignore`` columns (labels, ids).
- JSONL, one record per line: a V2 inference request (``{"inputs": [{"data": [...],
  "shape": [B, F]}]}``, B rows of F features, as the gateway sees them), a flat object
  (``{"amount": 12.5, ...}``) or a JSON array of numbers.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlserve.errors import UsageError

if TYPE_CHECKING:
    from numpy.typing import NDArray

PROFILE_FORMAT = "mlserve.profile/v1"
MAX_FEATURES = 256
MAX_BINS = 64
DEFAULT_MAX_ROWS = 1_000_000


class ProfileError(UsageError):
    """A reference file or a profile is unreadable or invalid; the message names the file."""


@dataclass(frozen=True)
class FeatureProfile:
    name: str
    edges: tuple[float, ...]
    centres: tuple[float, ...]
    counts: tuple[int, ...]
    categorical: bool
    mean: float
    std: float

    @property
    def size(self) -> int:
        return len(self.edges) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "edges": list(self.edges),
            "centres": list(self.centres),
            "counts": list(self.counts),
            "categorical": self.categorical,
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> FeatureProfile:
        if not isinstance(data, Mapping):
            raise ProfileError(f"{where}: must be an object")
        unknown = sorted(set(data) - {"name", "edges", "centres", "counts", "categorical", "mean", "std"})
        if unknown:
            raise ProfileError(f"{where}.{unknown[0]}: unknown key")
        name = data.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= 128 or any(ord(c) < 32 for c in name):
            raise ProfileError(f"{where}.name: must be 1-128 printable characters (got {name!r})")
        edges = _floats(data.get("edges"), f"{where}.edges")
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise ProfileError(f"{where}.edges: must be strictly increasing")
        if len(edges) + 1 > MAX_BINS:
            raise ProfileError(f"{where}.edges: at most {MAX_BINS - 1} edges")
        centres = _floats(data.get("centres"), f"{where}.centres")
        counts = data.get("counts")
        if (
            not isinstance(counts, list)
            or len(counts) != len(edges) + 1
            or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts)
        ):
            raise ProfileError(f"{where}.counts: must be {len(edges) + 1} non-negative integers (one per bin)")
        if sum(counts) == 0:
            raise ProfileError(f"{where}.counts: the reference holds no values")
        if len(centres) != len(edges) + 1:
            raise ProfileError(f"{where}.centres: must hold one value per bin ({len(edges) + 1})")
        mean, std = data.get("mean"), data.get("std")
        for key, value in (("mean", mean), ("std", std)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ProfileError(f"{where}.{key}: must be a finite number (got {value!r})")
        return cls(
            name=name,
            edges=tuple(edges),
            centres=tuple(centres),
            counts=tuple(int(c) for c in counts),
            categorical=bool(data.get("categorical", False)),
            mean=float(mean),  # type: ignore[arg-type]
            std=float(std),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Profile:
    """A reference: the input features in request order, and optionally the prediction."""

    features: tuple[FeatureProfile, ...]
    prediction: FeatureProfile | None
    rows: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "source": self.source,
            "rows": self.rows,
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction else None,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "profile") -> Profile:
        if not isinstance(data, Mapping):
            raise ProfileError(f"{where}: must be a JSON object")
        unknown = sorted(set(data) - {"format", "source", "rows", "features", "prediction"})
        if unknown:
            raise ProfileError(f"{where}: {unknown[0]}: unknown key")
        if data.get("format") != PROFILE_FORMAT:
            raise ProfileError(f"{where}: format must be {PROFILE_FORMAT!r} (got {data.get('format')!r})")
        feats = data.get("features")
        if not isinstance(feats, list) or not feats:
            raise ProfileError(f"{where}: features must be a non-empty list")
        if len(feats) > MAX_FEATURES:
            raise ProfileError(f"{where}: features: at most {MAX_FEATURES} features (got {len(feats)})")
        features = tuple(FeatureProfile.from_dict(f, f"{where}: features[{i}]") for i, f in enumerate(feats))
        names = [f.name for f in features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ProfileError(f"{where}: features: the name {dupes[0]!r} is repeated")
        pred = data.get("prediction")
        rows = data.get("rows", 0)
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise ProfileError(f"{where}: rows must be a non-negative integer")
        return cls(
            features=features,
            prediction=None if pred is None else FeatureProfile.from_dict(pred, f"{where}: prediction"),
            rows=rows,
            source=str(data.get("source", "")),
        )


def _floats(value: Any, where: str) -> list[float]:
    if not isinstance(value, list) or any(
        isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in value
    ):
        raise ProfileError(f"{where}: must be a list of finite numbers")
    return [float(v) for v in value]


def load_profile(path: Path) -> Profile:
    """Read and validate a profile; errors name the file and the key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(
            f"{path}: no such reference profile", hint="write one with `mlserve profile DATA --output PATH`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read the reference profile: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    return Profile.from_dict(data, str(path))


# ---------------------------------------------------------------------------
# Building a profile from a data file
# ---------------------------------------------------------------------------


def summarise(name: str, values: Sequence[float] | NDArray[Any], bins: int = 10) -> FeatureProfile:
    """One feature's profile from its reference values."""
    import numpy as np

    from mlserve.stats.drift import histogram, quantile_edges

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    b = quantile_edges(x, bins)
    return FeatureProfile(
        name=name,
        edges=b.edges,
        centres=b.centres,
        counts=tuple(histogram(b, x)),
        categorical=b.categorical,
        mean=float(x.mean()) if x.size else 0.0,
        std=float(x.std()) if x.size else 0.0,
    )


def v2_rows(payload: Any) -> tuple[str, list[list[float]]] | None:
    """(input name, rows) of the first input of a V2 inference request, or None when the
    payload is not one (or is not numeric)."""
    if not isinstance(payload, Mapping):
        return None
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs or not isinstance(inputs[0], Mapping):
        return None
    first = inputs[0]
    data, shape = first.get("data"), first.get("shape")
    if not isinstance(data, list) or not data:
        return None
    if data and isinstance(data[0], list):  # nested rows are allowed by the V2 protocol
        data = [v for row in data for v in (row if isinstance(row, list) else [row])]
    width = shape[-1] if isinstance(shape, list) and len(shape) >= 2 and isinstance(shape[-1], int) else len(data)
    if width <= 0 or len(data) % width:
        return None
    try:
        flat = [float(v) for v in data]
    except (TypeError, ValueError):
        return None
    name = str(first.get("name", "input-0"))
    return name, [flat[i : i + width] for i in range(0, len(flat), width)]


@dataclass(frozen=True)
class _Table:
    names: list[str]
    columns: list[list[float]]
    prediction: list[float] | None
    rows: int


def _read_csv(path: Path, prediction_column: str | None, ignore: set[str], max_rows: int, where: str) -> _Table:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise ProfileError(f"{where}: empty file (a CSV needs a header row)") from None
        header = [h.strip() for h in header]
        if prediction_column is not None and prediction_column not in header:
            raise ProfileError(f"{where}: no column {prediction_column!r} (columns: {', '.join(header)})")
        missing = sorted(ignore - set(header))
        if missing:
            raise ProfileError(f"{where}: no column {missing[0]!r} to ignore (columns: {', '.join(header)})")
        keep = [i for i, h in enumerate(header) if h not in ignore and h != prediction_column]
        pred_i = header.index(prediction_column) if prediction_column is not None else None
        columns: list[list[float]] = [[] for _ in keep]
        pred: list[float] | None = [] if pred_i is not None else None
        rows = 0
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise ProfileError(f"{where}:{line_no}: {len(row)} fields, the header has {len(header)}")
            for j, i in enumerate(keep):
                columns[j].append(_number(row[i], f"{where}:{line_no}: column {header[i]!r}"))
            if pred is not None and pred_i is not None:
                pred.append(_number(row[pred_i], f"{where}:{line_no}: column {header[pred_i]!r}"))
            rows += 1
            if rows >= max_rows:
                break
    return _Table([header[i] for i in keep], columns, pred, rows)


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ProfileError(f"{where}: not a number ({text[:40]!r})") from None
    return value


def _records(path: Path, where: str) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise ProfileError(f"{where}:{line_no}: not valid JSON: {exc}") from None


def _read_jsonl(path: Path, prediction_column: str | None, ignore: set[str], max_rows: int, where: str) -> _Table:
    names: list[str] | None = None
    columns: list[list[float]] = []
    pred: list[float] | None = [] if prediction_column is not None else None
    rows = 0
    for line_no, record in _records(path, where):
        at = f"{where}:{line_no}"
        if isinstance(record, Mapping) and "inputs" in record:
            if prediction_column is not None:
                raise ProfileError(
                    f"{at}: --prediction-column applies to CSV files and flat JSON objects, not to V2 requests"
                )
            got = v2_rows(record)
            if got is None:
                raise ProfileError(f"{at}: a V2 request whose first input is not numeric rows (data and shape)")
            input_name, batch = got
            these = [f"{input_name}[{j}]" for j in range(len(batch[0]))]
            values = batch
        elif isinstance(record, Mapping):
            keys = [k for k in record if k not in ignore and k != prediction_column]
            these = [str(k) for k in keys]
            row = [_value(record[k], f"{at}: key {k!r}") for k in keys]
            values = [row]
            if pred is not None:
                if prediction_column not in record:
                    raise ProfileError(f"{at}: no key {prediction_column!r} (the prediction column)")
                pred.append(_value(record[prediction_column], f"{at}: key {prediction_column!r}"))
        elif isinstance(record, list):
            these = [f"x{j}" for j in range(len(record))]
            values = [[_value(v, f"{at}: item {j}") for j, v in enumerate(record)]]
        else:
            raise ProfileError(f"{at}: expected a V2 request, an object or an array (got {type(record).__name__})")
        if names is None:
            names = these
            if not names:
                raise ProfileError(f"{at}: no features")
            columns = [[] for _ in names]
        elif these != names:
            raise ProfileError(
                f"{at}: {len(these)} features ({', '.join(these[:4])}...), the first record has {len(names)}"
                if len(these) != len(names)
                else f"{at}: features {these} differ from the first record's {names}"
            )
        for row in values:
            for j, v in enumerate(row):
                columns[j].append(v)
            rows += 1
        if rows >= max_rows:
            break
    if names is None:
        raise ProfileError(f"{where}: no records")
    return _Table(names, columns, pred, rows)


def _value(v: Any, where: str) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    raise ProfileError(f"{where}: not a number ({str(v)[:40]!r})")


def build_profile(
    path: Path,
    *,
    prediction_column: str | None = None,
    ignore: Sequence[str] = (),
    feature_names: Sequence[str] | None = None,
    bins: int = 10,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Profile:
    """Read a reference file (CSV or JSONL, by extension; see the module docstring)."""
    path = Path(path)
    where = str(path)
    if not 2 <= bins <= MAX_BINS:
        raise ProfileError(f"--bins must be between 2 and {MAX_BINS} (got {bins})")
    if max_rows < 1:
        raise ProfileError(f"--max-rows must be at least 1 (got {max_rows})")
    if not path.is_file():
        raise ProfileError(f"{where}: no such file")
    try:
        if path.suffix.lower() == ".csv":
            table = _read_csv(path, prediction_column, set(ignore), max_rows, where)
        elif path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            table = _read_jsonl(path, prediction_column, set(ignore), max_rows, where)
        else:
            raise ProfileError(f"{where}: unknown file type {path.suffix!r}: use .csv or .jsonl")
    except UnicodeDecodeError:
        raise ProfileError(f"{where}: not UTF-8 text") from None
    except OSError as exc:
        raise ProfileError(f"{where}: cannot read: {exc.strerror or exc}") from None
    if table.rows == 0:
        raise ProfileError(f"{where}: no data rows")
    names = list(table.names)
    if feature_names:
        if len(feature_names) != len(names):
            raise ProfileError(f"--feature-names gives {len(feature_names)} names for {len(names)} features in {where}")
        names = list(feature_names)
    if len(names) > MAX_FEATURES:
        raise ProfileError(f"{where}: {len(names)} features; a profile holds at most {MAX_FEATURES}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ProfileError(f"{where}: the feature name {dupes[0]!r} is repeated")
    features = tuple(summarise(n, col, bins) for n, col in zip(names, table.columns, strict=True))
    prediction = summarise(prediction_column or "prediction", table.prediction, bins) if table.prediction else None
    return Profile(features=features, prediction=prediction, rows=table.rows, source=path.name)
