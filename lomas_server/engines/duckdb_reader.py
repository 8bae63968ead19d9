"""A SmartNoise-SQL reader that runs the exact-aggregation SQL on DuckDB.

SmartNoise-SQL rewrites a query into an inner query of exact aggregates (with clamping and,
for datasets with several rows per person, per-person reservoir sampling) and adds the noise
itself. That inner query is where nearly all the time goes; the pandas reader first copies the
whole dataset into SQLite, per reader. Here the inner query runs on DuckDB over the cached
Arrow table, registered without a copy, in SmartNoise-SQL's PostgreSQL dialect, which DuckDB
speaks, with one part written for DuckDB: the reservoir.

SmartNoise-SQL keeps at most ``max_ids`` rows per person, a uniformly random subset, with
``ROW_NUMBER() OVER (PARTITION BY person ORDER BY RANDOM())``. DuckDB refuses a volatile
``ORDER BY`` in a window, and ranking every row is most of the query's time. So: people with at
most ``max_ids`` rows keep them all (what the ranking would keep anyway), and only the rows of
people with more are ranked, by a random key drawn as a column. The rows kept are distributed
exactly as SmartNoise-SQL's (tests compare the two).
"""

from __future__ import annotations

import copy
import os
import queue
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

from lomas_server.column_spec import ColumnSpec
from lomas_server.engines.engine_thread import interruptible
from lomas_server.engines.snsql_adapter import (
    AliasedSubquery,
    BareFunction,
    BooleanCompare,
    Engine,
    Literal,
    Query,
    RankingFunction,
    Sql,
    SqlReader,
    Token,
)
from lomas_server.readable import PARQUET_SCAN, reads_as

TABLE = "df"
SOURCE = "lomas_described"  # the rows as described, when ``df`` adds booleans as numbers
RANDOM_COLUMN = "lomas_reservoir_key"
RESERVOIR = "per_key_random"  # SmartNoise-SQL's name for the sampled relation


class DuckDBDialect(SqlReader):
    """SmartNoise-SQL's PostgreSQL dialect, with the reservoir written for DuckDB."""

    ENGINE = Engine.POSTGRES  # SmartNoise-SQL's dialect for the SQL it writes

    def __init__(self) -> None:
        super().__init__(self.ENGINE)

    def _execute_ast(self, query: Any, *ignore: Any, accuracy: bool = False) -> Any:
        return super()._execute_ast(reservoir_for_duckdb(query), accuracy=accuracy)


