"""What a refusal says instead of the parser: each construct the SQL subset leaves out, named in
SQL's words, with what to write instead.

One table serves the allow-list walk (sql_allowlist.py, sql_where.py), which meets constructs
the parser read, and sql_syntax.py, which meets them in queries the parser could not read, so a
construct is explained the same way wherever it is found. docs/sql-allowlist.md lists the same
suggestions; keep the two in step.
"""

from __future__ import annotations

from typing import Any

DOCS = "docs/sql-allowlist.md"
QUOTE_LIMIT = 40

ONE_QUERY = "one table and one SELECT per query; run two queries and combine their results"
QUANTILES = "use %%lomas_opendp with a median or quantile aggregate"
ALLOWED_FUNCTIONS = (
    "the aggregates are COUNT, SUM, AVG, VAR and STDDEV, and over their results ABS, CEIL, "
    f"FLOOR, SIGN and ROUND ({DOCS})"
)
BY_GROUP = "aggregate per group with GROUP BY instead"
COMPARE_VALUES = "compare the column with values as written (col = 'a', col IN ('a', 'b'))"
DATES = "col >= '2000-01-01' AND col < '2001-01-01'"
COMPARE_DATES = f"compare the column with dates ({DATES})"
LIST_VALUES = "compare with = or list the values with IN ('a', 'b')"
OWN_TYPE = "a conversion can fail on some rows; compare the column with a value of its own type"
CHOOSE_ROWS = "choose rows with WHERE, or split them with GROUP BY"

SUBQUERY = f"subqueries are not supported: {ONE_QUERY}, or put the condition in WHERE"
WITH = f"WITH (a common table expression) is not supported: {ONE_QUERY}"
JOIN = f"JOIN is not supported: {ONE_QUERY}"
SEVERAL_TABLES = f"FROM names several tables: {ONE_QUERY}"
WINDOW = f"window functions (OVER) are not supported; {BY_GROUP}"
PATTERN = f"pattern matching (LIKE, regular expressions) is not supported; {LIST_VALUES}"
PLACEHOLDER = "placeholders (?, :name, $1) are not supported; write the value in the query"
CAST = f"conversions (CAST, '::') are not supported: {OWN_TYPE}"
CONDITIONAL = f"conditional expressions (CASE, IIF, COALESCE) are not supported; {CHOOSE_ROWS}"
TYPED_LITERAL = f"typed values (DATE '...') are not supported; write dates as text: {DATES}"
SEVERAL_STATEMENTS = "send one SELECT per query: remove the ';' and what follows it"

