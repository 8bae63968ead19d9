"""The SQL allow-list: what an analyst's query may contain, checked before anything is spent.

The rule behind every check: whether a query fails must never depend on the rows. A query
that raises for some data and not for other data is a deterministic leak no budget pays for
(think ``WHERE salary / (age - 40) > 1``, or sorting a column that holds NULLs only in some
datasets). So the guard accepts a small, typed subset of SQL in which no construct can fail
per row, and refuses everything else with a message naming the construct. The subset is
documented in docs/sql-allowlist.md; keep the two in step.

A query goes through three steps: its text's size (sql_size.py), SmartNoise-SQL's parser
(whose failures sql_syntax.py words), then the allow-list walk over the parsed query
(sql_allowlist.py, with sql_where.py for the WHERE clause and sql_names.py for names). What a
refusal suggests instead of a construct is in sql_advice.py.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

from lomas_server.engines.snsql_adapter import AggFunction, Column, Query, parse_queries
from lomas_server.engines.sql_advice import DOCS, SEVERAL_STATEMENTS
from lomas_server.engines.sql_allowlist import AllowList
from lomas_server.engines.sql_names import CANONICAL_TABLE, unquote
from lomas_server.engines.sql_size import check_size
from lomas_server.engines.sql_syntax import explain
from lomas_server.errors import InvalidQuery
from lomas_server.metadata import DatasetMetadata

__all__ = ["CANONICAL_TABLE", "GuardedQuery", "guard_query"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuardedQuery:
    """A query that passed the allow-list, rewritten onto the canonical table name, with every
    value typed by the server (literals.py): ``text`` as the analyst's query reads, normalized
    (what identifies it, and what they are shown), ``sql`` as the engines run it."""

    text: str
    sql: str
    output_names: list[str]
    # GROUP BY columns in the metadata's spelling, and the groups the release shows: the full
    # declared grid when every one of them has public values, else None (groups are then
    # released only above a noisy threshold, which needs delta).
    group_columns: tuple[str, ...] = ()
    key_grid: tuple[tuple[Any, ...], ...] | None = None

    @property
    def thresholded(self) -> bool:
        """Whether groups are released only above a noisy threshold (which needs delta)."""
        return bool(self.group_columns) and self.key_grid is None


def guard_query(text: str, metadata: DatasetMetadata, dataset_name: str) -> GuardedQuery:
    """Check ``text`` against the allow-list; return it normalized for the engine."""
    check_size(text)
    query = _parse(text)
    walk = AllowList(metadata, dataset_name)
    walk.check(query)
    grid = metadata.key_grid(walk.group_columns)
    return GuardedQuery(
        text=str(query),
        sql=for_engine(query, metadata),
        output_names=walk.output_names,
        group_columns=tuple(walk.group_columns),
        key_grid=None if grid is None else tuple(grid),
    )


def for_engine(query: Query, metadata: DatasetMetadata) -> str:
    """A checked query as the engines run it: every column unqualified (SmartNoise-SQL cannot
    plan an aggregate of ``t.age``; there is one table, so a qualifier adds nothing), and the
    aggregates of a boolean over its number (``DatasetMetadata.booleans_as_numbers``: true 1,
    false 0; COUNT too, so that an AVG's own count is the same noisy value, paid once)."""
    engine = copy.deepcopy(query)
    for column in engine.find_nodes(Column):
        column.name = str(column.name).rpartition(".")[2]
    numbers = metadata.booleans_as_numbers
    for aggregate in engine.find_nodes(AggFunction):
        argument = aggregate.expression
        if isinstance(argument, Column):
            spec = metadata.column(unquote(str(argument.name)))
            if spec is not None and spec.name in numbers:
                argument.name = numbers[spec.name].name
    return str(engine)


def _parse(text: str) -> Query:
    try:
        queries = parse_queries(text)
    except RecursionError as err:
        raise InvalidQuery(
            "the query is nested too deeply; write it with fewer parentheses"
        ) from err
    except Exception as err:
        # The parser's own words name grammar internals: the analyst reads ours.
        raise InvalidQuery(_explained(text, err)) from err
    if len(queries) != 1:
        raise InvalidQuery(SEVERAL_STATEMENTS)
    return queries[0]


def _explained(text: str, err: Exception) -> str:
    try:
        return explain(text, err)
    except Exception:
        # A defect in the explanation must not turn a refusal into a server error.
        log.exception("could not explain why a query cannot be parsed")
        return f"the query cannot be read as one SELECT statement; {DOCS} shows what is accepted"
