"""Metadata validation, shaping rows to metadata, dummy data and the dataset cache."""

from __future__ import annotations

import os
import time

import pandas as pd
import pyarrow as pa
import pytest

from lomas_server.datasets import DatasetCache, LocalFileSource, conform_to_metadata, make_dummy
from lomas_server.errors import DatasetUnavailable, InvalidMetadata
from lomas_server.metadata import DatasetMetadata
from tests.conftest import SAMPLE_DATA, sample_metadata

PENGUIN = DatasetMetadata.from_dict(sample_metadata("penguin"))


# -- metadata ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("document", "mentions"),
    [
        ([], "mapping"),
        ({"max_ids": 1, "row_privacy": True}, "columns"),
        ({"row_privacy": True, "columns": {"a b": {"type": "int"}}}, "identifier"),
        ({"row_privacy": True, "columns": {"rows": {"type": "int"}}}, "table option"),
        ({"row_privacy": True, "columns": {"x": {"type": "decimal"}}}, "type"),
        ({"row_privacy": True, "columns": {"x": {"type": "int", "lower": 0}}}, "both"),
        ({"row_privacy": True, "columns": {"x": {"type": "int", "lower": 5, "upper": 1}}}, "above"),
        (
            {"row_privacy": True, "columns": {"x": {"type": "int", "lower": 0.5, "upper": 1}}},
            "whole",
        ),
        (
            {
                "row_privacy": True,
                "columns": {"x": {"type": "float", "lower": 0, "upper": float("inf")}},
            },
            "finite",
        ),
        (
            {"row_privacy": True, "columns": {"x": {"type": "string", "lower": 0, "upper": 1}}},
            "bounds",
        ),
        ({"row_privacy": True, "columns": {"x": {"type": "int", "colour": "red"}}}, "unknown keys"),
        ({"row_privacy": True, "max_ids": 0, "columns": {"x": {"type": "int"}}}, "max_ids"),
        ({"columns": {"x": {"type": "int"}}}, "row_privacy"),
        (
            {"row_privacy": True, "columns": {"x": {"type": "int"}, "X": {"type": "int"}}},
            "letter case",
        ),
        (
            {"row_privacy": True, "extra": 1, "columns": {"x": {"type": "int"}}},
            "unknown metadata keys",
        ),
    ],
)
def test_invalid_metadata_is_refused_with_a_reason(document, mentions):
    with pytest.raises(InvalidMetadata, match=mentions):
        DatasetMetadata.from_dict(document)


def test_every_lomas_fixture_metadata_is_accepted():
    import pathlib

    import yaml

    folder = pathlib.Path(__file__).parents[1] / "fixtures" / "lomas" / "metadata"
    files = sorted(folder.glob("*.yaml"))
    assert len(files) == 6
    for path in files:
        parsed = DatasetMetadata.from_dict(yaml.safe_load(path.read_text()))
        assert parsed.columns


# -- conform -----------------------------------------------------------------------------------
def test_conform_keeps_only_declared_columns_with_declared_types():
    raw = pd.DataFrame(
        {
            "N": ["1", "2", None],
            "f": ["1.5", "x", "2"],
            "b": ["true", "0", None],
            "secret": ["s", "t", "u"],
        }
    )
    meta = DatasetMetadata.from_dict(
        {"row_privacy": True, "columns": {"n": {"type": "int"}, "b": {"type": "boolean"}}}
    )
    out = conform_to_metadata(raw, meta)
    assert list(out.columns) == ["n", "b"]
    assert str(out["n"].dtype) == "Int64" and out["n"].isna().sum() == 1
    assert out["b"].tolist()[:2] == [True, False] and pd.isna(out["b"].iloc[2])


