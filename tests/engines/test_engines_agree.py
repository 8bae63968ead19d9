"""DuckDB under SmartNoise-SQL computes the same exact aggregates as SmartNoise-SQL's own
pandas reader: NULLs, empty groups, filters, booleans, several rows per person."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import snsql
from snsql.sql.private_reader import PrivateReader
from snsql.sql.reader.pandas import PandasReader

from lomas_server.datasets import conform_to_metadata, conformed_table, to_arrow
from lomas_server.engines.duckdb_reader import DuckDBReader
from lomas_server.engines.sql_guard import guard_query
from lomas_server.metadata import DatasetMetadata
from tests.conftest import SAMPLE_DATA, sample_metadata

PENGUIN = DatasetMetadata.from_dict(sample_metadata("penguin"))
TITANIC = DatasetMetadata.from_dict(sample_metadata("titanic"))


def load_sample(name: str, metadata: DatasetMetadata) -> pd.DataFrame:
    return conform_to_metadata(pd.read_csv(SAMPLE_DATA / f"{name}.csv", dtype=str), metadata)


def exact_aggregates(reader, metadata: DatasetMetadata, sql: str) -> list[tuple]:
    """The inner, noise-free query SmartNoise-SQL sends to a reader, and its rows."""
    document = {"": {"": {"df": metadata.smartnoise_table()}}}
    private = PrivateReader(reader, document, privacy=snsql.Privacy(epsilon=1.0, delta=1e-5))
    subquery, _ = private._rewrite(guard_query(sql, metadata, "X").sql)
    rows = reader._execute_ast(subquery)[1:]
    return sorted((tuple(_plain(v) for v in row) for row in rows), key=repr)


def _plain(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), 6)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return value


# Queries whose exact aggregates every engine must compute alike: NULL groups, COUNT(col)
# that skips NULLs, filters that empty groups or everything, booleans, several keys.
AGREEMENT_CASES = [
    ("penguin", PENGUIN, "SELECT COUNT(*) AS n FROM df"),
    (
        "penguin",
        PENGUIN,
        "SELECT species, COUNT(*) AS n, SUM(body_mass_g) AS s, AVG(bill_length_mm) AS a FROM df GROUP BY species",
    ),
    # sex holds NULLs: a NULL group, and COUNT(col) that skips them
    (
        "penguin",
        PENGUIN,
        "SELECT sex, COUNT(bill_depth_mm) AS n, VAR(flipper_length_mm) AS v FROM df GROUP BY sex",
    ),
    # a filter that empties some groups entirely
    (
        "penguin",
        PENGUIN,
        "SELECT island, COUNT(*) AS n FROM df WHERE species = 'Gentoo' GROUP BY island",
    ),
    (
        "penguin",
        PENGUIN,
        "SELECT COUNT(*) AS n FROM df WHERE species IN ('Nobody') AND bill_length_mm > 40.5",
    ),
    (
        "penguin",
        PENGUIN,
        "SELECT species, island, STDDEV(bill_depth_mm) AS s FROM df WHERE sex IS NOT NULL GROUP BY species, island",
    ),
    (
        "titanic",
        TITANIC,
        "SELECT Sex, Pclass, COUNT(*) AS n, AVG(Age) AS a, SUM(Fare) AS f FROM df GROUP BY Sex, Pclass",
    ),
    (
        "titanic",
        TITANIC,
        "SELECT Survived, COUNT(*) AS n FROM df WHERE NOT Survived OR Age BETWEEN 10 AND 30 GROUP BY Survived",
    ),
    (
        "titanic",
        TITANIC,
        "SELECT COUNT(*) AS n, SUM(SibSp) AS s FROM df WHERE Name <> 'x' AND Parch >= 1",
    ),
    # a boolean in parentheses: Spark once read "df WHERE (Survived)" as an alias of df
    ("titanic", TITANIC, "SELECT Pclass, COUNT(*) AS n FROM df WHERE (Survived) GROUP BY Pclass"),
    # booleans add up as 1 and 0: a survival rate, a count of survivors, their spread
    (
        "titanic",
        TITANIC,
        "SELECT Sex, AVG(Survived) AS rate, SUM(t.Survived) AS n FROM df AS t GROUP BY Sex",
    ),
    (
        "titanic",
        TITANIC,
        "SELECT Pclass, VAR(Survived) AS v FROM df WHERE Age > 30 GROUP BY Pclass",
    ),
]


@pytest.mark.parametrize(("name", "metadata", "sql"), AGREEMENT_CASES)
def test_duckdb_and_pandas_readers_agree(name, metadata, sql):
    frame = load_sample(name, metadata)
    document = {"": {"": {"df": metadata.smartnoise_table()}}}
    # SmartNoise-SQL's own reader sees each boolean's number as a column of its own.
    with_numbers = frame.assign(
        **{n.name: frame[b].astype("Int64") for b, n in metadata.booleans_as_numbers.items()}
    )
    pandas_rows = exact_aggregates(PandasReader(with_numbers, document), metadata, sql)
    # What the cache holds: text with few distinct values as dictionaries.
    cached = conformed_table(frame, metadata)
    assert any(pa.types.is_dictionary(t) for t in cached.schema.types)
    numbers = metadata.booleans_as_numbers
    duckdb_rows = exact_aggregates(DuckDBReader(cached, as_numbers=numbers), metadata, sql)
    assert duckdb_rows == pandas_rows
    plain = exact_aggregates(
        DuckDBReader(to_arrow(frame, metadata), as_numbers=numbers), metadata, sql
    )
    assert plain == pandas_rows


# Several rows per person (a private_id column), for contribution bounds with max_ids > 1.
PEOPLE_DOCUMENT = {
    "max_ids": 2,
    "row_privacy": False,
    "columns": {
        "pid": {"type": "int", "private_id": True},
        "kind": {"type": "string", "categories": ["a", "b"]},
        "x": {"type": "float", "lower": 0.0, "upper": 10.0},
    },
}
PEOPLE = DatasetMetadata.from_dict(PEOPLE_DOCUMENT)


def people_rows(seed: int, people: int = 200, most: int = 4) -> pd.DataFrame:
    """Each of ``people`` persons owns 1 to ``most`` rows."""
    rng = np.random.default_rng(seed)
    owners = np.repeat(np.arange(people), rng.integers(1, most + 1, people))
    return pd.DataFrame(
        {
            "pid": owners,
            "kind": rng.choice(["a", "b"], len(owners)),
            "x": rng.uniform(0, 10, len(owners)).round(3),
        }
    )


def bounded_count(rows: pd.DataFrame, max_ids: int = 2) -> int:
    """How many rows remain when each person keeps at most ``max_ids``."""
    return int(rows.groupby("pid").size().clip(upper=max_ids).sum())


@pytest.fixture(scope="module")
def people():
    return conform_to_metadata(people_rows(3).astype(str), PEOPLE), PEOPLE


def test_reservoir_keeps_at_most_max_ids_rows_per_person_on_duckdb(people):
    frame, metadata = people
    expected = bounded_count(frame)
    for _ in range(3):  # a fresh random draw each time, the same number of rows
        (row,) = exact_aggregates(
            DuckDBReader(to_arrow(frame, metadata)), metadata, "SELECT COUNT(*) AS n FROM df"
        )
        assert row[0] == expected
    (pandas_row,) = exact_aggregates(
        PandasReader(frame, {"": {"": {"df": metadata.smartnoise_table()}}}),
        metadata,
        "SELECT COUNT(*) AS n FROM df",
    )
    assert pandas_row[0] == expected


def test_the_reservoir_ranks_only_people_with_more_rows_than_max_ids(people):
    frame, metadata = people
    reader = DuckDBReader(to_arrow(frame, metadata))
    document = {"": {"": {"df": metadata.smartnoise_table()}}}
    private = PrivateReader(reader, document, privacy=snsql.Privacy(epsilon=1.0))
    subquery, _ = private._rewrite("SELECT kind, SUM(x) AS s FROM df GROUP BY kind")
    from lomas_server.engines.duckdb_reader import RANDOM_COLUMN, reservoir_for_duckdb

    rewritten = str(reservoir_for_duckdb(subquery))
    assert "ORDER BY RANDOM" not in rewritten
    assert f"ORDER BY {RANDOM_COLUMN}" in rewritten and "HAVING COUNT(*) > 2" in rewritten
    assert "ORDER BY RANDOM ( )" in str(subquery)  # the original is left untouched


def test_the_reservoir_samples_uniformly(people):
    """Within a person with more rows than max_ids, every row is kept equally often."""
    frame, metadata = people
    heavy = frame.groupby("pid").size()
    person = int(heavy[heavy == 4].index[0])
    rows = frame[frame["pid"] == person].reset_index(drop=True)
    rows["x"] = [1.0, 2.0, 4.0, 8.0]  # the sum tells which two rows were kept
    reader = DuckDBReader(to_arrow(rows, metadata))
    document = {"": {"": {"df": metadata.smartnoise_table()}}}
    private = PrivateReader(reader, document, privacy=snsql.Privacy(epsilon=1.0))
    subquery, _ = private._rewrite("SELECT SUM(x) AS s FROM df")
    seen: dict[float, int] = {}
    for _ in range(600):
        total = reader._execute_ast(subquery)[1][0]
        seen[total] = seen.get(total, 0) + 1
    assert set(seen) == {3.0, 5.0, 9.0, 6.0, 10.0, 12.0}  # all 6 pairs of the 4 rows
    assert min(seen.values()) > 60  # each about 100 times out of 600


def test_rows_without_a_person_id_never_empty_the_reservoir():
    """More rows without an id than max_ids once made DuckDB's reservoir keep nobody at all
    (NOT IN a list holding NULL is never true). Such rows never reach it now (they are left
    out when the data is read), and the reservoir keeps them out again on its own."""
    rows = pd.DataFrame({"pid": [None] * 5 + list(range(10)), "kind": ["a"] * 15, "x": [1.0] * 15})
    table = pa.table(
        {
            "pid": pa.array(rows["pid"], type=pa.int64(), from_pandas=True),
            "kind": pa.array(rows["kind"]),
            "x": pa.array(rows["x"]),
        }
    )
    (row,) = exact_aggregates(DuckDBReader(table), PEOPLE, "SELECT COUNT(*) AS n FROM df")
    assert row[0] == 10
    (row,) = exact_aggregates(
        DuckDBReader(conformed_table(table, PEOPLE)), PEOPLE, "SELECT COUNT(*) AS n FROM df"
    )
    assert row[0] == 10
