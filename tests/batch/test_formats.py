"""Reading inputs, cutting chunks, bad rows and assembling outputs (no server)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from mlserve.batch.client import decode_response, request_body
from mlserve.batch.formats import ColumnOptions, assemble, read_chunk, read_output, scan
from mlserve.batch.rows import InputTensor
from mlserve.errors import UsageError

T8 = InputTensor("input-0", "FP32", (8,))
T2 = InputTensor("input-0", "FP32", (2,))


def _rows_of(layout, tensor=T2):  # type: ignore[no-untyped-def]
    good, bad = [], []
    for spec in layout.chunks:
        got = read_chunk(layout, spec, tensor)
        good += list(zip(got.rows, got.ids, got.values, strict=True))
        bad += got.bad
    return good, bad


def test_jsonl_objects_ids_and_bad_rows_with_line_numbers(tmp_path: Path) -> None:
    lines = [
        {"id": "a", "x": 1, "y": 2.5},
        "",
        {"id": "b", "x": "3", "y": 4},  # a numeric string is fine
        {"id": "c", "x": "nope", "y": 1},
        {"id": "d", "y": 1},
        '{"id": "e", "x": 1',
        {"id": "f", "x": None, "y": 1},
        [1, 2],
        {"x": 1, "y": 2},
        {"id": "g", "x": 1e308, "y": True},
    ]
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    path = tmp_path / "in.jsonl"
    path.write_text(text)
    layout = scan(path, "jsonl", T2, ColumnOptions(), chunk_size=3, endpoint="fraud")
    assert layout.rows == 9 and [c.rows for c in layout.chunks] == [3, 3, 3]
    assert layout.columns.features == ("x", "y") and layout.columns.id_column == "id"
    good, bad = _rows_of(layout)
    assert [(r, i) for r, i, _ in good] == [(1, "a"), (2, "b")]
    assert good[1][2] == [3.0, 4.0]
    reasons = {b["line"]: b["reason"] for b in bad}
    assert reasons == {
        4: "field 'x': not a number (got 'nope')",
        5: "field 'x' is missing",
        6: reasons[6],
        7: "field 'x' is missing (null)",
        8: "not a JSON object (got list)",
        9: "field 'id' (the id) is missing",
        10: "field 'y': not a number (got True)",
    }
    assert reasons[6].startswith("not valid JSON")


def test_csv_quoted_newlines_arity_and_empty_fields(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "x", "y", "label"])
        w.writerow(["multi\nline id", "1", "2", "0"])
        w.writerow(["b", "1", "", "1"])
        w.writerow(["c", "1", "2", "3", "extra"])
        w.writerow(["d", "0.5", "1e3", "1"])
    layout = scan(path, "csv", T2, ColumnOptions(exclude=("label",), keep=("label",)), chunk_size=2, endpoint="e")
    assert layout.rows == 4 and len(layout.chunks) == 2
    good, bad = _rows_of(layout)
    assert [(r, i, v) for r, i, v in good] == [(1, "multi\nline id", [1.0, 2.0]), (4, "d", [0.5, 1000.0])]
    assert [(b["line"], b["reason"]) for b in bad] == [
        (4, "field 'y' is empty"),
        (5, "wrong arity: 5 fields, but the header has 4"),
    ]


def test_column_mismatch_is_a_usage_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,a,b,c\n1,2,3,4\n")
    with pytest.raises(UsageError, match=r"in\.csv: 3 feature column\(s\) \(a, b, c\), but endpoint 'fraud' takes 2"):
        scan(path, "csv", T2, ColumnOptions(), 10, "fraud")
    with pytest.raises(UsageError, match="--features names column 'z'"):
        scan(path, "csv", T2, ColumnOptions(features=("a", "z")), 10, "fraud")
    layout = scan(path, "csv", T2, ColumnOptions(features=("c", "a")), 10, "fraud")
    assert _rows_of(layout)[0][0][2] == [4.0, 2.0]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(UsageError, match="no rows"):
        scan(empty, "jsonl", T2, ColumnOptions(), 10, "fraud")
    with pytest.raises(UsageError, match="does not exist"):
        scan(tmp_path / "missing.csv", "csv", T2, ColumnOptions(), 10, "fraud")


def test_parquet_list_column_and_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    table = pa.table({"id": [f"r{i}" for i in range(25)], "features": [[float(i), float(-i)] for i in range(25)]})
    pq.write_table(table, path, row_group_size=7)
    layout = scan(path, "parquet", T2, ColumnOptions(), chunk_size=10, endpoint="e")
    assert layout.columns.list_field == "features"
    good, bad = _rows_of(layout)
    assert bad == [] and [i for _, i, _ in good] == [f"r{i}" for i in range(25)]
    assert good[13][2] == [13.0, -13.0]


@settings(max_examples=40, deadline=None)
@given(n=hs.integers(1, 60), chunk=hs.integers(1, 17), blanks=hs.lists(hs.integers(0, 60), max_size=5))
def test_chunks_cover_every_row_exactly_once(
    tmp_path_factory: pytest.TempPathFactory, n: int, chunk: int, blanks: list[int]
) -> None:
    path = tmp_path_factory.mktemp("c") / "in.jsonl"
    lines = [json.dumps({"id": i, "x": i, "y": -i}) for i in range(n)]
    for b in sorted(blanks, reverse=True):
        lines.insert(min(b, len(lines)), "   ")
    path.write_text("\n".join(lines))  # no newline at the end
    layout = scan(path, "jsonl", T2, ColumnOptions(), chunk, "e")
    good, bad = _rows_of(layout)
    assert bad == [] and [i for _, i, _ in good] == list(range(n))
    assert [r for r, _, _ in good] == list(range(1, n + 1))


def test_request_body_and_response_decoding() -> None:
    body = json.loads(request_body(T2, [[1.0, 2.0], [3.0, 4.0]], ("predict_proba",)))
    assert body["inputs"][0] == {"name": "input-0", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}
    assert body["outputs"] == [{"name": "predict_proba"}]
    rows, schema = decode_response(
        {
            "outputs": [
                {"name": "predict", "shape": [2, 1], "datatype": "INT64", "data": [0, 1]},
                {"name": "predict_proba", "shape": [2, 2], "datatype": "FP64", "data": [[0.9, 0.1], [0.2, 0.8]]},
            ]
        },
        2,
    )
    assert rows == [{"predict": 0, "predict_proba": [0.9, 0.1]}, {"predict": 1, "predict_proba": [0.2, 0.8]}]
    assert schema == [("predict", 1, "INT64"), ("predict_proba", 2, "FP64")]
    from mlserve.batch.client import MalformedAnswer

    with pytest.raises(MalformedAnswer, match="3 rows in the answer for 2 sent"):
        decode_response({"outputs": [{"name": "p", "shape": [3], "data": [1, 2, 3]}]}, 2)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_assemble_each_format_in_order(tmp_path: Path, fmt: str) -> None:
    parts = []
    for k in range(3):
        p = tmp_path / f"part-{k}.jsonl"
        p.write_text(
            "".join(json.dumps({"id": f"r{k}{j}", "predict": j, "proba": [0.25, 0.75]}) + "\n" for j in range(2))
        )
        parts.append(p)
    out = tmp_path / f"out.{fmt}"
    assemble(fmt, out, parts)
    rows = list(read_output(out, fmt))
    assert [str(r["id"]) for r in rows] == ["r00", "r01", "r10", "r11", "r20", "r21"]
    if fmt == "jsonl":
        assert rows[1] == {"id": "r01", "predict": 1, "proba": [0.25, 0.75]}
    else:
        assert float(rows[1]["proba_1"]) == 0.75 and int(rows[1]["predict"]) == 1


@settings(max_examples=80, deadline=None)
@given(
    data=hs.binary(max_size=400)
    | hs.text(alphabet='{}[]",:0123456789.eE-+ \nabcnul\r\x00', max_size=300).map(str.encode),
    fmt=hs.sampled_from(["jsonl", "csv"]),
)
def test_hostile_bytes_give_a_usage_error_or_every_row_accounted_for(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, fmt: str
) -> None:
    """Whatever the file holds, the readers never raise anything but a usage error, and every
    row they count is either scored or listed as bad."""
    path = tmp_path_factory.mktemp("h") / f"in.{fmt}"
    path.write_bytes(data)
    try:
        layout = scan(path, fmt, InputTensor("input-0", "FP32", (1,)), ColumnOptions(), 3, "e")
    except UsageError:
        return
    good, bad = _rows_of(layout, InputTensor("input-0", "FP32", (1,)))
    assert len(good) + len(bad) == layout.rows
    assert all(isinstance(b["reason"], str) and b["reason"] for b in bad)
