"""Input and output files of a batch job: JSONL, CSV and Parquet.

One pass over the input (``scan``) decides the columns, counts the rows, hashes the
bytes (the job's identity) and cuts the file into fixed-size chunks, each known by its
byte range (JSONL, CSV) or row range (Parquet). A chunk is then read on its own
(``read_chunk``), by this process or by a Ray worker, so memory holds a few chunks at
a time however large the file is.

Results of a chunk are JSONL lines in a part file; ``assemble`` streams the part files
in input order into the output, in the output's format, atomically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from mlserve.batch.rows import BadRow, InputTensor, flatten, values_of
from mlserve.errors import UsageError
from mlserve.fsutil import atomic_writer

FORMATS = ("jsonl", "csv", "parquet")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
LIST_FIELDS = ("features", "inputs")  # a JSONL/Parquet field holding the whole vector
ROW_ID = "row"  # the id column of the output when the input has none: the 1-based row number

try:  # orjson parses a JSONL line about 3x faster; the standard library is the fallback
    import orjson

    def _loads(data: bytes) -> Any:
        return orjson.loads(data)

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, UnicodeDecodeError)
except ImportError:  # pragma: no cover

    def _loads(data: bytes) -> Any:
        return json.loads(data)

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    _JSON_ERRORS = (json.JSONDecodeError, UnicodeDecodeError)


def dumps(value: Any) -> bytes:
    return _dumps(value)


def loads(data: bytes) -> Any:
    return _loads(data)


def format_of(path: Path, given: str | None, what: str) -> str:
    if given is not None:
        if given not in FORMATS:
            raise UsageError(f"--{what}-format: must be one of {', '.join(FORMATS)} (got {given!r})")
        return given
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"{path}: cannot tell the format from the file name",
            hint=f"name it .jsonl, .csv or .parquet, or pass --{what}-format",
        )
    return fmt


@dataclass(frozen=True)
class ChunkSpec:
    """One fixed-size piece of the input: a byte range (JSONL, CSV) or a row range (Parquet)."""

    index: int
    start: int
    end: int
    first_line: int  # physical line (1-based) of the chunk's first row; Parquet: its row number
    first_row: int  # 0-based index of the chunk's first data row
    rows: int

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("index", "start", "end", "first_line", "first_row", "rows")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChunkSpec:
        return cls(**{k: int(d[k]) for k in ("index", "start", "end", "first_line", "first_row", "rows")})


@dataclass(frozen=True)
class Columns:
    """Which fields of a row are its id, its features and what is carried to the output."""

    id_column: str | None  # present in the input; None: the row number is the id
    features: tuple[str, ...]  # feature columns in order; () with list_field or array rows
    list_field: str | None = None  # one field holding the whole feature vector
    keep: tuple[str, ...] = ()
    header: tuple[str, ...] = ()  # CSV header / Parquet schema / first JSONL object's keys
    array_rows: bool = False  # JSONL rows that are bare arrays of values

    @property
    def out_id(self) -> str:
        return self.id_column or ROW_ID

    def to_dict(self) -> dict[str, Any]:
        return {
            "id_column": self.id_column,
            "features": list(self.features),
            "list_field": self.list_field,
            "keep": list(self.keep),
            "header": list(self.header),
            "array_rows": self.array_rows,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Columns:
        return cls(
            id_column=d["id_column"],
            features=tuple(d["features"]),
            list_field=d["list_field"],
            keep=tuple(d["keep"]),
            header=tuple(d["header"]),
            array_rows=bool(d["array_rows"]),
        )


@dataclass(frozen=True)
class Layout:
    """What one pass over the input found: identity, columns, rows and chunks."""

    path: str
    format: str
    size: int
    mtime_ns: int
    sha256: str
    rows: int
    chunk_size: int
    columns: Columns
    chunks: tuple[ChunkSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "sha256": self.sha256,
            "rows": self.rows,
            "chunk_size": self.chunk_size,
            "columns": self.columns.to_dict(),
            "chunks": [c.to_dict() for c in self.chunks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Layout:
        return cls(
            path=d["path"],
            format=d["format"],
            size=int(d["size"]),
            mtime_ns=int(d["mtime_ns"]),
            sha256=d["sha256"],
            rows=int(d["rows"]),
            chunk_size=int(d["chunk_size"]),
            columns=Columns.from_dict(d["columns"]),
            chunks=tuple(ChunkSpec.from_dict(c) for c in d["chunks"]),
        )


@dataclass(frozen=True)
class ColumnOptions:
    id_column: str = "id"
    features: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    labels: str | None = None  # compare's label column: never a feature, always kept


@dataclass
class ChunkRows:
    """A chunk read and mapped: the good rows in order, and the bad ones with their reasons."""

    spec: ChunkSpec
    lines: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # 1-based data row numbers
    ids: list[Any] = field(default_factory=list)
    values: list[list[Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    bad: list[dict[str, Any]] = field(default_factory=list)  # {"line", "row", "id", "reason"}

    def add_bad(self, line: int, row: int, row_id: Any, reason: str) -> None:
        self.bad.append({"line": line, "row": row, "id": row_id, "reason": reason})


# ---------------------------------------------------------------------------
# The scan
# ---------------------------------------------------------------------------


class _Cutter:
    """Cuts the stream of rows into chunks of ``size`` as the scan goes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows = 0
        self.starts: list[tuple[int, int, int]] = []  # (offset, first_line, first_row)

    def row(self, offset: int, line: int) -> None:
        if self.rows % self.size == 0:
            self.starts.append((offset, line, self.rows))
        self.rows += 1

    def chunks(self, end: int) -> tuple[ChunkSpec, ...]:
        out = []
        for i, (start, line, first_row) in enumerate(self.starts):
            stop = self.starts[i + 1][0] if i + 1 < len(self.starts) else end
            n = min(self.size, self.rows - first_row)
            out.append(ChunkSpec(i, start, stop, line, first_row, n))
        return tuple(out)


