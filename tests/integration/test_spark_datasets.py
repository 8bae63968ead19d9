"""Datasets read by Apache Spark (local mode, with the machine's Java): SmartNoise-SQL's exact
aggregates computed by Spark agree with DuckDB's, and the server answers from them."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from lomas_server.datasets import conform_to_metadata, to_arrow
from lomas_server.datasets.sources import SparkSource
from lomas_server.engines.duckdb_reader import DuckDBReader
from lomas_server.engines.spark_reader import SparkTableReader
from lomas_server.errors import DatasetUnavailable
from lomas_server.metadata import DatasetMetadata
from lomas_server.spark_session import file_listing
from tests.conftest import SAMPLE_DATA, sample_metadata
from tests.engines.test_engines_agree import PEOPLE, bounded_count, exact_aggregates, people_rows

PENGUIN = DatasetMetadata.from_dict(sample_metadata("penguin"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spark")
    penguins = conform_to_metadata(pd.read_csv(SAMPLE_DATA / "penguin.csv", dtype=str), PENGUIN)
    pq.write_table(to_arrow(penguins, PENGUIN), folder / "penguins.parquet")
    people = people_rows(7, people=100)
    people.to_parquet(folder / "people.parquet")
    pd.DataFrame({"species": [1, 2]}).to_parquet(folder / "wrong.parquet")
    return folder, penguins, people


# Exact aggregates on the sample queries: tests/engines/test_every_engine.py.


def test_reservoir_runs_on_spark_too(files):
    folder, _, people = files
    reader = SparkTableReader(SparkSource(str(folder / "people.parquet")), PEOPLE)
    (row,) = exact_aggregates(reader, PEOPLE, "SELECT COUNT(*) AS n FROM df")
    assert row[0] == bounded_count(people)


def test_spark_dataset_through_the_server(files, admin, make_user):
    folder, penguins, _ = files
    name = f"SP{uuid.uuid4().hex[:6]}"
    admin.add_dataset(name, folder / "penguins.parquet", sample_metadata("penguin"), engine="spark")
    user = make_user(**{name: (20.0, 0.0)})
    reply = user.api.sql(name, "SELECT species, COUNT(*) AS n FROM df GROUP BY species", 10.0)
    assert reply.status_code == 200, reply.text
    counts = dict(reply.json()["result"]["data"])
    truth = penguins["species"].value_counts()
    assert all(abs(counts[k] - truth[k]) <= 3 for k in truth.index)


def test_parquet_types_must_match_the_metadata(files, admin):
    folder, _, _ = files
    with pytest.raises(DatasetUnavailable, match="not a type for string"):
        admin.add_dataset(
            f"W{uuid.uuid4().hex[:6]}",
            folder / "wrong.parquet",
            {"row_privacy": True, "columns": {"species": {"type": "string"}}},
            engine="spark",
        )


def test_a_folder_of_parts_is_one_dataset_whose_version_follows_its_files(files):
    folder, penguins, _ = files
    parts = folder / "parts"
    parts.mkdir()
    half = len(penguins) // 2
    table = to_arrow(penguins, PENGUIN)
    pq.write_table(table.slice(0, half), parts / "part-0.parquet")
    pq.write_table(table.slice(half), parts / "part-1.parquet")
    source = SparkSource(str(parts))
    source.check_columns({name: spec.type for name, spec in PENGUIN.columns.items()})
    before = source.version()
    (row,) = exact_aggregates(
        SparkTableReader(source, PENGUIN), PENGUIN, "SELECT COUNT(*) AS n FROM df"
    )
    assert row[0] == len(penguins)
    pq.write_table(table.slice(0, 10), parts / "part-2.parquet")
    assert source.version() != before
    (row,) = exact_aggregates(
        SparkTableReader(source, PENGUIN), PENGUIN, "SELECT COUNT(*) AS n FROM df"
    )
    assert row[0] == len(penguins) + 10


def test_a_remote_dataset_is_versioned_by_the_files_spark_lists(files):
    """A dataset on a cluster's storage (hdfs://, s3a://) is listed through Spark's own file
    system. Here the same code lists a local folder by its file:// URI; the subclass only
    makes the source take the remote branch, the listing is Hadoop's, for real."""

    class OnClusterStorage(SparkSource):
        local = False

    folder, penguins, _ = files
    parts = folder / "remote-parts"
    parts.mkdir()
    table = to_arrow(penguins, PENGUIN)
    pq.write_table(table.slice(0, 100), parts / "part-0.parquet")
    (parts / "_SUCCESS").write_bytes(b"")
    source = OnClusterStorage(parts.as_uri())
    listed = file_listing(parts.as_uri())
    assert [Path(p).name for p, _, _ in listed] == ["part-0.parquet"]  # markers skipped
    first = source.version()
    assert source.version() == first  # stable while nothing changes: readers are reused
    pq.write_table(table.slice(100), parts / "part-1.parquet")
    assert source.version() != first
    with pytest.raises(DatasetUnavailable, match="cannot be listed"):
        OnClusterStorage((folder / "nothing-here").as_uri()).version()


def test_metadata_names_match_the_files_columns_whatever_their_case(files):
    folder, penguins, _ = files
    document = sample_metadata("penguin")
    document["columns"] = {name.title(): spec for name, spec in document["columns"].items()}
    metadata = DatasetMetadata.from_dict(document)
    source = SparkSource(str(folder / "penguins.parquet"))
    source.check_columns({name: spec.type for name, spec in metadata.columns.items()})
    sql = "SELECT Species, COUNT(*) AS n FROM df GROUP BY Species"
    on_spark = exact_aggregates(SparkTableReader(source, metadata), metadata, sql)
    renamed = to_arrow(penguins.rename(columns=str.title), metadata)
    assert on_spark == exact_aggregates(DuckDBReader(renamed), metadata, sql)