class DuckDBReader(DuckDBDialect):
    """Queries on one dataset's rows, several at once: each runs on an in-memory DuckDB
    database of its own, over the same rows (registered, not copied), outside Python's lock.
    A database each, not a cursor each, so that every query has the whole memory limit, as
    when they ran one at a time."""

    def __init__(
        self,
        table: Any,
        *,
        memory_limit_bytes: int | None = None,
        threads: int | None = None,
        as_numbers: Mapping[str, ColumnSpec] | None = None,
    ) -> None:
        """``table``: a pyarrow Table (read in place), a ParquetScan (read from the file as
        each query runs), or anything else DuckDB can register. ``memory_limit_bytes``: what
        DuckDB may hold before spilling to disk (its own default: most of the machine).
        ``threads``: how many threads one query may use (its own default: every core).
        ``as_numbers``: boolean columns also shown as numbers
        (``DatasetMetadata.booleans_as_numbers``)."""
        import duckdb

        super().__init__()
        self._table = table
        self._as_numbers = dict(as_numbers or {})
        # Settings given when a database is made (DuckDB refuses to set the spill folder
        # again once something has spilled).
        config: dict[str, Any] = {
            # Spill to the system's temporary folder, not to the server's working directory.
            "temp_directory": os.path.join(tempfile.gettempdir(), f"lomas-duckdb-{os.getpid()}")
        }
        if memory_limit_bytes is not None:
            config["memory_limit"] = f"{int(memory_limit_bytes)}B"
        if threads is not None:
            config["threads"] = int(threads)
        if reads_as(table) == PARQUET_SCAN:
            # Streaming from the file: row order is irrelevant to aggregates, and not keeping
            # it lets DuckDB hold less in memory.
            config["preserve_insertion_order"] = False
            # Parquet statistics leave NaN out of a column's min and max, and DuckDB's
            # statistics propagation trusts them: it folds isnan(x) to false and the clamping
            # CASE to x itself, so a NaN would reach a sum unclamped. Without it, every row
            # is tested.
            config["disabled_optimizers"] = "statistics_propagation"
        self._config = config
        self._connect = duckdb.connect
        # Databases set up and free for the next query.
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False

    def _new_connection(self) -> Any:
        return self._prepared(self._connect(":memory:", config=self._config))

    def _prepared(self, cursor: Any) -> Any:
        name = SOURCE if self._as_numbers else TABLE
        if reads_as(self._table) == PARQUET_SCAN:
            self._table.register_in(cursor, name)
        else:
            cursor.register(name, self._table)
        if self._as_numbers:
            # A view: DuckDB computes the numbers as it reads, nothing is copied.
            numbers = ", ".join(
                f'CAST("{boolean}" AS INTEGER) AS "{number.name}"'
                for boolean, number in self._as_numbers.items()
            )
            cursor.execute(f"CREATE TEMP VIEW {TABLE} AS SELECT *, {numbers} FROM {SOURCE}")
        return cursor

    def execute(self, query: str, *ignore: Any, accuracy: bool = False) -> list[tuple[Any, ...]]:
        try:
            cursor = self._idle.get_nowait()
        except queue.Empty:
            cursor = None
        # The stop of a job that passed its limit interrupts this query only: never the
        # database once it is back in the pool, running someone else's.
        running = threading.Lock()
        active = True

        def interrupt() -> None:
            with running:
                if active and cursor is not None:
                    cursor.interrupt()

        try:
            with interruptible(interrupt):
                if cursor is None:
                    cursor = self._new_connection()
                result = cursor.execute(query)
                names = tuple(d[0] for d in result.description)
                rows = [names, *result.fetchall()]
        except BaseException:
            # Interrupted or failed: a database in an unknown state is not reused.
            if cursor is not None:
                cursor.close()
            raise
        with running:
            active = False
        if self._closed:
            cursor.close()
        else:
            self._idle.put(cursor)
        return rows

    def close(self) -> None:
        """Close the free databases now, those running a query when it ends."""
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class ExactAggregates(DuckDBDialect):
    """The rows one exact-aggregation statement gave, run earlier (off the engine thread):
    SmartNoise-SQL gets them when it asks for that very statement, and nothing else."""

    def __init__(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        super().__init__()
        self._sql = sql
        self._rows = rows

    def execute(self, query: str, *ignore: Any, accuracy: bool = False) -> list[tuple[Any, ...]]:
        if query != self._sql:
            raise RuntimeError("the exact aggregation differs from the one that was run")
        return self._rows


class Recorded(Exception):
    """Raised by ``StatementRecorder`` with the statement SmartNoise-SQL sent it."""

    def __init__(self, statement: str) -> None:
        super().__init__(statement)
        self.statement = statement


class StatementRecorder(DuckDBDialect):
    """Stops SmartNoise-SQL at the statement it sends to read the rows, which it raises as
    ``Recorded``: nothing runs, nothing is drawn."""

    def execute(self, query: str, *ignore: Any, accuracy: bool = False) -> list[tuple[Any, ...]]:
        raise Recorded(query)


class _Text(Sql):
    """A piece of SQL written here rather than by SmartNoise-SQL's serializer."""

    def __init__(self, text: str) -> None:
        self.text = text

    def children(self) -> list[Any]:
        return [Token(self.text)]


def reservoir_for_duckdb(query: Query) -> Query:
    """Replace SmartNoise-SQL's reservoir subquery with the DuckDB form (see the module doc)."""
    found = _reservoir(query)
    if found is None:
        return query
    query = copy.deepcopy(query)
    parent, relation, limit = _reservoir(query)  # type: ignore[misc]
    sampled = relation.query
    ranking = next(r for r in sampled.find_nodes(RankingFunction) if _orders_by_random(r))
    person = str(ranking.over.partition)
    below = sampled.source.relations[0].primary  # SmartNoise-SQL's clamped rows
    relation.query = _Text(
        f"WITH lomas_rows AS ({below.query}), "
        # A missing id would make NOT IN false for every row: such rows never reach here
        # (they are left out when the rows are read), and are kept out again for certain.
        f"lomas_heavy AS (SELECT {person} FROM lomas_rows WHERE {person} IS NOT NULL "
        f"GROUP BY {person} HAVING COUNT(*) > {limit}) "
        f"SELECT *, 1 AS row_num FROM lomas_rows WHERE {person} IS NOT NULL "
        f"AND {person} NOT IN (SELECT {person} FROM lomas_heavy) "
        f"UNION ALL "
        f"SELECT * EXCLUDE ({RANDOM_COLUMN}), ROW_NUMBER() OVER (PARTITION BY {person} ORDER BY {RANDOM_COLUMN}) "
        f"AS row_num FROM (SELECT *, RANDOM() AS {RANDOM_COLUMN} FROM lomas_rows "
        f"WHERE {person} IN (SELECT {person} FROM lomas_heavy)) AS lomas_ranked"
    )
    return query


def _reservoir(query: Query) -> tuple[Query, AliasedSubquery, int] | None:
    """The query reading SmartNoise-SQL's reservoir, the reservoir relation and max_ids."""
    for node in [query, *query.find_nodes(Query)]:
        if node.source is None:
            continue
        for relation in node.source.relations:
            primary = relation.primary
            if not (isinstance(primary, AliasedSubquery) and str(primary.alias) == RESERVOIR):
                continue
            if not isinstance(primary.query, Query) or not any(
                _orders_by_random(r) for r in primary.query.find_nodes(RankingFunction)
            ):
                continue
            limit = _row_limit(node)
            if limit is not None:
                return node, primary, limit
    return None


def _row_limit(node: Query) -> int | None:
    """max_ids, from SmartNoise-SQL's ``WHERE per_key_random.row_num <= k``."""
    condition = node.where.condition if node.where is not None else None
    if (
        isinstance(condition, BooleanCompare)
        and str(condition.op) == "<="
        and str(condition.left).endswith("row_num")
        and isinstance(condition.right, Literal)
        and isinstance(condition.right.value, int)
    ):
        return condition.right.value
    return None


def _orders_by_random(ranking: RankingFunction) -> bool:
    order = ranking.over.order if ranking.over is not None else None
    if order is None:
        return False
    return any(
        isinstance(item.expression, BareFunction) and str(item.expression.name).upper() == "RANDOM"
        for item in order.sortItems
    )