def scan(path: Path, fmt: str, tensor: InputTensor, options: ColumnOptions, chunk_size: int, endpoint: str) -> Layout:
    """One pass over the input: columns, row count, chunk boundaries and the SHA-256 of its bytes."""
    path = Path(path)
    try:
        st = path.stat()
        if not path.is_file():
            raise UsageError(f"{path}: not a file")
        if fmt == "parquet":
            return _scan_parquet(path, st, tensor, options, chunk_size, endpoint)
        with open(path, "rb") as fh:
            if fmt == "jsonl":
                return _scan_jsonl(path, fh, st, tensor, options, chunk_size, endpoint)
            return _scan_csv(path, fh, st, tensor, options, chunk_size, endpoint)
    except FileNotFoundError:
        raise UsageError(f"{path}: input file does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not an input file") from None
    except PermissionError:
        raise UsageError(f"{path}: cannot read the input file (permission denied)") from None


def _no_rows(path: Path) -> UsageError:
    return UsageError(f"{path}: no rows to score (the file is empty)")


def _scan_jsonl(
    path: Path, fh: BinaryIO, st: Any, tensor: InputTensor, options: ColumnOptions, chunk_size: int, endpoint: str
) -> Layout:
    digest = hashlib.sha256()
    cut = _Cutter(chunk_size)
    first: Any = None
    offset = 0
    for lineno, line in enumerate(fh, start=1):
        digest.update(line)
        if line.strip():
            cut.row(offset, lineno)
            if first is None:
                try:
                    value = _loads(line)
                except _JSON_ERRORS:
                    value = None
                if isinstance(value, dict | list):
                    first = value
        offset += len(line)
    if cut.rows == 0:
        raise _no_rows(path)
    if first is None:
        raise UsageError(f"{path}: no line is a JSON object or array; every row would fail")
    if isinstance(first, list):
        cols = Columns(id_column=None, features=(), array_rows=True, keep=())
        if options.features or options.keep:
            raise UsageError(f"{path}: rows are bare JSON arrays; they have no named fields for --features/--keep")
    else:
        list_field = next(
            (k for k in (tensor.name, *LIST_FIELDS) if isinstance(first.get(k), list) and k not in options.exclude),
            None,
        )
        cols = choose_columns(path, tuple(str(k) for k in first), tensor, options, endpoint, list_field)
    return Layout(
        str(path),
        "jsonl",
        st.st_size,
        st.st_mtime_ns,
        digest.hexdigest(),
        cut.rows,
        chunk_size,
        cols,
        cut.chunks(offset),
    )


