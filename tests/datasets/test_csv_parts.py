"""Files read a part at a time mean what they meant read at once.

A CSV file is read in parts of whole lines and each part is conformed and let go before the
next is read (a Parquet file, in batches of each row group); adding a dataset checks it that
way without keeping any row. These tests make the parts tiny, so that a fault lies many parts
past the first, and compare with the file read as one part: the same rows, and the same
refusal with the same message.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lomas_server.datasets import LocalFileSource, conformed_table
from lomas_server.datasets.conform import check_conforms
from lomas_server.datasets.sources import base
from lomas_server.errors import DatasetUnavailable
from lomas_server.metadata import DatasetMetadata
from lomas_server.service.admin import AdminService
from lomas_server.store.sqlite import SqliteStore

DOCUMENT = {
    "max_ids": 1,
    "rows": 100_000,
    "columns": {
        "pid": {"type": "int", "private_id": True, "nullable": False},
        "sex": {"type": "string"},
        "x": {"type": "float"},
        "ok": {"type": "boolean"},
        "n": {"type": "int", "nullable": False},
    },
}
META = DatasetMetadata.from_dict(DOCUMENT)
HEADER = "pid,sex,x,ok,n"
ROWS = 20_000
TINY = 4096  # bytes in a part: the faults below are about a hundred parts in
WHOLE = 1 << 30


def rows(count: int = ROWS) -> list[str]:
    return [
        f"{i},{'FM'[i % 2]},{i / 4},{'True' if i % 3 else 'False'},{i % 90}" for i in range(count)
    ]


def write(path: Path, lines: list[str], tail: bytes = b"") -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode() + tail)
    return path


def refusal(path: Path, part_bytes: int, monkeypatch: pytest.MonkeyPatch, meta=META) -> str:
    monkeypatch.setattr(base, "CSV_PART_BYTES", part_bytes)
    with pytest.raises(DatasetUnavailable) as caught:
        check_conforms(LocalFileSource(path).stream(list(meta.columns), strict=True), meta)
    return caught.value.message


def broken(kind: str, folder: Path) -> tuple[Path, str]:
    """A file with the given faults, and what its refusal must say."""
    lines = [HEADER, *rows()]
    path = folder / f"{kind}.csv"
    if kind == "fields":
        lines[15_000] += ",extra"
        return write(path, lines), "CSV parse error: Expected 5 columns, got 6"
    if kind == "quote":
        lines[15_000] = '"M' + lines[15_000]
        return write(path, lines), "line 15001 leaves a quote open"
    if kind == "utf8":
        lines[15_000] = "14999,\udcff,1.0,True,1"
        data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
        path.write_bytes(data)
        where = data.index(b"\xff")
        return path, f"'utf-8' codec can't decode byte 0xff in position {where}: invalid start"
    if kind == "quote after a bad line":
        lines[100] += ",extra"
        lines[15_000] = '"M' + lines[15_000]
        return write(path, lines), "line 15001 leaves a quote open"
    if kind == "bad bytes after a bad line":
        lines[100] += ",extra"
        data = ("\n".join(lines) + "\n").encode() + b"1,\xe2\x82,1,True,1\n"
        path.write_bytes(data)
        where = data.index(b"\xe2")
        return path, f"can't decode bytes in position {where}-{where + 1}: invalid continuation"
    if kind == "values":
        lines[50] = "49,M,12.25,True,fifty"
        lines[15_000] = "15000,M,3750.0,True,many"
        return write(path, lines), "column 'n' does not hold values of type int (2 value(s)"
    if kind == "ids":
        lines[10], lines[15_000] = "," + lines[10].split(",", 1)[1], ",M,1.0,True,1"
        return write(path, lines), "column 'pid' names each row's person, but 2 row(s) have no id"
    if kind == "required":
        lines[15_000] = "15000,M,1.0,True,NA"
        return write(path, lines), "column 'n' is declared not nullable but has 1 missing value(s)"
    if kind == "column missing, and a bad line":
        lines = [line.rsplit(",", 1)[0] for line in lines]
        lines[15_000] += ",extra,more"
        return write(path, lines), "CSV parse error: Expected 4 columns, got 6"
    raise AssertionError(kind)


KINDS = [
    "fields",
    "quote",
    "utf8",
    "quote after a bad line",
    "bad bytes after a bad line",
    "values",
    "ids",
    "required",
    "column missing, and a bad line",
]


@pytest.mark.parametrize("kind", KINDS)
def test_a_fault_far_past_the_first_part_is_refused_as_read_at_once(tmp_path, monkeypatch, kind):
    path, expected = broken(kind, tmp_path)
    at_once = refusal(path, WHOLE, monkeypatch)
    in_parts = refusal(path, TINY, monkeypatch)
    assert expected in at_once
    assert in_parts == at_once


def test_more_rows_than_the_metadata_says_are_counted_to_the_end(tmp_path, monkeypatch):
    path = write(tmp_path / "many.csv", [HEADER, *rows()])
    few = DatasetMetadata.from_dict({**DOCUMENT, "rows": 1000})
    message = refusal(path, TINY, monkeypatch, few)
    assert message == refusal(path, WHOLE, monkeypatch, few)
    assert f"the data holds {ROWS} rows" in message
    monkeypatch.setattr(base, "CSV_PART_BYTES", TINY)
    with pytest.raises(DatasetUnavailable, match=f"holds {ROWS} rows"):
        conformed_table(LocalFileSource(path).stream(list(few.columns)), few)


def test_adding_a_dataset_refuses_a_bad_line_far_past_the_first_part(tmp_path, monkeypatch):
    path, expected = broken("fields", tmp_path)
    monkeypatch.setattr(base, "CSV_PART_BYTES", TINY)
    admin = AdminService(SqliteStore(tmp_path / "admin.sqlite"))
    with pytest.raises(DatasetUnavailable) as caught:
        admin.add_dataset("D", path, DOCUMENT)
    assert caught.value.message.startswith(f"{path} is not a readable csv file: {expected}: 14999,")
    clean = write(tmp_path / "clean.csv", [HEADER, *rows()])
    assert admin.add_dataset("CLEAN", clean, DOCUMENT).name == "CLEAN"


def test_lenient_reading_in_parts_gives_the_same_rows(tmp_path, monkeypatch, caplog):
    """A query reads a file nobody checked: every fault is left out or missing, per row."""
    lines = [HEADER, *rows()]
    lines[3] += ",extra"  # left out
    lines[5_000] = '"M' + lines[5_000]  # left out
    lines[9_000] = lines[9_000].replace(",True,", ",maybe,").replace(",False,", ",maybe,")
    lines[12_000] = ",F,1.0,True,1"  # no id: left out
    lines[15_000] = "15000,M,x,True,1"  # x missing
    data = ("\n".join(lines) + "\n").encode().replace(b"\n18000,F", b"\n18000,\xff")
    path = tmp_path / "lenient.csv"
    path.write_bytes(data)
    tables = []
    for part_bytes in (WHOLE, TINY):
        monkeypatch.setattr(base, "CSV_PART_BYTES", part_bytes)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            tables.append(conformed_table(LocalFileSource(path).stream(list(META.columns)), META))
        tables.append(sorted(r.getMessage() for r in caplog.records))
    whole, whole_log, parts, parts_log = tables
    assert parts.equals(whole) and parts_log == whole_log
    assert whole.num_rows == ROWS - 3
    assert all(column.num_chunks == 1 for column in parts.columns)
    assert pa.types.is_dictionary(parts.schema.field("sex").type)  # few distinct: compacted
    assert whole.column("sex").to_pylist().count("\ufffd") == 1
    assert any("quote left open" in line for line in whole_log)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("no final line break", (HEADER + "\n1,F,1.0,True,1\n2,M,2.0,False,2").encode()),
        ("windows line breaks", (HEADER + "\r\n1,F,1.0,True,1\r\n2,M,2.0,False,2\r\n").encode()),
        ("a line longer than a part", (HEADER + f"\n1,{'F' * 10_000},1.0,True,1\n").encode()),
        ("blank lines", ("\n" + HEADER + "\n\n1,F,1.0,True,1\n\n2,M,2.0,False,2\n").encode()),
        ("header only", (HEADER + "\n").encode()),
        ("blank windows lines", ("\r\n" + HEADER + "\r\n1,F,1.0,True,1\r\n").encode()),
    ],
)
def test_unusual_shapes_read_alike_in_parts(tmp_path, monkeypatch, name, data):
    path = tmp_path / "odd.csv"
    path.write_bytes(data)
    results = []
    for part_bytes in (WHOLE, 16):
        monkeypatch.setattr(base, "CSV_PART_BYTES", part_bytes)
        results.append(conformed_table(LocalFileSource(path).stream(list(META.columns)), META))
    assert results[0].equals(results[1])
    assert results[0].num_rows == data.count(b",True,") + data.count(b",False,")


def test_an_empty_file_is_refused_alike(tmp_path, monkeypatch):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert refusal(path, TINY, monkeypatch) == f"{path} is not a readable csv file: Empty CSV file"


def test_parquet_in_row_groups_and_batches_gives_the_same_rows(tmp_path, monkeypatch):
    frame = pa.table(
        {
            "pid": pa.array(range(5000), pa.int32()),
            "sex": pa.array(["F", "M"] * 2500).dictionary_encode(),
            "x": pa.array([float("nan") if i % 7 == 0 else i / 2 for i in range(5000)]),
            "ok": pa.array([i % 3 == 0 for i in range(5000)]),
            "n": pa.array([None if i == 4000 else i % 90 for i in range(5000)], pa.int64()),
        }
    )
    path = tmp_path / "groups.parquet"
    pq.write_table(frame, path, row_group_size=700)
    monkeypatch.setattr(base, "PARQUET_BATCH_ROWS", 300)
    streamed = conformed_table(LocalFileSource(path).stream(list(META.columns)), META)
    at_once = conformed_table(pq.read_table(path), META)
    assert streamed.equals(at_once) and streamed.num_rows == 4999
    with pytest.raises(DatasetUnavailable, match="'n' is declared not nullable but has 1"):
        check_conforms(LocalFileSource(path).stream(list(META.columns), strict=True), META)