@pytest.mark.parametrize(
    ("values", "ctype", "mentions"),
    [
        (["1", "x"], "int", "type int"),
        (["1", "1.5"], "int", "type int"),
        (["yes", "maybe"], "boolean", "type boolean"),
        (["2020-01-01", "not a date"], "datetime", "type datetime"),
    ],
)
def test_conform_refuses_values_of_another_type(values, ctype, mentions):
    """When the admin adds the data (strict) a misfit is refused; at query time it is read as
    missing, so that one row can never make a query fail."""
    meta = DatasetMetadata.from_dict({"row_privacy": True, "columns": {"c": {"type": ctype}}})
    with pytest.raises(DatasetUnavailable, match=mentions):
        conform_to_metadata(pd.DataFrame({"c": values}), meta, strict=True)
    lenient = conform_to_metadata(pd.DataFrame({"c": values}), meta)
    assert lenient["c"].notna().tolist() == [True, False]


def test_conform_refuses_missing_columns_and_nulls_in_non_nullable():
    with pytest.raises(DatasetUnavailable, match="no column"):
        conform_to_metadata(pd.DataFrame({"x": [1]}), PENGUIN)
    meta = DatasetMetadata.from_dict(
        {"row_privacy": True, "columns": {"c": {"type": "int", "nullable": False}}}
    )
    with pytest.raises(DatasetUnavailable, match="not nullable"):
        conform_to_metadata(pd.DataFrame({"c": ["1", None]}), meta, strict=True)
    # at query time the row that does not fit is left out instead
    assert conform_to_metadata(pd.DataFrame({"c": ["1", None]}), meta)["c"].tolist() == [1]


# -- dummy -------------------------------------------------------------------------------------
def test_dummy_follows_metadata_and_seed():
    meta = DatasetMetadata.from_dict(
        {
            "row_privacy": True,
            "columns": {
                "i": {"type": "int", "lower": 3, "upper": 5, "nullable": False},
                "f": {"type": "float", "lower": -1.0, "upper": 1.0},
                "s": {"type": "string", "categories": ["a", "b"], "nullable": False},
                "free": {"type": "string"},
                "b": {"type": "boolean"},
                "d": {"type": "datetime", "lower": "2020-01-01", "upper": "2021-01-01"},
                "c": {"type": "int", "categories": [7, 9]},
            },
        }
    )
    frame = make_dummy(meta, 2000, seed=1)
    assert list(frame.columns) == list(meta.columns) and len(frame) == 2000
    assert set(frame["i"].unique()) == {3, 4, 5}
    assert frame["f"].dropna().between(-1, 1).all() and frame["f"].isna().any()
    assert set(frame["s"]) == {"a", "b"}
    assert set(frame["c"].dropna()) == {7, 9}
    assert frame["d"].dropna().between("2020-01-01", "2021-01-01").all()
    assert make_dummy(meta, 50, seed=2).equals(make_dummy(meta, 50, seed=2))
    assert not make_dummy(meta, 50, seed=2).equals(make_dummy(meta, 50, seed=3))


def test_dummy_frames_conform_to_their_own_metadata():
    frame = make_dummy(PENGUIN, 300, seed=5)
    assert conform_to_metadata(frame.astype(object).where(frame.notna(), None), PENGUIN).shape == (
        300,
        7,
    )


# -- cache -------------------------------------------------------------------------------------
def test_cache_loads_once_then_reloads_when_the_file_changes(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"x": [1, 2]}).to_csv(path, index=False)
    source = LocalFileSource(path)
    cache = DatasetCache(max_bytes=10**9)
    first = cache.get("D", source, lambda rows: rows.read_all())
    assert cache.get("D", source, lambda rows: rows.read_all()) is first
    assert cache.loads == 1
    time.sleep(0.01)
    pd.DataFrame({"x": [1, 2, 3]}).to_csv(path, index=False)
    os.utime(path, ns=(time.time_ns(), time.time_ns()))
    second = cache.get("D", source, lambda rows: rows.read_all())
    assert cache.loads == 2 and len(second.frame) == 3