# Functions by what they are; each kind has one reason and one thing to write instead.
_KINDS: dict[str, tuple[str, frozenset[str]]] = {
    "quantile": (
        f"SQL queries release counts, sums, averages and variances; {QUANTILES}",
        frozenset(
            {
                "MEDIAN",
                "PERCENTILE",
                "PERCENTILE_CONT",
                "PERCENTILE_DISC",
                "QUANTILE",
                "QUANTILE_CONT",
                "QUANTILE_DISC",
                "APPROX_QUANTILE",
                "APPROX_PERCENTILE",
                "APPROX_MEDIAN",
            }
        ),
    ),
    "extreme": (
        "the smallest or largest value is one person's value; use %%lomas_opendp with a "
        "quantile aggregate (q = 0.05 or 0.95, say) instead",
        frozenset({"MIN", "MAX"}),
    ),
    "window": (
        BY_GROUP,
        frozenset(
            {
                "ROW_NUMBER",
                "RANK",
                "DENSE_RANK",
                "NTILE",
                "LAG",
                "LEAD",
                "FIRST_VALUE",
                "LAST_VALUE",
                "NTH_VALUE",
                "CUME_DIST",
                "PERCENT_RANK",
            }
        ),
    ),
    "text": (
        f"functions on text would run on every row; {COMPARE_VALUES}",
        frozenset(
            {
                "UPPER",
                "LOWER",
                "LENGTH",
                "LEN",
                "CHAR_LENGTH",
                "CHARACTER_LENGTH",
                "TRIM",
                "LTRIM",
                "RTRIM",
                "SUBSTRING",
                "SUBSTR",
                "CONCAT",
                "CONCAT_WS",
                "POSITION",
                "STRPOS",
                "INSTR",
                "REPLACE",
                "LEFT",
                "RIGHT",
                "REVERSE",
                "LPAD",
                "RPAD",
                "INITCAP",
                "SPLIT_PART",
            }
        ),
    ),
    "pattern": (
        LIST_VALUES,
        frozenset(
            {
                "REGEXP_LIKE",
                "REGEXP_MATCHES",
                "REGEXP_CONTAINS",
                "REGEXP_SUBSTR",
                "REGEXP_REPLACE",
                "REGEXP_EXTRACT",
            }
        ),
    ),
    "date": (
        f"functions on dates would run on every row; {COMPARE_DATES}",
        frozenset(
            {
                "YEAR",
                "MONTH",
                "DAY",
                "HOUR",
                "MINUTE",
                "SECOND",
                "EXTRACT",
                "DAYNAME",
                "DATE_PART",
                "DATEPART",
                "DATE_TRUNC",
                "DATEADD",
                "DATEDIFF",
                "DATE_ADD",
                "DATE_SUB",
                "TO_DATE",
                "TO_CHAR",
                "STRFTIME",
                "NOW",
                "GETDATE",
                "CURRENT_DATE",
                "CURRENT_TIME",
                "CURRENT_TIMESTAMP",
            }
        ),
    ),
    "cast": (
        OWN_TYPE,
        frozenset({"CAST", "TRY_CAST", "CONVERT", "TO_NUMBER"}),
    ),
    "conditional": (
        CHOOSE_ROWS,
        frozenset(
            {
                "CASE",
                "IIF",
                "IF",
                "CHOOSE",
                "COALESCE",
                "NULLIF",
                "IFNULL",
                "ISNULL",
                "NVL",
                "NVL2",
                "GREATEST",
                "LEAST",
                "DECODE",
            }
        ),
    ),
    "math": (
        "its domain errors and overflow depend on the values; over aggregates use + - * and "
        "/ or % by a number, ABS, CEIL, FLOOR, SIGN or ROUND",
        frozenset(
            {
                "LOG",
                "LN",
                "LOG10",
                "LOG2",
                "EXP",
                "SQRT",
                "CBRT",
                "POWER",
                "POW",
                "SQUARE",
                "SIN",
                "COS",
                "TAN",
                "COT",
                "ASIN",
                "ACOS",
                "ATAN",
                "ATAN2",
                "ATANH",
                "DEGREES",
                "RADIANS",
                "MOD",
            }
        ),
    ),
    "truncation": (
        "use ROUND(x, d), FLOOR(x) or CEIL(x)",
        frozenset({"TRUNC", "TRUNCATE"}),
    ),
    "grouping": (
        "GROUP BY takes column names only; run one query per grouping",
        frozenset({"ROLLUP", "CUBE", "GROUPING", "GROUPING_ID"}),
    ),
    "random": (
        "a query's result may depend on the data and the noise only; write values as numbers",
        frozenset({"RANDOM", "RAND", "NEWID", "UUID", "PI"}),
    ),
    "aggregate": (
        ALLOWED_FUNCTIONS,
        frozenset(
            {
                "STRING_AGG",
                "ARRAY_AGG",
                "GROUP_CONCAT",
                "LISTAGG",
                "JSON_AGG",
                "BOOL_AND",
                "BOOL_OR",
                "EVERY",
                "BIT_AND",
                "BIT_OR",
                "ANY_VALUE",
                "FIRST",
                "LAST",
                "MODE",
                "PRODUCT",
                "CORR",
                "COVAR_POP",
                "COVAR_SAMP",
            }
        ),
    ),
}
# Other spellings of the aggregates the subset has.
_SPELLINGS = {
    "STDEV": "STDDEV",
    "STDDEV_POP": "STDDEV",
    "STDDEV_SAMP": "STDDEV",
    "VAR_POP": "VAR",
    "VAR_SAMP": "VAR",
    "VARIANCE_POP": "VAR",
    "VARIANCE_SAMP": "VAR",
    "MEAN": "AVG",
    "AVERAGE": "AVG",
    "COUNT_BIG": "COUNT",
}
_REASONS = {name: reason for reason, names in _KINDS.values() for name in names}


def known_function(name: str) -> bool:
    """Whether ``name`` is a function the table above has advice for."""
    upper = name.upper()
    return upper in _REASONS or upper in _SPELLINGS


def function_refusal(name: str) -> str:
    """Why the function ``name`` is refused, and what to write instead."""
    upper = name.upper()
    if upper in _SPELLINGS:
        return f"{upper} is not supported; write {_SPELLINGS[upper]}"
    reason = _REASONS.get(upper)
    if reason is None:
        return f"{quote(upper)} is not a function queries may use; {ALLOWED_FUNCTIONS}"
    return f"{upper} is not supported: {reason}"


