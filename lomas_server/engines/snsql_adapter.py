"""The one module that reaches into SmartNoise-SQL's internals.

The server needs more of SmartNoise-SQL than its public ``from_connection`` API: the syntax
tree (to check queries against the allow-list and rewrite them), the reader base class (to run
the exact aggregates on DuckDB, PostgreSQL or Spark), the private reader's rewrite and
mechanisms (to plan without data) and the mechanisms' scale search (to remember it). These are
private modules that may change in any release; every other module imports them from here, so
an upgrade is checked in one place.
"""

from __future__ import annotations

from snsql import Privacy
from snsql._ast.ast import AliasedSubquery, Query, Relation, Table, Top
from snsql._ast.expression import NamedExpression, NestedExpression
from snsql._ast.expressions.logical import (
    BetweenCondition,
    BooleanCompare,
    ColumnBoolean,
    InCondition,
    IsCondition,
    LogicalNot,
    NestedBoolean,
    PredicatedExpression,
)
from snsql._ast.expressions.numeric import (
    ArithmeticExpression,
    BareFunction,
    MathFunction,
    RoundFunction,
)
from snsql._ast.expressions.sql import AggFunction, AllColumns, RankingFunction, SortItem
from snsql._ast.tokens import Column, Identifier, Literal, Sql, Token
from snsql.sql._mechanisms.gaussian import Gaussian
from snsql.sql._mechanisms.laplace import Laplace
from snsql.sql.odometer import OdometerHeterogeneous
from snsql.sql.parse import QueryParser
from snsql.sql.private_reader import PrivateReader
from snsql.sql.reader.base import SqlReader
from snsql.sql.reader.engine import Engine
from snsql.xpath.parse import XPath

__all__ = [
    "AggFunction",
    "AliasedSubquery",
    "AllColumns",
    "ArithmeticExpression",
    "BareFunction",
    "BetweenCondition",
    "BooleanCompare",
    "Column",
    "ColumnBoolean",
    "Engine",
    "Gaussian",
    "Identifier",
    "InCondition",
    "IsCondition",
    "Laplace",
    "Literal",
    "LogicalNot",
    "MathFunction",
    "NamedExpression",
    "NestedBoolean",
    "NestedExpression",
    "OdometerHeterogeneous",
    "PredicatedExpression",
    "Privacy",
    "PrivateReader",
    "Query",
    "QueryParser",
    "RankingFunction",
    "Relation",
    "RoundFunction",
    "SortItem",
    "Sql",
    "SqlReader",
    "Table",
    "Token",
    "Top",
    "XPath",
]
