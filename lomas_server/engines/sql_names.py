"""The names in a query: its one table, the columns it reads, and the outputs it releases.

SQL folds unquoted names, and engines fold them differently; every column reference is
rewritten to the metadata's own spelling, so a query means the same on each engine.
"""

from __future__ import annotations

import difflib

from lomas_server.engines import sql_advice as advice
from lomas_server.engines.snsql_adapter import (
    AliasedSubquery,
    Column,
    NamedExpression,
    Query,
    Relation,
    Table,
)
from lomas_server.engines.sql_advice import quote
from lomas_server.errors import InvalidQuery
from lomas_server.metadata import ColumnSpec, DatasetMetadata

CANONICAL_TABLE = "df"


class QueryNames:
    """The table a query reads (by the canonical name or the dataset's, perhaps under an
    alias) and its columns, resolved against the metadata."""

    def __init__(self, metadata: DatasetMetadata, dataset_name: str) -> None:
        self.metadata = metadata
        self.table_names = {CANONICAL_TABLE, dataset_name.lower()}
        self.table_alias: str | None = None

    def table(self, query: Query) -> Table:
        """The FROM clause's one table; refuses joins, subqueries and unknown tables."""
        relations = list(query.source.relations) if query.source is not None else []
        if len(relations) != 1 or not isinstance(relations[0], Relation):
            raise InvalidQuery(advice.SEVERAL_TABLES)
        relation = relations[0]
        if relation.joins:
            raise InvalidQuery(advice.JOIN)
        table = relation.primary
        if not isinstance(table, Table):
            if isinstance(table, AliasedSubquery):
                raise InvalidQuery(advice.SUBQUERY)
            raise InvalidQuery(f"write the table without parentheses: FROM {CANONICAL_TABLE}")
        name = unquote(str(table.name)).lower()
        if name not in self.table_names:
            raise InvalidQuery(
                f"unknown table {quote(str(table.name))}; query FROM {CANONICAL_TABLE} (or the "
                "dataset's name)"
            )
        self.table_alias = unquote(table.alias).lower() if table.alias else None
        return table

    def column(self, node: Column) -> ColumnSpec:
        """Resolve a column reference, and spell it as the metadata does."""
        parts = [unquote(part) for part in str(node.name).split(".")]
        qualifier = ""
        if len(parts) == 2:
            if parts[0].lower() == self.table_alias:
                qualifier = parts[0] + "."
            elif parts[0].lower() in self.table_names:
                qualifier = (CANONICAL_TABLE if self.table_alias is None else parts[0]) + "."
            else:
                raise InvalidQuery(
                    f"unknown table or alias {quote(parts[0])} in {quote(str(node.name))}"
                )
        elif len(parts) != 1:
            raise InvalidQuery(f"unknown column {quote(str(node.name))}")
        spec = self.metadata.column(parts[-1])
        if spec is None:
            raise InvalidQuery(self._unknown_column(str(node.name).split(".")[-1], parts[-1]))
        node.name = qualifier + spec.name
        return spec

    def _unknown_column(self, written: str, name: str) -> str:
        if written.startswith('"'):
            # In SQL, "F" names a column; an analyst writing sex = "F" meant the text.
            example = "" if "'" in name else f" ('{quote(name)[1:-1]}')"
            return (
                f"unknown column {quote(name)}: double quotes name a column; write text values "
                f"in single quotes{example}"
            )
        known = {column.lower(): column for column in self.metadata.columns}
        close = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=0.75)
        if close:
            return f"unknown column {quote(name)}; did you mean {quote(known[close[0]])}?"
        return f"unknown column {quote(name)}; the dataset's metadata lists its columns"


def unquote(identifier: str) -> str:
    if len(identifier) >= 2 and identifier[0] in '"`[' and identifier[-1] in '"`]':
        return identifier[1:-1]
    return identifier


def output_name(item: NamedExpression) -> str:
    """The name a SELECT item is released under: its alias, or a bare column's name."""
    if item.name:
        return unquote(str(item.name))
    if isinstance(item.expression, Column):
        return unquote(str(item.expression.name).split(".")[-1])
    return str(item.expression)
