"""The one module that reaches into SmartNoise-SQL's internals.

The server needs more of SmartNoise-SQL than its public ``from_connection`` API: the syntax
tree (to check queries against the allow-list and rewrite them), the reader base class (to run
the exact aggregates on DuckDB, PostgreSQL or Spark), the private reader's rewrite and
mechanisms (to plan without data) and the mechanisms' scale search (to remember it). These are
private modules that may change in any release; every other module imports them from here, so
an upgrade is checked in one place.
"""

from __future__ import annotations

from typing import Any

from antlr4 import InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.Token import Token as AntlrToken
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
from snsql.sql.parser.SqlSmallErrorListener import SyntaxErrorListener
from snsql.sql.parser.SqlSmallLexer import SqlSmallLexer
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
    "SyntaxFailure",
    "Table",
    "Token",
    "Top",
    "XPath",
    "is_keyword",
    "parse_queries",
]


class SyntaxFailure(ValueError):
    """Where SmartNoise-SQL's parser stopped, as data: the guard words it (sql_syntax.py).

    The parser's own message lists grammar internals; only the place is kept: ``offset`` in
    the text (None when the parser gave none), ``line`` from 1 and ``column`` from 0 as it
    counts them, the token it stopped at (None when the lexer stopped at a character no token
    starts with), and whether it met the end of the text.
    """

    def __init__(
        self, offset: int | None, line: int, column: int, token: str | None, at_end: bool
    ) -> None:
        super().__init__(f"the parser stopped at line {line}, column {column}")
        self.offset, self.line, self.column = offset, line, column
        self.token, self.at_end = token, at_end


class _WhereItStopped(ErrorListener):
    def syntaxError(
        self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any
    ) -> None:
        if offending is None:  # the lexer: no token starts at this character
            start = getattr(recognizer, "_tokenStartCharIndex", None)
            raise SyntaxFailure(
                start if isinstance(start, int) else None, line, column, None, False
            )
        at_end = offending.type == AntlrToken.EOF
        start = (
            offending.start if isinstance(offending.start, int) and offending.start >= 0 else None
        )
        raise SyntaxFailure(start, line, column, "" if at_end else offending.text, at_end)


class _GuardParser(QueryParser):
    """SmartNoise-SQL's parser, exactly, but failing with a SyntaxFailure."""

    def start_parser(self, stream: Any) -> Any:
        parser = super().start_parser(stream)
        for recognizer in (parser.getTokenStream().tokenSource, parser):
            recognizer._listeners = [
                _WhereItStopped() if isinstance(listener, SyntaxErrorListener) else listener
                for listener in recognizer._listeners
            ]
        return parser


def parse_queries(text: str) -> list[Query]:
    """The statements of ``text`` as SmartNoise-SQL parses them; raises SyntaxFailure where it
    cannot read them."""
    return list(_GuardParser().queries(text))


def is_keyword(word: str) -> bool:
    """Whether the parser reads ``word`` as one of its keywords, never as a name."""
    lexer = SqlSmallLexer(InputStream(word))
    lexer.removeErrorListeners()
    try:
        token = lexer.nextToken()
    except Exception:  # not one token at all
        return False
    return token.type != SqlSmallLexer.IDENT and token.text == word