class _LineFeed:
    """Binary lines decoded for the csv module, counting bytes and lines as they are taken."""

    def __init__(self, fh: BinaryIO, path: Path, digest: Any | None = None) -> None:
        self.fh = fh
        self.path = path
        self.digest = digest
        self.offset = 0
        self.lines = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.fh:
            if self.digest is not None:
                self.digest.update(raw)
            self.lines += 1
            self.offset += len(raw)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"{self.path}:{self.lines}: not UTF-8 text") from None


def _scan_csv(
    path: Path, fh: BinaryIO, st: Any, tensor: InputTensor, options: ColumnOptions, chunk_size: int, endpoint: str
) -> Layout:
    digest = hashlib.sha256()
    feed = _LineFeed(fh, path, digest)
    reader = csv.reader(feed)
    try:
        header = next(reader)
    except StopIteration:
        raise _no_rows(path) from None
    except csv.Error as exc:
        raise UsageError(f"{path}:1: the CSV header cannot be read ({exc})") from None
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    names = tuple(h.strip() for h in header)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"{path}:1: column {dupes[0]!r} appears twice in the header")
    cols = choose_columns(path, names, tensor, options, endpoint, None)
    cut = _Cutter(chunk_size)
    start, line = feed.offset, feed.lines + 1
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error:
            rec = ["?"]  # a malformed record is a bad row; read_chunk names the problem
        if rec:
            cut.row(start, line)
        start, line = feed.offset, feed.lines + 1
    if cut.rows == 0:
        raise _no_rows(path)
    return Layout(
        str(path),
        "csv",
        st.st_size,
        st.st_mtime_ns,
        digest.hexdigest(),
        cut.rows,
        chunk_size,
        cols,
        cut.chunks(feed.offset),
    )


def _pq() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise UsageError("Parquet needs pyarrow", hint="pip install pyarrow") from None
    return pq


def _scan_parquet(
    path: Path, st: Any, tensor: InputTensor, options: ColumnOptions, chunk_size: int, endpoint: str
) -> Layout:
    import pyarrow as pa

    pq = _pq()
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise UsageError(f"{path}: not a readable Parquet file ({exc})") from None
    schema = pf.schema_arrow
    names = tuple(schema.names)
    list_field = next(
        (
            k
            for k in (tensor.name, *LIST_FIELDS)
            if k in names and pa.types.is_list(schema.field(k).type) and k not in options.exclude
        ),
        None,
    )
    cols = choose_columns(path, names, tensor, options, endpoint, list_field)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    n = pf.metadata.num_rows
    if n == 0:
        raise _no_rows(path)
    chunks = tuple(
        ChunkSpec(i, s, min(s + chunk_size, n), s + 1, s, min(chunk_size, n - s))
        for i, s in enumerate(range(0, n, chunk_size))
    )
    return Layout(str(path), "parquet", st.st_size, st.st_mtime_ns, digest.hexdigest(), n, chunk_size, cols, chunks)


def choose_columns(
    path: Path,
    names: tuple[str, ...],
    tensor: InputTensor,
    options: ColumnOptions,
    endpoint: str,
    list_field: str | None,
) -> Columns:
    """The id, feature and kept columns; a mismatch with the declared input is a usage error,
    found here once rather than as a bad row on every line."""
    known = ", ".join(names) or "none"
    if options.labels is not None:
        if options.labels not in names:
            raise UsageError(
                f"{path}: --labels names column {options.labels!r}, which the input lacks (columns: {known})"
            )
        options = replace(
            options,
            exclude=tuple(dict.fromkeys([*options.exclude, options.labels])),
            keep=tuple(dict.fromkeys([*options.keep, options.labels])),
        )
    for opt, wanted in (("--features", options.features or ()), ("--keep", options.keep)):
        missing = [c for c in wanted if c not in names]
        if missing:
            raise UsageError(f"{path}: {opt} names column {missing[0]!r}, which the input lacks (columns: {known})")
    id_column = options.id_column if options.id_column in names else None
    if options.features:
        features = tuple(options.features)
        list_field = None
    elif list_field is not None:
        features = ()
    else:
        skip = {id_column, *options.exclude}
        features = tuple(n for n in names if n not in skip)
    if list_field is None and len(features) != tensor.per_row:
        raise UsageError(
            f"{path}: {len(features)} feature column(s) ({', '.join(features) or 'none'}), but endpoint "
            f"{endpoint!r} takes {tensor.per_row} value(s) per row (input {tensor.name!r}, shape "
            f"[n, {', '.join(map(str, tensor.row_shape))}])",
            hint="name the feature columns with --features A,B,... or leave columns out with --exclude "
            f"(the id column is {options.id_column!r}: --id-column)",
        )
    return Columns(id_column=id_column, features=features, list_field=list_field, keep=options.keep, header=names)


