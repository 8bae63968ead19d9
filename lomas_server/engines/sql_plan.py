"""A SmartNoise-SQL plan: the checked query, its cost, and what its noise means.

Everything here is computed from the query and the metadata alone, before any row is read:
each noisy value's mechanism (epsilon, delta, scale), each output column's half-width where
one exists (for a mean, as a constant over the group's row count), the public range each
released value must lie in, and SmartNoise-SQL's own odometer total.

A mean's half-width (delta method, normal approximation): the released mean is S/N with
noise e_S on the sum and e_N on the count, so its error is about (e_S - mean * e_N) / N;
with |mean| at most M (the larger bound in magnitude), the 95% half-width is at most
sqrt(w_S^2 + (M w_N)^2) / N, where w_S and w_N are the sum's and the count's own half-widths.

A column computed from one aggregate by adding, subtracting, multiplying or dividing by
numbers, or by ABS (``AVG(age) * 2 + 1``, ``SUM(income) / 1000``), has that aggregate's
half-width times the factor: the interval moves with the value. A column that combines several
noisy values (``SUM(a) + SUM(b)``) has none stated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from lomas_server.accounting import PrivacyLoss
from lomas_server.engines.public_range import within
from lomas_server.engines.snsql_adapter import (
    ArithmeticExpression,
    Column,
    Literal,
    MathFunction,
    NestedExpression,
    OdometerHeterogeneous,
    Privacy,
)
from lomas_server.metadata import DatasetMetadata

CONFIDENCE = 0.95


@dataclass(frozen=True)
class SqlPlan:
    """A checked query with its exact cost; computed without touching any row."""

    dataset: str
    # The normalized query as the analyst's reads (what identifies it: replays, the archive),
    # and as the engines run it (guard_query).
    text: str
    sql: str
    epsilon: float
    delta: float
    loss: PrivacyLoss
    output_names: list[str]
    # Every value SmartNoise-SQL adds noise to, in the order it does.
    noisy_values: list[NoisyValue]
    # For each output column: which noisy values it is computed from, and its accuracy.
    columns: list[ColumnAccuracy]
    # Which groups the release shows (see the module doc).
    group_columns: tuple[str, ...] = ()
    key_grid: tuple[tuple[Any, ...], ...] | None = None
    # With thresholded groups: the noisy count a group needs to be shown.
    threshold: float | None = None
    # The one statement of exact aggregates SmartNoise-SQL sends a DuckDB reader for this
    # plan (recorded while planning, on zero rows): run off the engine thread, then handed
    # back to SmartNoise-SQL, which adds the noise.
    duckdb_sql: str = ""

    @property
    def thresholded(self) -> bool:
        return bool(self.group_columns) and self.key_grid is None


@dataclass(frozen=True)
class NoisyValue:
    """One noise mechanism: an aggregate (e.g. ``sum_income``) released with noise."""

    name: str
    epsilon: float
    delta: float
    scale: float | None
    half_width: float | None  # of the interval holding the true value with CONFIDENCE

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "scale": self.scale,
            "half_width": self.half_width,
        }


@dataclass(frozen=True)
class ColumnAccuracy:
    column: str
    noisy_values: list[str]
    # Only for a column that is one noisy value (a COUNT or a SUM); a mean's depends on the
    # group's row count (below); VAR and other expressions have no closed form here.
    half_width: float | None
    # What the column releases: "count", "sum" or "mean" (of a bounded column), else None.
    kind: str | None = None
    # The public range every released value lies in (None: unbounded on that side).
    lower: float | None = None
    upper: float | None = None
    # A mean's half-width is at most this divided by its group's row count.
    half_width_times_count: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "noisy_values": self.noisy_values,
            "half_width": self.half_width,
            "kind": self.kind,
            "lower": self.lower,
            "upper": self.upper,
            "half_width_times_count": self.half_width_times_count,
        }

    def keep_in_range(self, value: Any) -> Any:
        return within(value, self.lower, self.upper)


@dataclass(frozen=True)
class SqlResult:
    columns: list[str]
    rows: list[list[Any]]
    # How many released values post-processing moved into their public range, per column.
    clamped: dict[str, int] = field(default_factory=dict)


def noisy_values(subquery: Any, mechanisms: list[Any]) -> list[NoisyValue]:
    out = []
    for symbol, mechanism in zip(subquery._select_symbols, mechanisms, strict=True):
        if mechanism is None:
            continue
        try:
            half_width = float(mechanism.accuracy(1 - CONFIDENCE))
        except Exception:  # a mechanism without an accuracy formula
            half_width = None
        scale = getattr(mechanism, "scale", None)
        out.append(
            NoisyValue(
                name=symbol.name,
                epsilon=float(mechanism.epsilon),
                delta=float(mechanism.delta or 0.0),
                scale=float(scale) if scale is not None else None,
                half_width=half_width,
            )
        )
    return out


def column_accuracy(
    outer: Any, names: list[str], noisy: list[NoisyValue], metadata: DatasetMetadata
) -> list[ColumnAccuracy]:
    by_name = {value.name: value for value in noisy}
    types = [symbol.expression.type() for symbol in outer._select_symbols]
    out = []
    for name, item, kind in zip(names, outer.select.namedExpressions, types, strict=True):
        expression = item.expression
        while isinstance(expression, NestedExpression):
            expression = expression.expression
        found = [expression] if isinstance(expression, Column) else expression.find_nodes(Column)
        sources = list(dict.fromkeys(c.name for c in found if c.name in by_name))
        exact = isinstance(expression, Column) and expression.name in by_name
        half_width = by_name[expression.name].half_width if exact else None
        described = _described(name, sources, half_width, expression, by_name, metadata)
        if described.kind is None:
            described = _scaled(described, expression, by_name, metadata)
        if kind == "int" and described.half_width is not None:
            described = replace(described, half_width=_whole(described.half_width, drawn=exact))
        out.append(described)
    return out


def _whole(half_width: float, *, drawn: bool) -> float:
    """The half-width of a whole-number output. One noisy value as drawn is released as the
    nearest whole number (sql_released_keys.NoisyWholeNumber): it is within k of the truth when
    the noise is below k + 0.5, so the least whole k >= w - 0.5 keeps the confidence. Arithmetic
    on it is cut to a whole number by SmartNoise-SQL (towards 0, less than 1 away): the least
    whole k >= w does."""
    if drawn:
        return float(max(0, math.ceil(half_width - 0.5)))
    return float(math.ceil(half_width))


def _scaled(
    plain: ColumnAccuracy,
    expression: Any,
    by_name: dict[str, NoisyValue],
    metadata: DatasetMetadata,
) -> ColumnAccuracy:
    """A column that is one aggregate moved and scaled by numbers: that aggregate's
    half-width times the factor (see the module doc). Not kept in a range: the aggregate's
    range moves with the numbers."""
    found = _linear(expression)
    if found is None or found[0] is None:
        return plain
    base, factor = found
    inner = _described(plain.column, plain.noisy_values, None, base, by_name, metadata)
    if isinstance(base, Column) and base.name in by_name:
        width = by_name[base.name].half_width
        if width is not None:
            return ColumnAccuracy(plain.column, plain.noisy_values, width * factor)
    elif inner.half_width_times_count is not None:
        times_count = inner.half_width_times_count * factor
        return ColumnAccuracy(plain.column, plain.noisy_values, None, None, None, None, times_count)
    return plain


def _linear(expression: Any) -> tuple[Any, float] | None:
    """(the one aggregate ``expression`` is computed from, or None for a number alone; the
    factor its errors are multiplied by), or None when it is not of that form."""
    while isinstance(expression, NestedExpression):
        expression = expression.expression
    if isinstance(expression, Literal):
        return (None, 0.0) if isinstance(expression.value, (int, float)) else None
    if isinstance(expression, Column):
        return expression, 1.0
    if isinstance(expression, MathFunction) and str(expression.name).upper() == "ABS":
        return _linear(expression.expression)  # | |X| - |x| | <= |X - x|
    if not isinstance(expression, ArithmeticExpression):
        return None
    if _is_mean(expression):
        return expression, 1.0
    op = str(expression.op)
    left, right = _linear(expression.left), _linear(expression.right)
    if left is None or right is None:
        return None
    if op in ("+", "-"):
        if left[0] is not None and right[0] is not None:
            return None  # two noisy values: no closed form stated
        return left if right[0] is None else right
    if op == "*":
        if (number := _number(expression.left)) is not None:
            return right[0], right[1] * abs(number)
        if (number := _number(expression.right)) is not None:
            return left[0], left[1] * abs(number)
        return None  # a product of noisy values
    if op == "/" and (number := _number(expression.right)):
        return left[0], left[1] / abs(number)
    return None  # %: not a scaling


def _number(expression: Any) -> float | None:
    while isinstance(expression, NestedExpression):
        expression = expression.expression
    if isinstance(expression, Literal) and isinstance(expression.value, (int, float)):
        return float(expression.value)
    return None


def _is_mean(expression: Any) -> bool:
    """SmartNoise-SQL's rewrite of an AVG: ``sum_<c> / count_<c>``."""
    return (
        isinstance(expression, ArithmeticExpression)
        and str(expression.op) == "/"
        and isinstance(expression.left, Column)
        and isinstance(expression.right, Column)
        and expression.left.name.startswith("sum_")
        and expression.right.name.startswith("count_")
        and expression.left.name[len("sum_") :] == expression.right.name[len("count_") :]
    )


