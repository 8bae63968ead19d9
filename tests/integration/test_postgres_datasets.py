"""Datasets that live in PostgreSQL: SmartNoise-SQL's exact aggregates run in the database
(a real PostgreSQL server on loopback) and agree with DuckDB's; failures cost nothing."""

from __future__ import annotations

import uuid

import pandas as pd
import psycopg
import pytest

from lomas_server.datasets import conform_to_metadata, to_arrow
from lomas_server.datasets.sources import PostgresSource
from lomas_server.engines.duckdb_reader import DuckDBReader
from lomas_server.engines.postgres_reader import PostgresTableReader
from lomas_server.errors import DatasetUnavailable
from lomas_server.metadata import DatasetMetadata
from tests.conftest import SAMPLE_DATA, sample_metadata
from tests.engines.test_engines_agree import PEOPLE, bounded_count, exact_aggregates, people_rows
from tests.servers import PostgresServer

PENGUIN = DatasetMetadata.from_dict(sample_metadata("penguin"))


@pytest.fixture(scope="module")
def postgres(postgres_server):
    server = postgres_server
    penguins = conform_to_metadata(pd.read_csv(SAMPLE_DATA / "penguin.csv", dtype=str), PENGUIN)
    people = people_rows(5, people=100)
    with psycopg.connect(server.dsn, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE penguins (species text, island text, bill_length_mm double precision, "
            "bill_depth_mm double precision, flipper_length_mm double precision, "
            "body_mass_g double precision, sex text)"
        )
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO penguins VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    tuple(None if pd.isna(v) else v for v in row)
                    for row in penguins.itertuples(index=False)
                ],
            )
        connection.execute("CREATE TABLE people (pid bigint, kind text, x double precision)")
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO people VALUES (%s, %s, %s)",
                [tuple(r) for r in people.itertuples(index=False)],
            )
        connection.execute("CREATE TABLE wrong (species integer)")
    yield server, penguins, people


# Exact aggregates on the sample queries: tests/engines/test_every_engine.py.


def test_reservoir_runs_in_postgres_too(postgres):
    server, _, people = postgres
    (row,) = exact_aggregates(
        PostgresTableReader(PostgresSource(server.dsn, "people"), PEOPLE),
        PEOPLE,
        "SELECT COUNT(*) AS n FROM df",
    )
    assert row[0] == bounded_count(people)


def test_postgres_dataset_through_the_server(postgres, admin, make_user):
    server, penguins, _ = postgres
    name = f"PG{uuid.uuid4().hex[:6]}"
    # The test database trusts loopback, so the password is carried but never checked.
    dsn = server.dsn.replace("postgres@", "postgres:pg-SECRET@")
    admin.add_dataset(name, f"{dsn}?table=penguins", sample_metadata("penguin"))
    shown = admin.public_source(admin.store.get_dataset(name))["dsn"]
    assert "pg-SECRET" not in shown and shown == dsn.replace("pg-SECRET", "***")
    user = make_user(**{name: (20.0, 0.0)})
    reply = user.api.sql(name, "SELECT species, COUNT(*) AS n FROM df GROUP BY species", 10.0)
    assert reply.status_code == 200, reply.text
    counts = dict(reply.json()["result"]["data"])
    truth = penguins["species"].value_counts()
    assert all(abs(counts[k] - truth[k]) <= 3 for k in truth.index)
    opendp = user.api.post(
        f"/datasets/{name}/opendp", {"query": {"aggregates": [{"op": "count"}]}, "epsilon": 5.0}
    )
    assert opendp.status_code == 200 and abs(opendp.json()["result"]["data"][0][0] - 344) < 10


def test_table_types_must_match_the_metadata(postgres, admin):
    server, _, _ = postgres
    with pytest.raises(DatasetUnavailable, match="not a type for string"):
        admin.add_dataset(
            f"W{uuid.uuid4().hex[:6]}",
            f"{server.dsn}?table=wrong",
            {"row_privacy": True, "columns": {"species": {"type": "string"}}},
        )


def test_unreachable_database_is_503_and_spends_nothing(admin, make_user):
    name = f"PGX{uuid.uuid4().hex[:6]}"
    gone = PostgresServer().start()
    with psycopg.connect(gone.dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE t (species text)")
    admin.add_dataset(
        name,
        f"{gone.dsn}?table=t",
        {"row_privacy": True, "columns": {"species": {"type": "string"}}},
    )
    gone.stop()
    user = make_user(**{name: (5.0, 0.0)})
    reply = user.api.sql(name, "SELECT COUNT(*) AS n FROM df", 1.0)
    assert reply.status_code == 503 and "nothing was spent" in reply.json()["message"]
    assert user.api.get(f"/datasets/{name}/budget").json()["spent"]["epsilon"] == 0.0


def test_names_match_the_table_whatever_their_case(postgres, admin, make_user):
    """Unquoted names in PostgreSQL are lower case; an admin writes ``Species`` and
    ``PENGUINS`` as the NSO's documentation spells them, and the same table answers."""
    server, penguins, _ = postgres
    document = sample_metadata("penguin")
    document["columns"] = {name.title(): spec for name, spec in document["columns"].items()}
    metadata = DatasetMetadata.from_dict(document)
    sql = "SELECT Species, COUNT(*) AS n, AVG(Bill_Length_Mm) AS a FROM df GROUP BY Species"
    source = PostgresSource(server.dsn, "PUBLIC.PENGUINS")
    source.check_columns({name: spec.type for name, spec in metadata.columns.items()})
    in_database = exact_aggregates(PostgresTableReader(source, metadata), metadata, sql)
    renamed = penguins.rename(columns=str.title)
    assert in_database == exact_aggregates(DuckDBReader(to_arrow(renamed, metadata)), metadata, sql)
    name = f"PGC{uuid.uuid4().hex[:6]}"
    admin.add_dataset(name, f"{server.dsn}?table=PENGUINS", document)
    user = make_user(**{name: (20.0, 0.0)})
    reply = user.api.sql(name, "SELECT Species, COUNT(*) AS n FROM df GROUP BY Species", 10.0)
    assert reply.status_code == 200, reply.text
