"""The SQL allow-list: what an analyst's query may contain, checked before anything is spent.

The rule behind every check: whether a query fails must never depend on the rows. A query
that raises for some data and not for other data is a deterministic leak no budget pays for
(think ``WHERE salary / (age - 40) > 1``, or sorting a column that holds NULLs only in some
datasets). So the guard accepts a small, typed subset of SQL in which no construct can fail
per row, and refuses everything else with a message naming the construct. The subset is
documented in docs/sql-allowlist.md; keep the two in step.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from lomas_server.engines.snsql_adapter import (
    AggFunction,
    AllColumns,
    ArithmeticExpression,
    BetweenCondition,
    BooleanCompare,
    Column,
    ColumnBoolean,
    InCondition,
    IsCondition,
    Literal,
    LogicalNot,
    MathFunction,
    NamedExpression,
    NestedBoolean,
    NestedExpression,
    PredicatedExpression,
    Query,
    QueryParser,
    Relation,
    RoundFunction,
    SortItem,
    Table,
    Top,
)
from lomas_server.errors import InvalidQuery
from lomas_server.limits import (
    MAX_DEPTH,
    MAX_NAME_LENGTH,
    MAX_NUMBER_LENGTH,
    MAX_QUERY_LENGTH,
    MAX_TOKENS,
)
from lomas_server.literals import sql_text, typed_value
from lomas_server.metadata import ColumnSpec, DatasetMetadata

CANONICAL_TABLE = "df"
_UNARY = {"NOT", "-", "+", "~"}
# One token of SQL text: blanks, comments, quoted text and names, numbers, words, symbols.
_TOKEN = re.compile(
    r"""\s+|--[^\n]*|/\*.*?(?:\*/|$)|'(?:[^']|'')*'?|"(?:[^"]|"")*"?|\[[^\]]*\]?|`[^`]*`?"""
    r"""|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|\w+|<>|!=|<=|>=|\|\||.""",
    re.DOTALL,
)
MAX_LITERAL = 1e15  # magnitude of any numeric literal
MAX_OUTER_FACTOR = 1e9  # magnitude of a literal scaling an aggregate

COUNT = "COUNT"
SUMMING_AGGREGATES = {"SUM", "AVG", "VAR", "VARIANCE", "STDDEV", "STD"}
SQUARING_AGGREGATES = {"VAR", "VARIANCE", "STDDEV", "STD"}
OUTER_FUNCTIONS = {"ABS", "CEIL", "CEILING", "FLOOR", "SIGN"}
COMPARISONS = {"=", "<>", "!=", "<", "<=", ">", ">="}
# Engines sum integers in 64 bits; allow for up to 2**32 rows per group.
_INT_SUM_LIMIT = 2**63 // 2**32

NUMERIC, STRING, BOOLEAN, DATETIME, NULL = "numeric", "string", "boolean", "datetime", "null"


@dataclass(frozen=True)
class GuardedQuery:
    """A query that passed the allow-list, rewritten onto the canonical table name, with every
    value typed by the server (literals.py)."""

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
    return _Guard(metadata, dataset_name).check(query)