def _described(
    name: str,
    sources: list[str],
    half_width: float | None,
    expression: Any,
    by_name: dict[str, NoisyValue],
    metadata: DatasetMetadata,
) -> ColumnAccuracy:
    """The column's kind and public range, read from SmartNoise-SQL's rewrite: a COUNT is
    one noisy ``count_*``, a SUM one noisy ``sum_<column>``, an AVG ``sum_<c> / count_<c>``."""
    plain = ColumnAccuracy(name, sources, half_width)
    if isinstance(expression, Column) and expression.name in by_name:
        if expression.name.startswith("count_"):
            return ColumnAccuracy(name, sources, half_width, "count", lower=0.0)
        bounds = _bounds_of(expression.name, "sum_", metadata)
        if bounds is None:
            return plain
        low, high = bounds
        return ColumnAccuracy(
            name,
            sources,
            half_width,
            "sum",
            lower=0.0 if low >= 0 else None,
            upper=0.0 if high <= 0 else None,
        )
    if (
        isinstance(expression, ArithmeticExpression)
        and str(expression.op) == "/"
        and isinstance(expression.left, Column)
        and isinstance(expression.right, Column)
        and expression.left.name in by_name
        and expression.right.name in by_name
        and expression.right.name.startswith("count_")
        and expression.left.name[len("sum_") :] == expression.right.name[len("count_") :]
    ):
        bounds = _bounds_of(expression.left.name, "sum_", metadata)
        total, count = by_name[expression.left.name], by_name[expression.right.name]
        if bounds is None or total.half_width is None or count.half_width is None:
            return plain
        low, high = bounds
        largest = max(abs(low), abs(high))
        times_count = math.hypot(total.half_width, largest * count.half_width)
        return ColumnAccuracy(name, sources, None, "mean", low, high, times_count)
    return plain


def _bounds_of(
    noisy_name: str, prefix: str, metadata: DatasetMetadata
) -> tuple[float, float] | None:
    if not noisy_name.startswith(prefix):
        return None
    spec = metadata.summed_column(noisy_name[len(prefix) :])
    return None if spec is None else spec.numeric_bounds()


def odometer(mechanisms: list[Any], privacy: Privacy) -> tuple[float, float]:
    """SmartNoise-SQL's own total for these mechanisms (what ``get_privacy_cost`` computes,
    without rewriting the query a second time)."""
    odometer = OdometerHeterogeneous(privacy)
    for mechanism in mechanisms:
        odometer.spend(Privacy(epsilon=mechanism.epsilon, delta=mechanism.delta))
    epsilon, delta = odometer.spent
    return float(epsilon), float(delta)
