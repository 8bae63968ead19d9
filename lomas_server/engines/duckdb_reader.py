"""A SmartNoise-SQL reader that runs the exact-aggregation SQL on DuckDB.

SmartNoise-SQL rewrites a query into an inner query of exact aggregates (with clamping and,
for datasets with several rows per person, per-person reservoir sampling) and adds the noise
itself. That inner query is where nearly all the time goes; the pandas reader first copies the
whole dataset into SQLite, per reader. Here the inner query runs on DuckDB over the cached
Arrow table, registered without a copy. SmartNoise-SQL's PostgreSQL dialect is used, which
DuckDB speaks, with one change: DuckDB refuses a volatile ``ORDER BY RANDOM()`` inside a window,
so the random sort key of the reservoir is drawn one level down, as a column (same sampling:
an independent uniform draw per row, ranked within each person).
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from snsql._ast.ast import AliasedSubquery, Query
from snsql._ast.expression import NamedExpression
from snsql._ast.expressions.numeric import BareFunction
from snsql._ast.expressions.sql import RankingFunction
from snsql._ast.tokens import Column, FuncName, Identifier
from snsql.sql.reader.base import SqlReader
from snsql.sql.reader.engine import Engine

TABLE = "df"
RANDOM_COLUMN = "lomas_reservoir_key"


class DuckDBReader(SqlReader):
    ENGINE = Engine.POSTGRES  # SmartNoise-SQL's dialect for the SQL it writes

    def __init__(self, table: Any) -> None:
        """``table``: a pyarrow Table (scanned in place) or anything DuckDB can register."""
        import duckdb

        super().__init__(self.ENGINE)
        self._connection = duckdb.connect(":memory:")
        self._connection.register(TABLE, table)
        self._lock = threading.Lock()

    def execute(self, query: str, *ignore: Any, accuracy: bool = False) -> list[tuple[Any, ...]]:
        with self._lock:
            result = self._connection.execute(query)
            names = tuple(d[0] for d in result.description)
            return [names, *result.fetchall()]

    def _execute_ast(self, query: Any, *ignore: Any, accuracy: bool = False) -> Any:
        return super()._execute_ast(_random_key_below_window(query), accuracy=accuracy)

    def close(self) -> None:
        self._connection.close()


def _random_key_below_window(query: Query) -> Query:
    """Move ``ORDER BY RANDOM()`` of SmartNoise's reservoir window into a column below it."""
    windows = [
        (node, ranking)
        for node in [query, *query.find_nodes(Query)]
        for ranking in node.find_nodes(RankingFunction, not_child_of=AliasedSubquery)
        if _orders_by_random(ranking)
    ]
    if not windows:
        return query
    query = copy.deepcopy(query)
    for node in [query, *query.find_nodes(Query)]:
        for ranking in node.find_nodes(RankingFunction, not_child_of=AliasedSubquery):
            if not _orders_by_random(ranking):
                continue
            below = node.source.relations[0].primary
            if not isinstance(below, AliasedSubquery):
                raise ValueError("unexpected reservoir shape")
            below.query.select.namedExpressions.seq.append(
                NamedExpression(Identifier(RANDOM_COLUMN), BareFunction(FuncName("RANDOM")))
            )
            for item in ranking.over.order.sortItems:
                item.expression = Column(RANDOM_COLUMN)
    return query


def _orders_by_random(ranking: RankingFunction) -> bool:
    order = ranking.over.order if ranking.over is not None else None
    if order is None:
        return False
    return any(
        isinstance(item.expression, BareFunction) and str(item.expression.name).upper() == "RANDOM"
        for item in order.sortItems
    )
