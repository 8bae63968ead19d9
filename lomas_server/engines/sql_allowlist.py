"""The allow-list walk over one parsed query: what each clause may contain.

The WHERE clause is checked by sql_where.py and names are resolved by sql_names.py; this walk
holds the rest: the SELECT list (aggregates of columns, and arithmetic on their noisy values),
GROUP BY, TOP and LIMIT, and HAVING and ORDER BY, which run on the released rows.
"""

from __future__ import annotations

import copy
from typing import Any

from lomas_server.engines.snsql_adapter import (
    AggFunction,
    AllColumns,
    ArithmeticExpression,
    BooleanCompare,
    Column,
    Literal,
    LogicalNot,
    MathFunction,
    NamedExpression,
    NestedBoolean,
    NestedExpression,
    Query,
    RoundFunction,
    SortItem,
    Top,
)
from lomas_server.engines.sql_advice import (
    distinct_refusal,
    function_refusal,
    quote,
    select_refusal,
)
from lomas_server.engines.sql_names import CANONICAL_TABLE, QueryNames, output_name, unquote
from lomas_server.engines.sql_types import NUMERIC, literal_type
from lomas_server.engines.sql_where import COMPARISONS, RowConditions
from lomas_server.errors import InvalidQuery
from lomas_server.limits import MAX_DEPTH
from lomas_server.metadata import DatasetMetadata

MAX_OUTER_FACTOR = 1e9  # magnitude of a literal scaling an aggregate

COUNT = "COUNT"
SUMMING_AGGREGATES = {"SUM", "AVG", "VAR", "VARIANCE", "STDDEV", "STD"}
SQUARING_AGGREGATES = {"VAR", "VARIANCE", "STDDEV", "STD"}
OUTER_FUNCTIONS = {"ABS", "CEIL", "CEILING", "FLOOR", "SIGN"}
# Engines sum integers in 64 bits; allow for up to 2**32 rows per group.
_INT_SUM_LIMIT = 2**63 // 2**32