def test_cache_evicts_least_recently_used_beyond_its_size(tmp_path):
    sources = {}
    for name in "abc":
        path = tmp_path / f"{name}.csv"
        pd.DataFrame({"x": range(1000)}).to_csv(path, index=False)
        sources[name] = LocalFileSource(path)
    one = DatasetCache(max_bytes=10**9).get("a", sources["a"], lambda rows: rows.read_all()).nbytes
    cache = DatasetCache(max_bytes=int(one * 2.5))
    cache.get("a", sources["a"], lambda rows: rows.read_all())
    cache.get("b", sources["b"], lambda rows: rows.read_all())
    cache.get("a", sources["a"], lambda rows: rows.read_all())  # a is now the most recent
    cache.get("c", sources["c"], lambda rows: rows.read_all())  # evicts b
    assert cache.loads == 3
    cache.get("a", sources["a"], lambda rows: rows.read_all())
    assert cache.loads == 3
    cache.get("b", sources["b"], lambda rows: rows.read_all())
    assert cache.loads == 4
    assert cache.nbytes <= cache.max_bytes


def test_parquet_and_csv_sources(tmp_path):
    from lomas_server.datasets import conformed_table

    frame = pd.read_csv(SAMPLE_DATA / "penguin.csv")
    frame.to_parquet(tmp_path / "p.parquet")
    parquet = conformed_table(LocalFileSource(tmp_path / "p.parquet").load(), PENGUIN)
    csv = conformed_table(LocalFileSource(SAMPLE_DATA / "penguin.csv").load(), PENGUIN)
    assert parquet.equals(csv)


def test_missing_file_is_dataset_unavailable(tmp_path):
    with pytest.raises(DatasetUnavailable):
        LocalFileSource(tmp_path / "nope.csv").version()


def test_parquet_is_conformed_in_arrow_with_the_same_result_as_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lomas_server.datasets import conformed_table

    frame = pd.read_csv(SAMPLE_DATA / "penguin.csv")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # narrower and encoded types, as real Parquet files have them
    table = table.set_column(0, "species", pa.array(frame["species"]).dictionary_encode())
    table = table.set_column(
        2, "bill_length_mm", pa.array(frame["bill_length_mm"], type=pa.float32())
    )
    pq.write_table(table, tmp_path / "p.parquet")
    raw = LocalFileSource(tmp_path / "p.parquet").load()
    assert isinstance(raw, pa.Table)
    fast = conformed_table(raw, PENGUIN)
    general = conformed_table(LocalFileSource(SAMPLE_DATA / "penguin.csv").load(), PENGUIN)
    assert fast.schema == general.schema
    assert fast.column("species").to_pylist() == general.column("species").to_pylist()
    for a, b in zip(
        fast.column("bill_length_mm").to_pylist(),
        general.column("bill_length_mm").to_pylist(),
        strict=True,
    ):
        assert (a is None and b is None) or a == pytest.approx(b, rel=1e-6)


def test_parquet_that_does_not_cast_takes_the_general_rules(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lomas_server.datasets import conformed_table

    meta = DatasetMetadata.from_dict(
        {"row_privacy": True, "columns": {"n": {"type": "int"}, "flag": {"type": "boolean"}}}
    )
    pq.write_table(
        pa.table({"n": [1.0, 2.0, None], "flag": ["yes", "no", "true"]}), tmp_path / "a.parquet"
    )
    table = conformed_table(LocalFileSource(tmp_path / "a.parquet").load(), meta)
    assert table.column("n").to_pylist() == [1, 2, None]
    assert table.column("flag").to_pylist() == [True, False, True]
    pq.write_table(pa.table({"n": [1.5, 2.0], "flag": [True, False]}), tmp_path / "b.parquet")
    with pytest.raises(DatasetUnavailable, match="type int"):
        conformed_table(LocalFileSource(tmp_path / "b.parquet").load(), meta, strict=True)
    lenient = conformed_table(LocalFileSource(tmp_path / "b.parquet").load(), meta)
    assert lenient.column("n").to_pylist() == [None, 2]


def test_text_with_few_distinct_values_is_kept_as_a_dictionary():
    import pyarrow as pa

    from lomas_server.arrow_schema import plain_strings
    from lomas_server.datasets.conform import compact_strings

    table = pa.table(
        {
            "kind": ["a", "b", None, "a", "b", "a"],  # 2 distinct in 6 rows
            "name": ["p", "q", "r", "s", "t", "a"],  # all distinct
            "n": [1, 2, 3, 4, 5, 6],
        }
    )
    compact = compact_strings(table)
    assert pa.types.is_dictionary(compact.schema.field("kind").type)
    assert compact.schema.field("name").type == pa.string()
    assert compact.column("kind").to_pylist() == table.column("kind").to_pylist()  # NULL kept
    assert plain_strings(compact).equals(table)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_only_the_declared_columns_are_read(tmp_path, suffix):
    frame = pd.DataFrame({"Species": ["a", "b"], "secret_extra": ["x", "y"], "n": ["1", "2"]})
    path = tmp_path / f"wide.{suffix}"
    frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)
    loaded = LocalFileSource(path).load(["species", "N"])
    names = loaded.column_names
    assert names == ["Species", "n"]  # the file's own spelling, nothing else
    everything = LocalFileSource(path).load()
    assert len(everything.columns if suffix == "csv" else everything.column_names) == 3


