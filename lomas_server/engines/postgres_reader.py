"""A SmartNoise-SQL reader for datasets that live in a PostgreSQL table.

The exact-aggregation SQL that SmartNoise-SQL writes (its PostgreSQL dialect, reservoir
sampling included) runs in the database itself, on the admin's table instead of ``df``: no row
leaves the database, only the aggregates do.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from snsql._ast.ast import Table
from snsql._ast.tokens import Identifier
from snsql.sql.reader.base import SqlReader
from snsql.sql.reader.engine import Engine

from lomas_server.datasets.sources import PostgresSource
from lomas_server.engines.duckdb_reader import TABLE


class PostgresTableReader(SqlReader):
    ENGINE = Engine.POSTGRES

    def __init__(self, source: PostgresSource) -> None:
        super().__init__(self.ENGINE)
        self.source = source
        self._connection: Any = None
        self._lock = threading.Lock()

    def execute(self, query: str, *ignore: Any, accuracy: bool = False) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._connection is None or self._connection.closed:
                self._connection = self.source.connect()
            try:
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
                table.name = Identifier(self.source.table)
        return super()._execute_ast(query, accuracy=accuracy)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