class AllowList:
    """One walk over one query: refuses what is not allowed, and rewrites the rest in place
    (the canonical table name, the metadata's spelling of columns, typed values)."""

    def __init__(self, metadata: DatasetMetadata, dataset_name: str) -> None:
        self.names = QueryNames(metadata, dataset_name)
        self.not_null: set[str] = set()
        self.group_columns: list[str] = []
        self.output_names: list[str] = []
        # Output names (alias, or a bare column's name) -> expression; HAVING and ORDER BY
        # run on the released rows, so they may only refer to what the SELECT list releases.
        self.outputs: dict[str, Any] = {}
        self.output_texts: set[str] = set()
        self.aggregates = 0

    # -- the query as a whole ----------------------------------------------------------------
    def check(self, query: Query) -> None:
        table = self.names.table(query)
        quantifier = query.select.quantifier
        if quantifier is not None and not isinstance(quantifier, Top):
            raise InvalidQuery(
                "SELECT DISTINCT is not supported; use GROUP BY with COUNT(*) to see the groups"
            )
        if isinstance(quantifier, Top):
            self._check_row_count(quantifier.n, "TOP")
        if query.limit is not None:
            self._check_row_count(query.limit.n, "LIMIT")
        if query.where is not None:
            where = RowConditions(self.names)
            where.check(query.where.condition)
            self.not_null = where.not_null_columns(query.where.condition)
        if query.agg is not None:
            for grouping in query.agg.groupingExpressions:
                if not isinstance(grouping.expression, Column):
                    raise InvalidQuery(
                        "GROUP BY takes column names only, not numbers or expressions"
                    )
                name = self.names.column(grouping.expression).name
                if name in self.group_columns:
                    raise InvalidQuery(f"column {quote(name)} appears twice in GROUP BY")
                self.group_columns.append(name)
        for item in query.select.namedExpressions:
            self._select_item(item)
            self.output_names.append(item.name or str(item.expression))
            output = output_name(item).lower()
            if output in self.outputs:
                # HAVING and ORDER BY name outputs without regard to case: which one is meant?
                raise InvalidQuery(
                    f"two outputs are named {quote(output_name(item))} (letter case aside); "
                    "rename one with AS"
                )
            self.outputs[output] = item.expression
            self.output_texts.add(_comparable(item.expression))
        if not self.aggregates:
            raise InvalidQuery(
                "the query has no aggregate; add one such as COUNT(*): every released value "
                "must be noisy"
            )
        if query.having is not None:
            self._having(query.having.condition, 0)
        if query.order is not None:
            for sort_item in query.order.sortItems:
                self._order_item(sort_item)
        table.name = CANONICAL_TABLE

    @staticmethod
    def _check_row_count(n: Any, clause: str) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0 or n > 10**9:
            raise InvalidQuery(f"{clause} takes a whole number of rows")

    # -- SELECT list -------------------------------------------------------------------------
    def _select_item(self, item: NamedExpression) -> None:
        expression = item.expression
        if isinstance(expression, AllColumns):
            raise InvalidQuery("SELECT * is not supported; name the columns and aggregates")
        if isinstance(expression, Column):
            spec = self.names.column(expression)
            if spec.name not in self.group_columns:
                raise InvalidQuery(
                    f"column {quote(spec.name)} must appear in GROUP BY or inside an aggregate"
                )
            return
        self._outer(expression, 0)

    def _outer(self, node: Any, depth: int) -> None:
        """An expression over aggregates, evaluated on noisy values after the noise."""
        if depth > MAX_DEPTH:
            raise InvalidQuery("the expression is nested too deeply")
        if isinstance(node, AggFunction):
            self._aggregate(node)
        elif isinstance(node, NestedExpression):
            self._outer(node.expression, depth + 1)
        elif isinstance(node, Literal):
            if literal_type(node) != NUMERIC or abs(node.value) > MAX_OUTER_FACTOR:
                raise InvalidQuery(
                    f"literal {quote(str(node.text))} is not allowed here; use numbers up to "
                    f"{MAX_OUTER_FACTOR:g}"
                )
        elif isinstance(node, ArithmeticExpression):
            self._arithmetic(node, depth)
        elif isinstance(node, MathFunction) and str(node.name).upper() in OUTER_FUNCTIONS:
            self._outer(node.expression, depth + 1)
        elif isinstance(node, RoundFunction):
            decimals = node.decimals.value if node.decimals is not None else 0
            if (
                isinstance(decimals, bool)
                or not isinstance(decimals, int)
                or not 0 <= decimals <= 15
            ):
                raise InvalidQuery("ROUND takes a whole number of decimals from 0 to 15")
            self._outer(node.expression, depth + 1)
        elif isinstance(node, Column):
            raise InvalidQuery(
                f"column {quote(str(node.name))} can only be selected on its own or inside an "
                "aggregate"
            )
        else:
            raise InvalidQuery(select_refusal(node))

    def _arithmetic(self, node: ArithmeticExpression, depth: int) -> None:
        if node.op in ("+", "-", "*"):
            self._outer(node.left, depth + 1)
            self._outer(node.right, depth + 1)
            if node.op == "*":
                for factor in (node.left, node.right):
                    self._positive(factor, "*")
            return
        if node.op in ("/", "%"):
            divisor = node.right
            if not (isinstance(divisor, Literal) and literal_type(divisor) == NUMERIC):
                raise InvalidQuery(
                    f"'{node.op}' needs a positive number on its right; a divisor computed from "
                    "data could be zero for some datasets and not for others"
                )
            self._outer(node.left, depth + 1)
            self._outer(divisor, depth + 1)
            self._positive(divisor, node.op)
            return
        raise InvalidQuery(f"operator {quote(str(node.op))} is not allowed; use + - * / or %")

    @staticmethod
    def _positive(operand: Any, op: str) -> None:
        # SmartNoise-SQL bounds an aggregate times a number as [lower * n, upper * n], which
        # it cannot plan for n <= 0 (its refusal would name no construct).
        if isinstance(operand, Literal) and operand.value <= 0:
            raise InvalidQuery(
                f"'{op}' takes positive numbers only, not {quote(str(operand.text))}; to change "
                "the sign of x, write 0 - x"
            )

    def _aggregate(self, node: AggFunction) -> None:
        self.aggregates += 1
        name = str(node.name).upper()
        argument = node.expression
        if name == COUNT:
            if isinstance(argument, AllColumns):
                if node.quantifier is not None:
                    raise InvalidQuery("COUNT(DISTINCT *) is not supported; count a column")
                return
            if isinstance(argument, Column):
                self.names.column(argument)
                return
            raise InvalidQuery(
                "COUNT takes * or a column name (no expressions inside aggregates); choose rows "
                "with WHERE"
            )
        if name not in SUMMING_AGGREGATES:
            raise InvalidQuery(function_refusal(name))
        if node.quantifier is not None:
            raise InvalidQuery(distinct_refusal(name))
        if not isinstance(argument, Column):
            raise InvalidQuery(
                f"{name} takes a column name (no expressions inside aggregates); choose rows with "
                "WHERE, and compute over the aggregate outside it"
            )
        spec = self.names.metadata.summed(self.names.column(argument))
        if not spec.is_numeric:
            raise InvalidQuery(
                f"{name} needs a numeric or boolean column; {quote(spec.name)} is {spec.type}: "
                "count it instead"
            )
        if not spec.is_bounded:
            raise InvalidQuery(
                f"column {quote(spec.name)} has no bounds in the metadata: it can be counted but "
                f"not used in {name}"
            )
        if spec.type == "int":
            largest = max(abs(int(spec.lower)), abs(int(spec.upper)))  # type: ignore[arg-type]
            if name in SQUARING_AGGREGATES:
                largest *= largest
            if largest >= _INT_SUM_LIMIT:
                raise InvalidQuery(
                    f"the bounds of column {quote(spec.name)} are too wide for {name} to be "
                    "computed without integer overflow"
                )

    # -- HAVING and ORDER BY (evaluated on the noisy output) ---------------------------------
    def _having(self, node: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise InvalidQuery("the HAVING condition is nested too deeply")
        if isinstance(node, BooleanCompare):
            op = str(node.op).upper()
            if op in ("AND", "OR"):
                self._having(node.left, depth + 1)
                self._having(node.right, depth + 1)
                return
            if op in COMPARISONS:
                for side in (node.left, node.right):
                    self._having_operand(side)
                return
        if isinstance(node, (NestedBoolean, LogicalNot)):
            self._having(node.expression, depth + 1)
            return
        raise InvalidQuery(
            "HAVING compares aggregates with numbers only; filter on columns in WHERE instead"
        )

    def _having_operand(self, node: Any) -> None:
        if isinstance(node, Literal):
            if literal_type(node) != NUMERIC:
                raise InvalidQuery("HAVING compares aggregates with numbers only")
            return
        target = self._released(node, "HAVING")
        if isinstance(target, Column):
            raise InvalidQuery(
                "HAVING compares aggregates with numbers only; filter on columns in WHERE instead"
            )

    def _order_item(self, item: SortItem) -> None:
        target = self._released(item.expression, "ORDER BY")
        if not isinstance(target, Column):
            return  # noisy aggregates are numbers and always sort
        spec = self.names.column(target)
        if spec.nullable and spec.name not in self.not_null:
            raise InvalidQuery(
                f"column {quote(spec.name)} may hold NULLs, which cannot be sorted; add "
                f"'WHERE {spec.name} IS NOT NULL' or sort the result in the notebook"
            )

    def _released(self, node: Any, clause: str) -> Any:
        """The SELECT expression that ``node`` names in HAVING or ORDER BY: an output by its
        name, or an aggregate written as in the SELECT list (letter case and the table's
        name or alias aside)."""
        if isinstance(node, Column):
            if "." in str(node.name):
                self.names.column(node)  # t.x: a column of the table, spelled as declared
            name = unquote(str(node.name).rpartition(".")[2]).lower()
            target = self.outputs.get(name)
            if target is not None:
                if (
                    clause == "HAVING"
                    and not isinstance(target, Column)
                    and self.names.metadata.column(name) is not None
                ):
                    # SmartNoise-SQL would read the column here, not the output.
                    raise InvalidQuery(
                        f"{quote(name)} in HAVING names both a column and an output; give the "
                        "output another name with AS"
                    )
                return target
        else:
            for column in node.find_nodes(Column):
                self.names.column(column)
            if _comparable(node) in self.output_texts:
                return node
        raise InvalidQuery(
            f"{clause} can only use the SELECT list's outputs, by name or written as there "
            "(give an aggregate a name with AS and use it)"
        )


def _comparable(expression: Any) -> str:
    """An expression's text with its columns' table or alias left out, to compare what HAVING
    or ORDER BY repeat of the SELECT list."""
    copied = copy.deepcopy(expression)
    for column in [copied] if isinstance(copied, Column) else copied.find_nodes(Column):
        column.name = str(column.name).rpartition(".")[2]
    return str(copied)
