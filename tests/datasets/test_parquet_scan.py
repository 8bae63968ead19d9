"""Parquet datasets read in place (streamed from the file at each query) instead of loaded:
the same rows and the same exact aggregates as the loaded copy, locally and on S3, on both
the SmartNoise-SQL and the OpenDP path, with the file checked before anything is spent."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lomas_server.api_requests import OpenDPRequest, SqlRequest
from lomas_server.arrow_schema import plain_strings
from lomas_server.datasets import DatasetCache, LocalFileSource, S3Source, conformed_table, to_arrow
from lomas_server.datasets.parquet_scan import ParquetScan, plan_scan
from lomas_server.engines.duckdb_reader import DuckDBReader
from lomas_server.engines.opendp_engine import Noise
from lomas_server.errors import DatasetUnavailable
from lomas_server.metadata import DatasetMetadata
from lomas_server.service.admin import AdminService
from lomas_server.store import open_store
from tests.conftest import analyst_service, sample_metadata
from tests.engines.test_engines_agree import (
    AGREEMENT_CASES,
    PENGUIN,
    PEOPLE_DOCUMENT,
    TITANIC,
    bounded_count,
    exact_aggregates,
    load_sample,
    people_rows,
)
from tests.servers import Api, ServerProcess

METADATA = {"penguin": PENGUIN, "titanic": TITANIC}
# The shared people, with a person id that may not be missing and a bound on the row count.
PEOPLE_METADATA = {
    **PEOPLE_DOCUMENT,
    "rows": 10_000,
    "columns": {
        **PEOPLE_DOCUMENT["columns"],
        "pid": {"type": "int", "private_id": True, "nullable": False},
    },
}
PEOPLE = DatasetMetadata.from_dict(PEOPLE_METADATA)


def _narrowed(table: pa.Table) -> pa.Table:
    """The same rows stored as writers often store them: 32-bit numbers, dictionary strings,
    column names in another case. Every one widens to the metadata's type without failing."""
    columns, names = [], []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_integer(field.type):
            column = pc.cast(column, pa.int32())
        elif pa.types.is_floating(field.type):
            column = pc.cast(column, pa.float32())
        elif pa.types.is_string(field.type):
            column = pc.dictionary_encode(column)
        columns.append(column)
        names.append(field.name.upper())
    return pa.table(columns, names=names)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scan")
    for name, metadata in METADATA.items():
        table = _narrowed(to_arrow(load_sample(name, metadata), metadata))
        pq.write_table(table, folder / f"{name}.parquet", row_group_size=100)
    people = people_rows(3, most=5)
    people.to_parquet(folder / "people.parquet")
    return folder


def _loaded(path: Path, metadata: DatasetMetadata) -> pa.Table:
    """What the cache would hold for the same file."""
    return conformed_table(pq.read_table(path), metadata)


@pytest.mark.parametrize(("name", "metadata", "sql"), AGREEMENT_CASES)
def test_a_scanned_file_gives_the_exact_aggregates_of_the_loaded_one(files, name, metadata, sql):
    path = files / f"{name}.parquet"
    scan = plan_scan(LocalFileSource(path), metadata)
    assert isinstance(scan, ParquetScan)
    numbers = metadata.booleans_as_numbers
    scanned = exact_aggregates(DuckDBReader(scan, as_numbers=numbers), metadata, sql)
    loaded = DuckDBReader(_loaded(path, metadata), as_numbers=numbers)
    assert scanned == exact_aggregates(loaded, metadata, sql)


def test_the_reservoir_bounds_contributions_on_a_scan(files):
    scan = plan_scan(LocalFileSource(files / "people.parquet"), PEOPLE)
    (row,) = exact_aggregates(DuckDBReader(scan), PEOPLE, "SELECT COUNT(*) AS n FROM df")
    assert row[0] == bounded_count(pd.read_parquet(files / "people.parquet"))


def test_the_polars_scan_reads_the_rows_the_cache_would_hold(files):
    path = files / "titanic.parquet"
    scan = plan_scan(LocalFileSource(path), TITANIC)
    scanned = scan.lazy_frame().collect()
    loaded = pl.from_arrow(plain_strings(_loaded(path, TITANIC)))
    assert scanned.schema == loaded.schema
    assert scanned.equals(loaded)