def check_size(text: str) -> None:
    """Refuse a query too long, too deep or with too many tokens, before the parser sees it.

    The parser's time grows fast with nesting (thousands of levels take tens of seconds), so
    these limits are checked on the raw text by one linear scan: parentheses and CASE open a
    level, runs of NOT or signs count as levels too, and each number is short.
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidQuery(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    depth = run = tokens = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0].isspace() or token.startswith(("--", "/*")):
            continue
        tokens += 1
        if tokens > MAX_TOKENS:
            raise InvalidQuery(f"the query has more than {MAX_TOKENS} words and symbols")
        upper = token.upper()
        if token == "(" or upper == "CASE":
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidQuery(f"the query is nested more than {MAX_DEPTH} levels deep")
        elif token == ")" or upper == "END":
            depth = max(depth - 1, 0)
        run = run + 1 if upper in _UNARY else 0
        if run > MAX_DEPTH:
            raise InvalidQuery(f"the query repeats NOT or a sign more than {MAX_DEPTH} times")
        if token[0].isdigit() or (token[0] == "." and len(token) > 1):
            if len(token) > MAX_NUMBER_LENGTH:
                raise InvalidQuery(
                    f"number {token[:20]}... is longer than {MAX_NUMBER_LENGTH} characters"
                )
        elif token[0] in '"[`' and len(token) > MAX_NAME_LENGTH + 2:
            raise InvalidQuery(f"a quoted name is longer than {MAX_NAME_LENGTH} characters")
        elif (token[0].isalpha() or token[0] == "_") and len(token) > MAX_NAME_LENGTH:
            raise InvalidQuery(f"a name is longer than {MAX_NAME_LENGTH} characters")


def _parse(text: str) -> Query:
    try:
        queries = QueryParser().queries(text)
    except RecursionError as err:
        raise InvalidQuery("the query is nested too deeply") from err
    except ValueError as err:
        # The parser's own text lists grammar internals; say where, in the query's terms.
        where = re.search(r"[Bb]ad token (.*?) at line (\d+) column (\d+)", str(err))
        if where is None:
            raise InvalidQuery("syntax error: the query is not one SELECT statement") from err
        token, line, column = where.groups()
        raise InvalidQuery(
            f"syntax error at line {line}, column {int(column) + 1}, near {token[:40]!r}"
        ) from err
    except Exception as err:  # the parser's own failures carry no useful message
        raise InvalidQuery("the query could not be parsed as a single SELECT statement") from err
    if len(queries) != 1:
        raise InvalidQuery("send exactly one SELECT statement")
    return queries[0]


class _Guard:
    def __init__(self, metadata: DatasetMetadata, dataset_name: str) -> None:
        self.metadata = metadata
        self.table_names = {CANONICAL_TABLE, dataset_name.lower()}
        self.table_alias: str | None = None
        self.not_null: set[str] = set()
        self.group_columns: list[str] = []
        # Output names (alias, or a bare column's name) -> expression; HAVING and ORDER BY
        # run on the released rows, so they may only refer to what the SELECT list releases.
        self.outputs: dict[str, Any] = {}
        self.output_texts: set[str] = set()

    # -- the query as a whole ----------------------------------------------------------------
    def check(self, query: Query) -> GuardedQuery:
        table = self._check_from(query)
        quantifier = query.select.quantifier
        if quantifier is not None and not isinstance(quantifier, Top):
            raise InvalidQuery("SELECT DISTINCT is not supported; use GROUP BY")
        if isinstance(quantifier, Top):
            self._check_row_count(quantifier.n, "TOP")
        if query.limit is not None:
            self._check_row_count(query.limit.n, "LIMIT")
        if query.where is not None:
            self._condition(query.where.condition, 0)
            self.not_null = self._not_null_columns(query.where.condition)
        if query.agg is not None:
            for grouping in query.agg.groupingExpressions:
                if not isinstance(grouping.expression, Column):
                    raise InvalidQuery("GROUP BY takes column names only")
                name = self._column(grouping.expression).name
                if name in self.group_columns:
                    raise InvalidQuery(f"column {name!r} appears twice in GROUP BY")
                self.group_columns.append(name)
        names = []
        for item in query.select.namedExpressions:
            self._select_item(item)
            names.append(item.name or str(item.expression))
            output = _output_name(item).lower()
            if output in self.outputs:
                # HAVING and ORDER BY name outputs without regard to case: which one is meant?
                raise InvalidQuery(
                    f"two outputs are named {_output_name(item)!r} (letter case aside); rename one"
                )
            self.outputs[output] = item.expression
            self.output_texts.add(str(item.expression))
        if query.having is not None:
            self._having(query.having.condition, 0)
        if query.order is not None:
            for sort_item in query.order.sortItems:
                self._order_item(sort_item)
        table.name = CANONICAL_TABLE
        grid = self.metadata.key_grid(self.group_columns)
        return GuardedQuery(
            sql=str(query),
            output_names=names,
            group_columns=tuple(self.group_columns),
            key_grid=None if grid is None else tuple(grid),
        )

    def _check_from(self, query: Query) -> Table:
        relations = list(query.source.relations) if query.source is not None else []
        if len(relations) != 1 or not isinstance(relations[0], Relation):
            raise InvalidQuery("query exactly one table")
        relation = relations[0]
        if relation.joins:
            raise InvalidQuery("joins are not supported")
        table = relation.primary
        if not isinstance(table, Table):
            raise InvalidQuery("subqueries are not supported; query the table directly")
        name = _unquote(str(table.name)).lower()
        if name not in self.table_names:
            raise InvalidQuery(
                f"unknown table {table.name!r}; query FROM {CANONICAL_TABLE} (or the dataset's name)"
            )
        self.table_alias = _unquote(table.alias).lower() if table.alias else None
        return table

    @staticmethod
    def _check_row_count(n: Any, clause: str) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0 or n > 10**9:
            raise InvalidQuery(f"{clause} takes a whole number of rows")

    # -- names -------------------------------------------------------------------------------
    def _column(self, node: Column) -> ColumnSpec:
        """Resolve a column reference, and spell it as the metadata does.

        SQL folds unquoted names, and engines fold them differently; rewriting every reference
        to the metadata's own spelling makes a query mean the same on each of them.
        """
        parts = [_unquote(part) for part in str(node.name).split(".")]
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

    # -- SELECT list -------------------------------------------------------------------------
    def _select_item(self, item: NamedExpression) -> None:
        expression = item.expression
        if isinstance(expression, AllColumns):
            raise InvalidQuery("SELECT * is not supported; name the columns and aggregates")
        if isinstance(expression, Column):
            spec = self._column(expression)
            if spec.name not in self.group_columns:
                raise InvalidQuery(
                    f"column {spec.name!r} must appear in GROUP BY or inside an aggregate"
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
            if _literal_type(node) != NUMERIC or abs(node.value) > MAX_OUTER_FACTOR:
                raise InvalidQuery(
                    f"literal {node.text} is not allowed here; use numbers up to {MAX_OUTER_FACTOR:g}"
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
                f"column {node.name!r} can only be selected on its own or inside an aggregate"
            )
        else:
            raise InvalidQuery(f"{_describe(node)} is not allowed in the SELECT list")

    def _arithmetic(self, node: ArithmeticExpression, depth: int) -> None:
        if node.op in ("+", "-", "*"):
            self._outer(node.left, depth + 1)
            self._outer(node.right, depth + 1)
            return
        if node.op in ("/", "%"):
            divisor = node.right
            if not (
                isinstance(divisor, Literal)
                and _literal_type(divisor) == NUMERIC
                and divisor.value != 0
            ):
                raise InvalidQuery(
                    f"'{node.op}' needs a non-zero number on its right; a divisor computed from "
                    "data could be zero for some datasets and not for others"
                )
            self._outer(node.left, depth + 1)
            self._outer(divisor, depth + 1)
            return
        raise InvalidQuery(f"operator {node.op!r} is not allowed")

    def _aggregate(self, node: AggFunction) -> None:
        name = str(node.name).upper()
        argument = node.expression
        if name == COUNT:
            if isinstance(argument, AllColumns):
                if node.quantifier is not None:
                    raise InvalidQuery("COUNT(DISTINCT *) is not supported; count a column")
                return
            if isinstance(argument, Column):
                self._column(argument)
                return
            raise InvalidQuery("COUNT takes * or a column name")
        if name not in SUMMING_AGGREGATES:
            raise InvalidQuery(
                f"aggregate {name} is not supported; use COUNT, SUM, AVG, VAR or STDDEV"
            )
        if node.quantifier is not None:
            raise InvalidQuery(f"{name}(DISTINCT ...) is not supported")
        if not isinstance(argument, Column):
            raise InvalidQuery(f"{name} takes a column name (no expressions inside aggregates)")
        spec = self._column(argument)
        if not spec.is_numeric:
            raise InvalidQuery(f"{name} needs a numeric column; {spec.name!r} is {spec.type}")
        if not spec.is_bounded:
            raise InvalidQuery(
                f"column {spec.name!r} has no bounds in the metadata: it can be counted but not "
                f"used in {name}"
            )
        if spec.type == "int":
            largest = max(abs(int(spec.lower)), abs(int(spec.upper)))  # type: ignore[arg-type]
            if name in SQUARING_AGGREGATES:
                largest *= largest
            if largest >= _INT_SUM_LIMIT:
                raise InvalidQuery(
                    f"the bounds of column {spec.name!r} are too wide for {name} to be computed "
                    "without integer overflow"
                )

    # -- WHERE -------------------------------------------------------------------------------
    def _condition(self, node: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise InvalidQuery("the condition is nested too deeply")
        if isinstance(node, BooleanCompare):
            op = str(node.op).upper()
            if op in ("AND", "OR"):
                self._condition(node.left, depth + 1)
                self._condition(node.right, depth + 1)
            elif op in COMPARISONS:
                self._comparison(node.left, node.right, op)
            else:
                raise InvalidQuery(f"operator {node.op!r} is not allowed in WHERE")
        elif isinstance(node, (NestedBoolean, LogicalNot)):
            self._condition(node.expression, depth + 1)
        elif isinstance(node, ColumnBoolean):
            if not isinstance(node.expression, Column):
                raise InvalidQuery(f"{_describe(node.expression)} cannot be used as a condition")
            spec = self._column(node.expression)
            if spec.type != "boolean":
                raise InvalidQuery(
                    f"column {spec.name!r} is {spec.type}, not boolean; compare it to a value"
                )
        elif isinstance(node, PredicatedExpression):
            self._predicate(node)
        else:
            raise InvalidQuery(f"{_describe(node)} is not allowed in WHERE")

    def _operand_type(self, node: Any) -> str:
        if isinstance(node, Column):
            return _spec_type(self._column(node))
        if isinstance(node, Literal):
            return _literal_type(node)
        raise InvalidQuery(
            f"{_describe(node)} is not allowed in WHERE; compare columns with values directly"
        )

    def _comparison(self, left: Any, right: Any, op: str) -> None:
        left_type, right_type = self._operand_type(left), self._operand_type(right)
        if NULL in (left_type, right_type):
            raise InvalidQuery("comparisons with NULL are never true; use IS NULL or IS NOT NULL")
        if isinstance(left, Column) and isinstance(right, Literal):
            self._type_literal(right, self._column(left))
        elif isinstance(right, Column) and isinstance(left, Literal):
            self._type_literal(left, self._column(right))
        elif left_type != right_type:
            raise InvalidQuery(
                f"cannot compare {_describe(left)} ({left_type}) with {_describe(right)} "
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
            raise InvalidQuery(f"{_describe(subject)} is not allowed in WHERE")
        spec = self._column(subject)
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
            raise InvalidQuery(f"{_describe(predicate)} is not allowed in WHERE")
        for value in values:
            if not isinstance(value, Literal):
                raise InvalidQuery("IN and BETWEEN take literal values only")
            if value.value is None:
                raise InvalidQuery("NULL in IN or BETWEEN never matches; use IS NULL")
            self._type_literal(value, spec)

    def _not_null_columns(self, condition: Any) -> set[str]:
        """Columns that the WHERE clause guarantees non-NULL (a top-level 'col IS NOT NULL')."""
        if isinstance(condition, BooleanCompare) and str(condition.op).upper() == "AND":
            return self._not_null_columns(condition.left) | self._not_null_columns(condition.right)
        if isinstance(condition, NestedBoolean):
            return self._not_null_columns(condition.expression)
        if (
            isinstance(condition, PredicatedExpression)
            and isinstance(condition.predicate, IsCondition)
            and condition.predicate.is_not
            and isinstance(condition.expression, Column)
        ):
            return {self._column(condition.expression).name}
        return set()

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
            if _literal_type(node) != NUMERIC:
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
        spec = self._column(target)
        if spec.nullable and spec.name not in self.not_null:
            raise InvalidQuery(
                f"column {spec.name!r} may hold NULLs, which cannot be sorted; add "
                f"'WHERE {spec.name} IS NOT NULL' or sort the result in the notebook"
            )

    def _released(self, node: Any, clause: str) -> Any:
        """The SELECT expression that ``node`` names in HAVING or ORDER BY."""
        if isinstance(node, Column):
            target = self.outputs.get(_unquote(str(node.name)).lower())
            if target is not None:
                return target
        elif str(node) in self.output_texts:
            return node
        raise InvalidQuery(
            f"{clause} can only use columns and aggregates of the SELECT list, by name"
        )


# -- helpers -----------------------------------------------------------------------------
def _unquote(identifier: str) -> str:
    if len(identifier) >= 2 and identifier[0] in '"`[' and identifier[-1] in '"`]':
        return identifier[1:-1]
    return identifier


def _output_name(item: NamedExpression) -> str:
    if item.name:
        return _unquote(str(item.name))
    if isinstance(item.expression, Column):
        return _unquote(str(item.expression.name).split(".")[-1])
    return str(item.expression)


def _spec_type(spec: ColumnSpec) -> str:
    return {"int": NUMERIC, "float": NUMERIC, "string": STRING, "boolean": BOOLEAN}.get(
        spec.type, DATETIME
    )


def _literal_type(node: Literal) -> str:
    value = node.value
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, (int, float)):
        # Compare before any conversion: a long integer literal does not fit a float.
        if abs(value) > MAX_LITERAL or not math.isfinite(value):
            raise InvalidQuery(f"number {node.text} is out of range (at most {MAX_LITERAL:g})")
        return NUMERIC
    if isinstance(value, str):
        return STRING
    raise InvalidQuery(f"literal {node.text} is not supported")


def _describe(node: Any) -> str:
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
