"""The names in a query: its one table, the columns it reads, the outputs it releases, and
how a construct is named when the guard refuses it.

SQL folds unquoted names, and engines fold them differently; every column reference is
rewritten to the metadata's own spelling, so a query means the same on each engine.
"""

from __future__ import annotations

from typing import Any

from lomas_server.engines.snsql_adapter import Column, NamedExpression, Query, Relation, Table
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
            raise InvalidQuery("query exactly one table")
        relation = relations[0]
        if relation.joins:
            raise InvalidQuery("joins are not supported")
        table = relation.primary
        if not isinstance(table, Table):
            raise InvalidQuery("subqueries are not supported; query the table directly")
        name = unquote(str(table.name)).lower()
        if name not in self.table_names:
            raise InvalidQuery(
                f"unknown table {table.name!r}; query FROM {CANONICAL_TABLE} (or the dataset's name)"
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
                raise InvalidQuery(f"unknown table or alias {parts[0]!r} in {node.name!r}")
        elif len(parts) != 1:
            raise InvalidQuery(f"unknown column {node.name!r}")
        spec = self.metadata.column(parts[-1])
        if spec is None:
            raise InvalidQuery(f"unknown column {parts[-1]!r}")
        node.name = qualifier + spec.name
        return spec


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


def describe(node: Any) -> str:
    """A construct as a refusal names it, in SQL's words rather than the parser's classes."""
    names = {
        "CaseExpression": "CASE",
        "CastFunction": "CAST",
        "IIFFunction": "IIF",
        "ChooseFunction": "CHOOSE",
        "PowerFunction": "POWER",
        "AllColumns": "*",
        "SubstringFunction": "SUBSTRING",
        "ConcatFunction": "CONCAT",
        "CoalesceFunction": "COALESCE",
        "ExtractFunction": "EXTRACT",
        "BareFunction": "a function without arguments",
        "RankingFunction": "a window function",
    }
    kind = type(node).__name__
    if kind in ("MathFunction", "AggFunction") and hasattr(node, "name"):
        return str(node.name).upper()
    if kind in ("Column", "Literal"):
        return str(node)
    return names.get(kind, kind.removesuffix("Function").removesuffix("Expression").upper() or kind)