def test_values_no_reader_takes_are_missing_not_a_failure():
    """Found by attacking the server: a Parquet date past year 9999, text that is not UTF-8,
    a year 0 or a zoned time past 9999 in a CSV made every query on the data fail (or, read
    in place, only the queries whose filters kept that row). They read as missing now, and
    adding such data names them."""
    from lomas_server.datasets import conformed_table

    meta = DatasetMetadata.from_dict(
        {
            "max_ids": 1,
            "columns": {
                "pid": {"type": "int", "private_id": True},
                "note": {"type": "string"},
                "born": {"type": "datetime"},
                "seen": {"type": "datetime"},
            },
        }
    )
    typed = pa.table(
        {
            "pid": [1, 2, 9223372036854775807],
            "note": pa.array([b"ok", b"\xff\xfe", None], pa.binary()).view(pa.string()),
            "born": pa.array([0, 2**31 - 10, -800_000], pa.date32()),
            "seen": pa.array([0, 2**62, None], pa.timestamp("ms", tz="Europe/Zurich")),
        }
    )
    table = conformed_table(typed, meta)
    assert table.column("pid").to_pylist() == [1, 2, 9223372036854775807]
    assert table.column("note").to_pylist() == ["ok", None, None]
    assert table.column("born").null_count == 2 and table.column("seen").null_count == 2
    with pytest.raises(DatasetUnavailable, match="'note' does not hold values of type string"):
        conformed_table(typed, meta, strict=True)
    text = pd.DataFrame(
        {
            "pid": ["9223372036854775807", "9007199254740993", "3.0", "4"],
            "note": ["a", "b", "c", "d"],
            "born": ["0000-01-01", "2020-01-01", "now", "9999-12-31T23:00:00-05:00"],
            "seen": [None, None, None, None],
        }
    )
    table = conformed_table(text, meta)
    # whole numbers exactly, even past 2**53 (ids must not merge)
    assert table.column("pid").to_pylist() == [9223372036854775807, 9007199254740993, 3, 4]
    assert table.column("born").to_pylist()[1].year == 2020
    assert table.column("born").null_count == 3


def test_physical_types_a_file_may_use_read_without_failing():
    """Unsigned integers past 64 bits signed and integers with nulls past 2**53 are exact
    where they fit and missing where they do not; a stored type that can never hold the
    declared kind (a time of day for a timestamp) makes the column unreadable, whatever the
    values."""
    from lomas_server.datasets import conformed_table

    meta = DatasetMetadata.from_dict(
        {
            "max_ids": 1,
            "columns": {
                "pid": {"type": "int", "private_id": True},
                "n": {"type": "int"},
                "yes": {"type": "boolean"},
            },
        }
    )
    table = conformed_table(
        pa.table(
            {
                "pid": [2**60 + 1, None, 2**60 + 3],
                "n": pa.array([1, 2**64 - 1, 3], pa.uint64()),
                "yes": ["yes", "no", "no"],
            }
        ),
        meta,
    )
    assert table.column("pid").to_pylist() == [2**60 + 1, 2**60 + 3]
    assert table.column("n").to_pylist() == [1, 3]
    times = DatasetMetadata.from_dict(
        {"row_privacy": True, "columns": {"when": {"type": "datetime"}}}
    )
    with pytest.raises(DatasetUnavailable, match="time64.*cannot hold datetime"):
        conformed_table(pa.table({"when": pa.array([0], pa.time64("us"))}), times)