# ---------------------------------------------------------------------------
# Reading one chunk
# ---------------------------------------------------------------------------


def read_chunk(layout: Layout, spec: ChunkSpec, tensor: InputTensor) -> ChunkRows:
    """The rows of one chunk, mapped onto the declared input; bad rows kept aside."""
    if layout.format == "parquet":
        return _read_parquet(layout, spec, tensor)
    with open(layout.path, "rb") as fh:
        fh.seek(spec.start)
        data = fh.read(spec.end - spec.start)
    if layout.format == "jsonl":
        return _read_jsonl(layout.columns, spec, data, tensor)
    return _read_csv(layout.columns, spec, data, tensor)


def _read_jsonl(cols: Columns, spec: ChunkSpec, data: bytes, tensor: InputTensor) -> ChunkRows:
    out = ChunkRows(spec)
    row = spec.first_row
    line = spec.first_line - 1
    id_col = cols.id_column
    fields = cols.features or ((cols.list_field,) if cols.list_field else ())
    for raw in data.split(b"\n"):
        line += 1
        if not raw.strip():
            continue
        row += 1
        row_id: Any = row
        try:
            try:
                obj = _loads(raw)
            except _JSON_ERRORS as exc:
                raise BadRow(f"not valid JSON ({_first_line(str(exc))})") from None
            if cols.array_rows:
                if not isinstance(obj, list):
                    raise BadRow("not a JSON array of values like the file's first row")
                vals = values_of(flatten(obj), (), tensor)
                kept: dict[str, Any] = {}
            else:
                if not isinstance(obj, dict):
                    raise BadRow(f"not a JSON object (got {type(obj).__name__})")
                if id_col is not None:
                    if id_col not in obj or obj[id_col] is None:
                        raise BadRow(f"field {id_col!r} (the id) is missing")
                    row_id = obj[id_col]
                raw_vals = []
                for f in fields:
                    if f not in obj:
                        raise BadRow(f"field {f!r} is missing")
                    raw_vals.append(obj[f])
                if cols.list_field:
                    vals = values_of(flatten(raw_vals[0]), (), tensor)
                else:
                    vals = values_of(raw_vals, fields, tensor)
                kept = {k: obj.get(k) for k in cols.keep}
        except BadRow as bad:
            out.add_bad(line, row, row_id, str(bad))
            continue
        out.lines.append(line)
        out.rows.append(row)
        out.ids.append(row_id)
        out.values.append(vals)
        out.kept.append(kept)
    return out


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else text


def _read_csv(cols: Columns, spec: ChunkSpec, data: bytes, tensor: InputTensor) -> ChunkRows:
    out = ChunkRows(spec)
    text = data.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""))
    index = {name: i for i, name in enumerate(cols.header)}
    id_i = index[cols.id_column] if cols.id_column else None
    feat_i = [index[f] for f in cols.features]
    keep_i = [(k, index[k]) for k in cols.keep]
    width = len(cols.header)
    row = spec.first_row
    while True:
        line = spec.first_line + reader.line_num
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            row += 1
            out.add_bad(line, row, row, f"not a CSV record ({exc})")
            continue
        if not rec:
            continue
        row += 1
        row_id: Any = row
        try:
            if "\ufffd" in "".join(rec):
                raise BadRow("not UTF-8 text")
            if len(rec) != width:
                raise BadRow(f"wrong arity: {len(rec)} fields, but the header has {width}")
            if id_i is not None:
                row_id = rec[id_i]
                if not row_id:
                    raise BadRow(f"field {cols.id_column!r} (the id) is empty")
            vals = values_of([rec[i] for i in feat_i], cols.features, tensor)
        except BadRow as bad:
            out.add_bad(line, row, row_id, str(bad))
            continue
        out.lines.append(line)
        out.rows.append(row)
        out.ids.append(row_id)
        out.values.append(vals)
        out.kept.append({k: rec[i] for k, i in keep_i})
    return out


