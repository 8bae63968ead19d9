"""A SmartNoise-SQL plan: the checked query, its cost, and what its noise means.

Everything here is computed from the query and the metadata alone, before any row is read:
each noisy value's mechanism (epsilon, delta, scale), each output column's half-width where
one exists, and SmartNoise-SQL's own odometer total.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lomas_server.accounting import PrivacyLoss
from lomas_server.engines.snsql_adapter import (
    Column,
    NestedExpression,
    OdometerHeterogeneous,
    Privacy,
)

CONFIDENCE = 0.95


@dataclass(frozen=True)
class SqlPlan:
    """A checked query with its exact cost; computed without touching any row."""

    dataset: str
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
    # Only for a column that is one noisy value (a COUNT or a SUM); AVG, VAR and
    # expressions combine several and have no closed-form interval.
    half_width: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "noisy_values": self.noisy_values,
            "half_width": self.half_width,
        }


@dataclass(frozen=True)
class SqlResult:
    columns: list[str]
    rows: list[list[Any]]


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


def column_accuracy(outer: Any, names: list[str], noisy: list[NoisyValue]) -> list[ColumnAccuracy]:
    by_name = {value.name: value for value in noisy}
    out = []
    for name, item in zip(names, outer.select.namedExpressions, strict=True):
        expression = item.expression
        while isinstance(expression, NestedExpression):
            expression = expression.expression
        found = [expression] if isinstance(expression, Column) else expression.find_nodes(Column)
        sources = list(dict.fromkeys(c.name for c in found if c.name in by_name))
        exact = isinstance(expression, Column) and expression.name in by_name
        out.append(
            ColumnAccuracy(name, sources, by_name[expression.name].half_width if exact else None)
        )
    return out


def odometer(mechanisms: list[Any], privacy: Privacy) -> tuple[float, float]:
    """SmartNoise-SQL's own total for these mechanisms (what ``get_privacy_cost`` computes,
    without rewriting the query a second time)."""
    odometer = OdometerHeterogeneous(privacy)
    for mechanism in mechanisms:
        odometer.spend(Privacy(epsilon=mechanism.epsilon, delta=mechanism.delta))
    epsilon, delta = odometer.spent
    return float(epsilon), float(delta)