def distinct_refusal(name: str) -> str:
    return (
        f"{name}(DISTINCT ...) is not supported; write {name}(col), or COUNT(DISTINCT col) to "
        "count the values"
    )


def statement_refusal(word: str) -> str:
    return f"only SELECT queries are accepted, not {quote(word.upper())}"


# The parser's classes, by the SQL they were read from.
_FUNCTION_CLASSES = {
    "CaseExpression": "CASE",
    "CastFunction": "CAST",
    "IIFFunction": "IIF",
    "ChooseFunction": "CHOOSE",
    "PowerFunction": "POWER",
    "TruncFunction": "TRUNC",
    "RoundFunction": "ROUND",
    "SubstringFunction": "SUBSTRING",
    "ConcatFunction": "CONCAT",
    "CoalesceFunction": "COALESCE",
    "ExtractFunction": "EXTRACT",
    "CurrentDateFunction": "CURRENT_DATE",
    "CurrentTimeFunction": "CURRENT_TIME",
    "CurrentTimestampFunction": "CURRENT_TIMESTAMP",
    "DayNameFunction": "DAYNAME",
    "UpperFunction": "UPPER",
    "LowerFunction": "LOWER",
    "TrimFunction": "TRIM",
    "CharLengthFunction": "CHAR_LENGTH",
    "PositionFunction": "POSITION",
}
_NAMED_CLASSES = {"MathFunction", "AggFunction", "BareFunction", "RankingFunction"}
_SUBQUERY_CLASSES = {"AliasedSubquery", "Query", "Select"}
_OTHER_CLASSES = {
    "AllColumns": "*",
    "NestedExpression": "an expression in parentheses",
    "BooleanCompare": "a comparison",
    "NestedBoolean": "a condition in parentheses",
    "LogicalNot": "NOT",
    "PredicatedExpression": "IN, BETWEEN or IS",
    "InCondition": "IN",
    "BetweenCondition": "BETWEEN",
    "IsCondition": "IS",
    "ColumnBoolean": "a column used as a condition",
}


def function_name(node: Any) -> str | None:
    """The SQL name of the function ``node`` calls, if it is a call."""
    kind = type(node).__name__
    if kind in _NAMED_CLASSES and getattr(node, "name", None) is not None:
        return str(node.name).upper()
    return _FUNCTION_CLASSES.get(kind)


def describe(node: Any) -> str:
    """A construct as a refusal names it, in SQL's words, never the parser's classes."""
    kind = type(node).__name__
    name = function_name(node)
    if name is not None:
        return name
    if kind in ("Column", "Literal"):
        return quote(str(node))
    if kind == "ArithmeticExpression":
        return f"arithmetic ({quote(str(node.op))})"
    if kind in _SUBQUERY_CLASSES:
        return "a subquery"
    return _OTHER_CLASSES.get(kind, "this expression")


def select_refusal(node: Any) -> str:
    """Why ``node`` may not be in the SELECT list (where aggregates, and arithmetic and a few
    functions over them, are)."""
    name = function_name(node)
    if name is not None:
        return function_refusal(name)
    if type(node).__name__ in _SUBQUERY_CLASSES:
        return SUBQUERY
    return f"{describe(node)} is not allowed in the SELECT list; {ALLOWED_FUNCTIONS}"


def where_refusal(node: Any) -> str:
    """Why ``node`` may not be in WHERE, which runs on every row: nothing that could fail on
    some rows and not on others."""
    while type(node).__name__ == "NestedExpression":
        node = node.expression
    kind = type(node).__name__
    if kind == "AggFunction":
        return "aggregates are not allowed in WHERE, which chooses rows; compare them in HAVING"
    if kind in _SUBQUERY_CLASSES:
        return SUBQUERY
    name = function_name(node)
    if name is not None and known_function(name):
        return function_refusal(name)
    if name is not None or kind == "ArithmeticExpression":
        return (
            f"{describe(node)} is not allowed in WHERE: it would run on every row and could fail "
            "on some; compare columns with values directly"
        )
    return f"{describe(node)} is not allowed in WHERE; compare columns with values directly"


def quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    """Part of the query as a message quotes it: on one line, printable, cut short.

    A message is one line the analyst reads, whatever the query held (line breaks, control
    characters, a 20,000-character string)."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(flat) > limit:
        flat = flat[: limit - 3] + "..."
    mark = '"' if "'" in flat and '"' not in flat else "'"
    return f"{mark}{flat}{mark}"