def _read_parquet(layout: Layout, spec: ChunkSpec, tensor: InputTensor) -> ChunkRows:
    """Row groups overlapping the chunk's row range, sliced to it."""
    pq = _pq()
    cols = layout.columns
    pf = pq.ParquetFile(layout.path)
    wanted = [c for c in dict.fromkeys([cols.id_column, cols.list_field, *cols.features, *cols.keep]) if c]
    groups, first = [], None
    at = 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if at + n > spec.start and at < spec.end:
            groups.append(g)
            first = at if first is None else first
        at += n
    table = pf.read_row_groups(groups, columns=wanted)
    table = table.slice(spec.start - (first or 0), spec.rows)
    data = {name: table.column(name).to_pylist() for name in wanted}
    out = ChunkRows(spec)
    fields = cols.features
    for i in range(table.num_rows):
        row = spec.first_row + i + 1
        row_id: Any = row
        try:
            if cols.id_column:
                row_id = data[cols.id_column][i]
                if row_id is None:
                    raise BadRow(f"field {cols.id_column!r} (the id) is missing (null)")
            if cols.list_field:
                vec = data[cols.list_field][i]
                if vec is None:
                    raise BadRow(f"field {cols.list_field!r} is missing (null)")
                vals = values_of(flatten(vec), (), tensor)
            else:
                vals = values_of([data[f][i] for f in fields], fields, tensor)
        except BadRow as bad:
            out.add_bad(row, row, row_id, str(bad))
            continue
        out.lines.append(row)
        out.rows.append(row)
        out.ids.append(row_id)
        out.values.append(vals)
        out.kept.append({k: data[k][i] for k in cols.keep})
    return out


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def flat_record(record: dict[str, Any]) -> dict[str, Any]:
    """CSV and Parquet cells are scalars: a list value ``p`` becomes ``p_0``, ``p_1``, ..."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        if isinstance(v, list):
            for i, x in enumerate(flatten(v)):
                out[f"{k}_{i}"] = x
        else:
            out[k] = v
    return out


def _part_lines(parts: Iterable[Path]) -> Iterator[bytes]:
    for part in parts:
        with open(part, "rb") as fh:
            for line in fh:
                if line.strip():
                    yield line


def assemble(fmt: str, out_path: Path, parts: Sequence[Path]) -> int:
    """Stream the part files (JSONL results, in input order) into ``out_path``; return bytes written."""
    with atomic_writer(out_path) as fh:
        if fmt == "jsonl":
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(1 << 20):
                        fh.write(block)
        elif fmt == "csv":
            _write_csv(fh, parts)
        else:
            _write_parquet(fh, parts)
        return fh.tell()


def _write_csv(fh: BinaryIO, parts: Sequence[Path]) -> None:
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="", write_through=True)
    writer: Any = None
    header: list[str] = []
    for line in _part_lines(parts):
        rec = flat_record(_loads(line))
        if writer is None:
            header = list(rec)
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(header)
        writer.writerow([_cell(rec.get(k)) for k in header])
    if writer is None:
        text.write("\n")
    text.flush()
    text.detach()


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float) and math.isfinite(v):
        return repr(v)
    return v


def _write_parquet(fh: BinaryIO, parts: Sequence[Path]) -> None:
    import pyarrow as pa

    pq = _pq()
    writer: Any = None
    schema: Any = None
    try:
        for part in parts:
            records = [flat_record(_loads(line)) for line in _part_lines([part])]
            if not records:
                continue
            if schema is None:
                table = pa.Table.from_pylist(records)
                schema = table.schema
                writer = pq.ParquetWriter(fh, schema)
            else:
                table = pa.Table.from_pylist(records, schema=schema)
            writer.write_table(table)
        if writer is None:
            writer = pq.ParquetWriter(fh, pa.schema([(ROW_ID, pa.int64())]))
    finally:
        if writer is not None:
            writer.close()


def read_output(path: Path, fmt: str) -> Iterator[dict[str, Any]]:
    """Rows of an output file as dicts (JSONL rows as written; CSV and Parquet flattened)."""
    if fmt == "jsonl":
        with open(path, "rb") as fh:
            for line in fh:
                if line.strip():
                    yield _loads(line)
    elif fmt == "csv":
        with open(path, encoding="utf-8", newline="") as fh:
            yield from csv.DictReader(fh)
    else:
        pf = _pq().ParquetFile(path)
        for batch in pf.iter_batches():
            yield from batch.to_pylist()