def test_a_file_on_s3_is_scanned_without_downloading_it(files, s3):
    bucket = f"scan-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    s3.client().put_object(
        Bucket=bucket, Key="p/penguin.parquet", Body=(files / "penguin.parquet").read_bytes()
    )
    scan = plan_scan(S3Source(bucket, "p/penguin.parquet", **s3.options()), PENGUIN)
    assert isinstance(scan, ParquetScan)
    for name, metadata, sql in AGREEMENT_CASES:
        if name == "penguin":
            expected = exact_aggregates(
                DuckDBReader(_loaded(files / "penguin.parquet", metadata)), metadata, sql
            )
            assert exact_aggregates(DuckDBReader(scan), metadata, sql) == expected
    loaded = pl.from_arrow(plain_strings(_loaded(files / "penguin.parquet", PENGUIN)))
    assert scan.lazy_frame().collect().equals(loaded)


@pytest.mark.parametrize(
    ("column", "stored"),
    [
        ("int", pa.array(["1", "2"])),  # text holding numbers: the loader's rules decide
        ("int", pa.array([1.0, 2.0])),  # floats that might have fractions
        ("int", pa.array([1, 2], pa.uint64())),  # may not fit a signed 64-bit integer
        ("datetime", pa.array([0, 1], pa.timestamp("us", tz="Europe/Zurich"))),
        # dates and coarse units can hold years past a microsecond timestamp's range
        ("datetime", pa.array([0, 2**31 - 10], pa.date32())),
        ("datetime", pa.array([0, 2**62], pa.timestamp("ms"))),
        # text that is not UTF-8: DuckDB's and Polars' readers refuse the one row
        ("string", pa.array([b"ok", b"\xff\xfe"], pa.binary()).view(pa.string())),
        ("boolean", pa.array([1, 0])),
    ],
)
def test_a_file_whose_types_need_converting_is_loaded_not_scanned(tmp_path, column, stored):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"v": stored}), path)
    metadata = DatasetMetadata.from_dict({"row_privacy": True, "columns": {"v": {"type": column}}})
    assert plan_scan(LocalFileSource(path), metadata) is None


@pytest.mark.parametrize("statistics", [True, False])
def test_rows_without_an_id_are_refused_when_added_and_left_out_of_scans(tmp_path, statistics):
    path = tmp_path / "x.parquet"
    pq.write_table(
        pa.table(
            {
                "pid": pa.array([1, 2, None, 4]),
                "kind": ["a", "b", "a", "b"],
                "x": [1.0, float("nan"), 2.0, 3.0],
            }
        ),
        path,
        write_statistics=statistics,
        row_group_size=2,
    )
    with pytest.raises(DatasetUnavailable, match="'pid' is the person id"):
        plan_scan(LocalFileSource(path), PEOPLE, strict=True)
    scan = plan_scan(LocalFileSource(path), PEOPLE)
    reader = DuckDBReader(scan)
    assert reader.execute("SELECT COUNT(*), COUNT(x) FROM df")[1] == (3, 2)  # NaN is missing
    frame = scan.lazy_frame().collect()
    assert frame["pid"].to_list() == [1, 2, 4] and frame["x"].null_count() == 1


def test_a_missing_column_is_named(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"pid": [1], "kind": ["a"]}), path)
    with pytest.raises(DatasetUnavailable, match="no column.* x declared"):
        plan_scan(LocalFileSource(path), PEOPLE)


# -- the service: scanned datasets never enter the cache ------------------------------------


@pytest.fixture
def service(tmp_path):
    """The real analyst service on its own SQLite store, scanning every Parquet dataset."""
    store = open_store(f"sqlite:///{tmp_path / 'admin.sqlite'}")
    analyst, thread = analyst_service(store, DatasetCache(max_bytes=10**9, scan_above_bytes=0))
    yield AdminService(store), analyst
    thread.close()


