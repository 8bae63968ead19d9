"""Every SQL engine (DuckDB in memory, PostgreSQL and Spark in place) computes the same exact
aggregates for the same query, and through the server the allow-list, the refusals and the
data-independent outcomes are the same whichever engine holds the rows."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from lomas_server.datasets import to_arrow
from lomas_server.datasets.sources import PostgresSource, SparkSource
from lomas_server.engines.duckdb_reader import DuckDBReader
from lomas_server.engines.postgres_reader import PostgresTableReader
from lomas_server.engines.spark_reader import SparkTableReader
from lomas_server.metadata import DatasetMetadata
from tests.conftest import sample_metadata
from tests.engines.test_engines_agree import AGREEMENT_CASES, exact_aggregates, load_sample

POSTGRES_TYPES = {
    "int": "bigint",
    "float": "double precision",
    "string": "text",
    "boolean": "boolean",
    "datetime": "timestamp",
}
ENGINES = ["duckdb", "postgres", "spark"]


def _postgres_table(dsn: str, table: str, name: str, metadata: DatasetMetadata) -> None:
    """The conformed sample as a PostgreSQL table with the metadata's types."""
    rows = to_arrow(load_sample(name, metadata), metadata)
    columns = ", ".join(f'"{c}" {POSTGRES_TYPES[s.type]}' for c, s in metadata.columns.items())
    marks = ", ".join(["%s"] * len(metadata.columns))
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {table}")
        connection.execute(f"CREATE TABLE {table} ({columns})")
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} VALUES ({marks})",
                [tuple(row.values()) for row in rows.to_pylist()],
            )


@pytest.fixture(scope="module")
def places(postgres_server, tmp_path_factory):
    """Where each sample lives for each engine: (engine, sample) -> location."""
    folder: Path = tmp_path_factory.mktemp("every-engine")
    out: dict[tuple[str, str], str] = {}
    for name in ("penguin", "titanic"):
        metadata = DatasetMetadata.from_dict(sample_metadata(name))
        parquet = folder / f"{name}.parquet"
        pq.write_table(to_arrow(load_sample(name, metadata), metadata), parquet)
        table = f"every_{name}"
        _postgres_table(postgres_server.dsn, table, name, metadata)
        out["duckdb", name] = str(parquet)
        out["spark", name] = str(parquet)
        out["postgres", name] = f"{postgres_server.dsn}?table={table}"
    return out


def _reader(engine: str, location: str, name: str, metadata: DatasetMetadata):
    if engine == "postgres":
        dsn, _, table = location.partition("?table=")
        return PostgresTableReader(PostgresSource(dsn, table), metadata)
    if engine == "spark":
        return SparkTableReader(SparkSource(location), metadata)
    return DuckDBReader(
        to_arrow(load_sample(name, metadata), metadata), as_numbers=metadata.booleans_as_numbers
    )


@pytest.mark.parametrize("engine", ["postgres", "spark"])
@pytest.mark.parametrize(("name", "metadata", "sql"), AGREEMENT_CASES)
def test_exact_aggregates_agree_with_duckdb(places, engine, name, metadata, sql):
    in_place = exact_aggregates(
        _reader(engine, places[engine, name], name, metadata), metadata, sql
    )
    in_memory = exact_aggregates(_reader("duckdb", "", name, metadata), metadata, sql)
    assert in_place == in_memory


@pytest.fixture(scope="module")
def penguin_on(places, admin):
    """The penguin sample registered once per engine: engine -> dataset name."""
    names = {}
    for engine in ENGINES:
        name = f"EV{engine.upper()}{uuid.uuid4().hex[:4]}"
        admin.add_dataset(
            name,
            places[engine, "penguin"],
            sample_metadata("penguin"),
            engine="spark" if engine == "spark" else None,
        )
        names[engine] = name
    return names


REFUSED = [
    "SELECT SUM(body_mass_g / bill_length_mm) AS r FROM df",
    "SELECT COUNT(*) AS n FROM df WHERE bill_length_mm = 'long'",
    "SELECT sex, COUNT(*) AS n FROM df GROUP BY sex ORDER BY sex",
    "SELECT COUNT(*) AS n FROM df WHERE CAST(species AS INT) > 1",
    "SELECT species, COUNT(*) AS n FROM df GROUP BY species HAVING species = 'Adelie'",
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("sql", REFUSED)
def test_refusals_are_the_same_on_every_engine_and_cost_nothing(penguin_on, make_user, engine, sql):
    dataset = penguin_on[engine]
    user = make_user(**{dataset: (5.0, 0.0)})
    reply = user.api.sql(dataset, sql, 1.0)
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_query", reply.text
    assert user.api.get(f"/datasets/{dataset}/budget").json()["spent"]["epsilon"] == 0.0


# Queries at the edges of the data: a NULL group, a filter that keeps no row at all, a group
# emptied by its filter. Each must answer on every engine, with the same columns.
EDGES = [
    "SELECT sex, COUNT(bill_depth_mm) AS n, AVG(body_mass_g) AS m FROM df GROUP BY sex",
    "SELECT COUNT(*) AS n, AVG(bill_length_mm) AS a FROM df WHERE bill_length_mm > 1000",
    "SELECT island, COUNT(*) AS n FROM df WHERE species = 'Gentoo' GROUP BY island",
    "SELECT species, VAR(flipper_length_mm) AS v FROM df WHERE sex IS NULL GROUP BY species",
]


@pytest.mark.parametrize("sql", EDGES)
def test_edge_queries_answer_alike_on_every_engine(penguin_on, make_user, sql):
    columns = {}
    for engine in ENGINES:
        dataset = penguin_on[engine]
        user = make_user(**{dataset: (20.0, 0.0)})
        reply = user.api.sql(dataset, sql, 2.0)
        assert reply.status_code == 200, (engine, reply.text)
        columns[engine] = reply.json()["result"]["columns"]
    assert columns["postgres"] == columns["duckdb"] == columns["spark"]
