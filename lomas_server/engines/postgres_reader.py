"""A SmartNoise-SQL reader for datasets that live in a PostgreSQL table.

The exact-aggregation SQL that SmartNoise-SQL writes (its PostgreSQL dialect, reservoir
sampling included) runs in the database itself, on the admin's table instead of ``df``: no row
leaves the database, only the aggregates do.

SmartNoise-SQL writes column names unquoted, and PostgreSQL folds unquoted names to lower case:
a table created with a column ``"Sex"`` would not answer ``Sex``. So each connection reads the
table through a temporary view (``PostgresSource.rows_sql``) that names every metadata column in
lower case, whatever the case of the table's own column for it, and shapes the rows as every
engine does: NaN as missing, rows without a person id or a required value left out; boolean
columns are also shown as numbers (``DatasetMetadata.booleans_as_numbers``).
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from lomas_server.engines.duckdb_reader import TABLE
from lomas_server.engines.engine_thread import interruptible
from lomas_server.engines.snsql_adapter import Engine, Identifier, SqlReader, Table
from lomas_server.metadata import DatasetMetadata
from lomas_server.readable import PostgresTable


class PostgresTableReader(SqlReader):
    ENGINE = Engine.POSTGRES

    VIEW = "lomas_rows"

    def __init__(self, source: PostgresTable, metadata: DatasetMetadata) -> None:
        super().__init__(self.ENGINE)
        self.source = source
        self.metadata = metadata
        self._connection: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        from psycopg import sql

        rows = self.source.rows_sql(self.metadata)
        numbers = self.metadata.booleans_as_numbers
        if numbers:
            rows = sql.SQL("SELECT *, {} FROM ({}) AS lomas_described").format(
                sql.SQL(", ").join(
                    sql.SQL("CAST({} AS INTEGER) AS {}").format(
                        sql.Identifier(boolean.lower()), sql.Identifier(number.name.lower())
                    )
                    for boolean, number in numbers.items()
                ),
                rows,
            )
        connection = self.source.connect()
        connection.execute(
            sql.SQL("CREATE TEMP VIEW {} AS {}").format(sql.Identifier(self.VIEW), rows)
        )
        return connection

    def execute(self, query: str, *ignore: Any, accuracy: bool = False) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._connection is None or self._connection.closed:
                self._connection = self._connect()
            try:
                connection = self._connection
                with interruptible(lambda: connection.cancel_safe(timeout=2.0)):
                    cursor = self._connection.execute(query)
            except Exception:
                self._connection.close()  # a broken connection is opened again next time
                raise
            names = tuple(d.name for d in cursor.description)
            return [names, *cursor.fetchall()]

    def _execute_ast(self, query: Any, *ignore: Any, accuracy: bool = False) -> Any:
        query = copy.deepcopy(query)
        for table in query.find_nodes(Table):
            if str(table.name).lower() == TABLE:
                table.name = Identifier(self.VIEW)
        return super()._execute_ast(query, accuracy=accuracy)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