def test_the_service_answers_from_the_scan_and_caches_nothing(files, service):
    admin, analyst = service
    admin.add_dataset(
        "PENGUIN", files / "penguin.parquet", sample_metadata("penguin"), max_query=(50.0, 1e-3)
    )
    admin.add_user("ana")
    admin.grant("ana", "PENGUIN", 100.0, 1e-3)
    query = "SELECT species, COUNT(*) AS n FROM df GROUP BY species"
    reply = analyst.release("ana", "PENGUIN", SqlRequest(query, 50.0, 0.0))
    counts = dict(reply["result"]["data"])
    truth = load_sample("penguin", PENGUIN)["species"].value_counts()
    assert all(abs(counts[k] - truth[k]) <= 1 for k in truth.index)
    opendp = analyst.release(
        "ana",
        "PENGUIN",
        OpenDPRequest(
            {"aggregates": [{"op": "count"}, {"op": "mean", "column": "bill_length_mm"}]},
            Noise("laplace", budget=40.0),
        ),
    )
    ((count, mean),) = opendp["result"]["data"]
    assert abs(count - len(load_sample("penguin", PENGUIN))) <= 2
    assert abs(mean - load_sample("penguin", PENGUIN)["bill_length_mm"].mean()) < 1.0
    assert analyst.cache.loads == 0 and analyst.cache.nbytes == 0


def test_a_file_that_needs_converting_is_loaded_into_the_cache(tmp_path, service):
    admin, analyst = service
    path = tmp_path / "text.parquet"
    pq.write_table(pa.table({"v": ["1", "2", "3"]}), path)
    admin.add_dataset(
        "TEXT",
        path,
        {
            "row_privacy": True,
            "rows": 3,
            "columns": {"v": {"type": "int", "lower": 0, "upper": 5}},
        },
    )
    admin.add_user("ana")
    admin.grant("ana", "TEXT", 10.0, 0.0)
    analyst.release("ana", "TEXT", SqlRequest("SELECT COUNT(*) AS n FROM df", 1.0, 0.0))
    assert analyst.cache.loads == 1


# -- over HTTP: a server that scans, and files that change under it -------------------------


@pytest.fixture(scope="module")
def scanning_server(store_path, shared_dir):
    server = ServerProcess(
        store_path,
        shared_dir,
        extra_args=("--LomasServerApp.scan_parquet_above_bytes=0",),
    ).start()
    yield server
    server.stop()


def test_rows_without_an_id_appearing_later_are_left_out(
    tmp_path, admin, make_user, scanning_server
):
    path = tmp_path / "people.parquet"
    clean = {"pid": [1, 2, 3], "kind": ["a", "b", "a"], "x": [1.0, 2.0, 3.0]}
    pq.write_table(pa.table(clean), path)
    name = f"SCAN{uuid.uuid4().hex[:6]}"
    admin.add_dataset(name, path, PEOPLE_METADATA)
    user = make_user(**{name: (10.0, 1e-4)})
    api = Api(scanning_server.api, user.token)
    first = api.sql(name, "SELECT kind, COUNT(*) AS n FROM df GROUP BY kind", 1.0, 1e-5)
    assert first.status_code == 200, first.text
    spent = api.get(f"/datasets/{name}/budget").json()["spent"]
    assert spent == {"epsilon": 2.0, "delta": 1e-5}  # the count, and the count of people
    # The file changes under the server: a row without a person id. No one's contribution can
    # be bounded for it, so it is left out, and the query answers as for any other data.
    pq.write_table(pa.table({**clean, "pid": [1, None, 3]}), path)
    reply = api.sql(name, "SELECT COUNT(*) AS n FROM df", 8.0)
    assert reply.status_code == 200, reply.text
    assert abs(reply.json()["result"]["data"][0][0] - 2) <= 2  # noise of scale 1/4


def test_nested_and_undeclared_columns_neither_hide_nulls_nor_count_as_size(tmp_path):
    path = tmp_path / "x.parquet"
    rows = 1000
    pq.write_table(
        pa.table(
            {
                "extra": pa.array([{"a": i, "b": "long text " * 5} for i in range(rows)]),
                "pid": pa.array([1] * (rows - 1) + [None]),
                "kind": ["a"] * rows,
                "x": [1.0] * rows,
            }
        ),
        path,
    )
    with pytest.raises(DatasetUnavailable, match="'pid' is the person id"):
        plan_scan(LocalFileSource(path), PEOPLE, strict=True)
    pq.write_table(
        pq.read_table(path).drop_columns(["pid"]).append_column("pid", pa.array(range(rows))), path
    )
    scan = plan_scan(LocalFileSource(path), PEOPLE)
    whole = pq.ParquetFile(path).metadata.row_group(0).total_byte_size
    assert 0 < scan.nbytes < whole / 2  # the wide undeclared column is not counted