@pytest.mark.parametrize(
    ("stored", "declared", "values"),
    [
        # stored type -> declared type, with one value that does not fit
        (pa.float64(), "int", [1.0, 2.0, 30.5]),
        (pa.float64(), "int", [1.0, 2.0, float("nan")]),
        (pa.uint64(), "int", [1, 2, 2**63]),
        (pa.string(), "int", ["1", "2", "x"]),
        (pa.string(), "float", ["1.5", "2", "x"]),
        (pa.string(), "datetime", ["2020-01-01", "2020-01-02 10:00:00", "never"]),
        (pa.float64(), "string", [1.0, 2.5, None]),
        (pa.bool_(), "string", [True, False, None]),
        (pa.string(), "boolean", ["yes", "0", "maybe"]),
    ],
)
def test_a_value_that_does_not_fit_changes_no_other_value(stored, declared, values):
    """Each value is converted on its own: one row that does not fit (here the last) changes
    neither the other values of its column nor any other column. A conversion that switched
    paths for the whole table once rewrote every value (an attack emptied a grouped count)."""
    from lomas_server.datasets import conformed_table

    meta = DatasetMetadata.from_dict(
        {
            "row_privacy": True,
            "columns": {
                "v": {"type": declared},
                "other": {"type": "string"},
                "x": {"type": "float"},
            },
        }
    )

    def conformed(rows):
        table = pa.table(
            {
                "v": pa.array(rows, type=stored),
                "other": pa.array([1.0] * len(rows)),  # a float column read as text
                "x": pa.array([2] * len(rows), pa.int32()),
            }
        )
        return conformed_table(table, meta)

    clean, with_misfit = conformed(values[:2]), conformed(values)
    for name in ("v", "other", "x"):
        assert with_misfit.column(name).to_pylist()[:2] == clean.column(name).to_pylist()


def test_a_quote_left_open_takes_no_other_row(tmp_path):
    """A CSV line with an odd number of quotes would open a field that runs on into other
    people's lines (or to the end of the file, failing it): such a line is left out alone, and
    refused when the admin adds the file."""
    from lomas_server.datasets import conformed_table

    meta = DatasetMetadata.from_dict(
        {
            "row_privacy": True,
            "columns": {"sex": {"type": "string"}, "age": {"type": "int"}},
        }
    )
    lines = ["sex,age"] + ['"M",30', "F,40"] * 400
    lines.insert(100, '"M,30')  # opened here ...
    lines.insert(700, 'M",30')  # ... closed 600 lines later
    path = tmp_path / "people.csv"
    path.write_text("\n".join(lines) + "\n")
    table = conformed_table(LocalFileSource(path).load(), meta)
    assert table.num_rows == 800 and table.column("sex").to_pylist().count("M") == 400
    with pytest.raises(DatasetUnavailable, match="line 101 leaves a quote open"):
        LocalFileSource(path).load(strict=True)


def test_columns_named_alike_but_for_case_are_refused(tmp_path):
    """Engines would not agree on which of 'Age' and 'age' a query reads."""
    import pyarrow.parquet as pq

    from lomas_server.datasets import conformed_table
    from lomas_server.datasets.parquet_scan import plan_scan

    meta = DatasetMetadata.from_dict({"row_privacy": True, "columns": {"age": {"type": "int"}}})
    table = pa.table({"Age": [90, 90], "age": [10, 10]})
    with pytest.raises(DatasetUnavailable, match="differ in more than letter case"):
        conformed_table(table, meta)
    pq.write_table(table, tmp_path / "twice.parquet")
    with pytest.raises(DatasetUnavailable, match="differ in more than letter case"):
        plan_scan(LocalFileSource(tmp_path / "twice.parquet"), meta)
    # undeclared columns may be named as the file likes
    other = DatasetMetadata.from_dict({"row_privacy": True, "columns": {"x": {"type": "int"}}})
    assert conformed_table(table.append_column("x", pa.array([1, 2])), other).num_rows == 2
