"""WHERE: the conditions that choose rows, before any noise.

They run on every row, so only what cannot fail on a row is admitted: comparisons of columns
with values of their own type (each value typed by the server, literals.py), IN, BETWEEN and
IS [NOT] NULL, joined by AND, OR and NOT.
"""

from __future__ import annotations

from typing import Any

from lomas_server.engines.snsql_adapter import (
    BetweenCondition,
    BooleanCompare,
    Column,
    ColumnBoolean,
    InCondition,
    IsCondition,
    Literal,
    LogicalNot,
    NestedBoolean,
    PredicatedExpression,
)
from lomas_server.engines.sql_advice import describe, quote, where_refusal
from lomas_server.engines.sql_names import QueryNames
from lomas_server.engines.sql_types import NULL, literal_type, spec_type
from lomas_server.errors import InvalidQuery
from lomas_server.limits import MAX_DEPTH
from lomas_server.literals import sql_text, typed_value
from lomas_server.metadata import ColumnSpec

COMPARISONS = {"=", "<>", "!=", "<", "<=", ">", ">="}


class RowConditions:
    def __init__(self, names: QueryNames) -> None:
        self.names = names

    def check(self, node: Any, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise InvalidQuery("the condition is nested too deeply")
        if isinstance(node, BooleanCompare):
            op = str(node.op).upper()
            if op in ("AND", "OR"):
                self.check(node.left, depth + 1)
                self.check(node.right, depth + 1)
            elif op in COMPARISONS:
                self._comparison(node.left, node.right, op)
            else:
                raise InvalidQuery(
                    f"operator {quote(str(node.op))} is not allowed in WHERE; compare with =, <>, "
                    "<, <=, > or >="
                )
        elif isinstance(node, (NestedBoolean, LogicalNot)):
            self.check(node.expression, depth + 1)
        elif isinstance(node, ColumnBoolean):
            if not isinstance(node.expression, Column):
                raise InvalidQuery(where_refusal(node.expression))
            spec = self.names.column(node.expression)
            if spec.type != "boolean":
                raise InvalidQuery(
                    f"column {quote(spec.name)} is {spec.type}, not boolean; compare it to a value"
                )
        elif isinstance(node, PredicatedExpression):
            self._predicate(node)
        else:
            raise InvalidQuery(where_refusal(node))

    def _operand_type(self, node: Any) -> str:
        if isinstance(node, Column):
            return spec_type(self.names.column(node))
        if isinstance(node, Literal):
            return literal_type(node)
        raise InvalidQuery(where_refusal(node))

    def _comparison(self, left: Any, right: Any, op: str) -> None:
        left_type, right_type = self._operand_type(left), self._operand_type(right)
        if NULL in (left_type, right_type):
            raise InvalidQuery("comparisons with NULL are never true; use IS NULL or IS NOT NULL")
        if isinstance(left, Column) and isinstance(right, Literal):
            self._type_literal(right, self.names.column(left))
        elif isinstance(right, Column) and isinstance(left, Literal):
            self._type_literal(left, self.names.column(right))
        elif left_type != right_type:
            raise InvalidQuery(
                f"cannot compare {describe(left)} ({left_type}) with {describe(right)} "
                f"({right_type})"
            )

    def _type_literal(self, literal: Literal, spec: ColumnSpec) -> None:
        """Make ``literal`` a constant of the column's type, written the one way every engine
        reads as that type (literals.py); any other value is refused here."""
        if literal.value is None:
            raise InvalidQuery("NULL never matches in a comparison; use IS NULL or IS NOT NULL")
        value = typed_value(literal.value, spec)
        literal.value = value
        literal.text = sql_text(value, spec)

    def _predicate(self, node: PredicatedExpression) -> None:
        subject = node.expression
        if not isinstance(subject, Column):
            raise InvalidQuery(where_refusal(subject))
        spec = self.names.column(subject)
        predicate = node.predicate
        if isinstance(predicate, IsCondition):
            if not (isinstance(predicate.value, Literal) and predicate.value.value is None):
                raise InvalidQuery("IS takes NULL or NOT NULL only")
            return
        if isinstance(predicate, InCondition):
            values = list(predicate.expressions)
        elif isinstance(predicate, BetweenCondition):
            values = [predicate.lower, predicate.upper]
        else:
            raise InvalidQuery(where_refusal(predicate))
        for value in values:
            if not isinstance(value, Literal):
                raise InvalidQuery("IN and BETWEEN take literal values only")
            if value.value is None:
                raise InvalidQuery("NULL in IN or BETWEEN never matches; use IS NULL")
            self._type_literal(value, spec)

    def not_null_columns(self, condition: Any) -> set[str]:
        """Columns that the WHERE clause guarantees non-NULL (a top-level 'col IS NOT NULL')."""
        if isinstance(condition, BooleanCompare) and str(condition.op).upper() == "AND":
            return self.not_null_columns(condition.left) | self.not_null_columns(condition.right)
        if isinstance(condition, NestedBoolean):
            return self.not_null_columns(condition.expression)
        if (
            isinstance(condition, PredicatedExpression)
            and isinstance(condition.predicate, IsCondition)
            and condition.predicate.is_not
            and isinstance(condition.expression, Column)
        ):
            return {self.names.column(condition.expression).name}
        return set()
