"""An OpenDP query compiled into OpenDP's Polars measurements, from the metadata alone.

The privacy unit from ``max_ids`` (the ``private_id`` column makes OpenDP truncate each
person's rows to ``max_ids``), the bounds of every sum, mean, variance and quantile from the
column's metadata, public keys from ``public_keys``, quantile candidates from the bounds;
and the released frame back into the asked statistics (docs/opendp.md). The engine
(opendp_engine.py) plans and runs what this builds.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lomas_server.accounting import MechanismLoss, PrivacyLoss
from lomas_server.arrow_schema import empty_arrow, plain_strings
from lomas_server.engines.opendp_calibration import resolve
from lomas_server.engines.opendp_query import SUMS, Aggregate, Filter, OpenDPQuery
from lomas_server.engines.public_range import within
from lomas_server.errors import InvalidQuery
from lomas_server.limits import MIN_EPSILON, MIN_RHO
from lomas_server.literals import epoch_microseconds
from lomas_server.metadata import ColumnSpec, DatasetMetadata
from lomas_server.noise import Noise
from lomas_server.readable import PARQUET_SCAN, reads_as

log = logging.getLogger(__name__)
QUANTILE_CANDIDATES = 201
ACCURACY_SEARCH_STEPS = 24
ACCURACY_BRACKET_STEPS = 8
ACCURACY_PRECISION = 1e-4  # relative: the budget found is at most this much above the least
MAX_SEARCH_EPSILON = 100.0
SQUARED = "__squared_"
KEY_COUNT = "__rows__n"  # the noisy count behind thresholded groups


@dataclass(frozen=True)
class OpenDPResult:
    columns: list[str]
    rows: list[list[Any]]
    # How many released values were moved into their public range, per column.
    clamped: dict[str, int] = field(default_factory=dict)


def refusal(err: Exception) -> InvalidQuery:
    """OpenDP's refusal while building from metadata and parameters (no data involved), in
    the server's own words; OpenDP's go to the log."""
    message = str(err).strip().splitlines()
    text = next((line.strip() for line in message if line.strip()), type(err).__name__)
    log.info("OpenDP refused a query: %s", text[:500])
    if "max_length" in text or "max_groups" in text:
        return InvalidQuery(
            "OpenDP cannot build this query: sums of float columns need an upper bound on the "
            "number of rows, and the dataset's metadata declares none ('rows')"
        )
    if "scale" in text.lower() or "budget" in text.lower():
        return InvalidQuery(
            "OpenDP cannot build this query: no noise scale meets this budget; raise it"
        )
    return InvalidQuery(
        "OpenDP cannot build this query from the dataset's metadata with these privacy parameters"
    )


class Compiler:
    """Builds the OpenDP Context and queries for one OpenDPQuery, from metadata alone."""

    def __init__(self, metadata: DatasetMetadata, query: OpenDPQuery, noise: Noise) -> None:
        self.metadata = metadata
        self.query = query
        self.noise = noise
        self.grid = metadata.key_grid(self.group_columns) if self.group_columns else None
        if self.group_columns and self.grid is None:
            if noise.delta is None or noise.delta <= 0:
                raise metadata.threshold_needs_delta(self.group_columns)
            self.delta: float | None = noise.delta
        else:
            self.delta = None

    @property
    def group_columns(self) -> list[str]:
        return list(self.query.key_columns)

    # -- data ------------------------------------------------------------------------------------
    def frame(self, table: Any | None) -> Any:
        """A LazyFrame of the metadata's schema: empty for planning, or the rows (an Arrow
        table read in place, or a Parquet file scanned in streaming)."""
        import polars as pl

        if table is not None and reads_as(table) == PARQUET_SCAN:
            lazy = table.lazy_frame()  # built here from the admin's source, never by a client
        else:
            source = plain_strings(table) if table is not None else empty_arrow(self.metadata)
            lazy = pl.from_arrow(source).lazy()  # type: ignore[union-attr]
        numbers = self.metadata.booleans_as_numbers
        summed = {a.column for a in self.query.aggregates if a.op in SUMS and a.column in numbers}
        if summed:
            # A boolean adds up as its number (true 1, false 0), a row-by-row cast that cannot
            # fail, made before OpenDP sees the rows like the squares below.
            lazy = lazy.with_columns(
                pl.col(c).cast(pl.Int64).alias(numbers[c].name) for c in sorted(summed)
            )
        squares = {
            a.column for a in self.query.aggregates if a.op == "variance" and a.column is not None
        }
        if squares:
            # The square of the value clamped to its bounds, as the sum and SQL's variance see
            # it (a value past the bounds would otherwise enter squared, then clamped).
            lazy = lazy.with_columns(
                pl.col(c)
                .cast(pl.Float64)
                .clip(*self._summed(c).numeric_bounds())
                .pow(2)
                .alias(SQUARED + c)
                for c in sorted(squares)
            )
        return lazy

    # -- the measurement -----------------------------------------------------------------------
    def build(self, lazy: Any, budget: float) -> tuple[Any, list[Any]]:
        """The Context and the queries it releases: one, or one per noisy statistic when the
        keys are public (see the module doc)."""
        import opendp.prelude as dp
        import polars as pl

        expressions = [e for a in self.query.aggregates for e in self._expressions(a)]
        if self.group_columns and self.grid is None and not self._counts_rows():
            # Groups whose keys are not public are released above a threshold on a noisy
            # count of rows, which OpenDP needs among the expressions.
            expressions.append(_dp(pl.len()).noise().alias(KEY_COUNT))
        batches = [[e] for e in expressions] if self.grid is not None else [expressions]
        person = self.metadata.id_column
        try:
            if person is None:
                unit = dp.unit_of(contributions=self.metadata.max_ids)
            else:
                # OpenDP takes the identifier as an expression, whatever its annotation says.
                identifier: Any = pl.col(person)
                unit = dp.unit_of(contributions=1, identifier=identifier)
            context = dp.Context.compositor(
                data=lazy,
                privacy_unit=unit,
                privacy_loss=self.noise.loss_of(budget, self.delta),
                split_evenly_over=len(batches),
                margins=self._margins(),
            )
            grid = self._grid_frame() if self.grid is not None else None
            parts = []
            for batch in batches:
                query = context.query()
                for condition in self.query.filters:
                    query = query.filter(_condition(condition, self.metadata))
                if person is not None:
                    # At most max_ids rows per person, drawn at random among those the
                    # filters keep (as SmartNoise-SQL's reservoir does).
                    query = query.truncate_per_group(self.metadata.max_ids)
                if self.group_columns:
                    query = query.group_by(self.group_columns).agg(batch)
                    if grid is not None:
                        query = query.with_keys(grid)
                else:
                    query = query.select(batch)
                parts.append(query)
        except InvalidQuery:
            raise
        except Exception as err:
            raise refusal(err) from err
        return context, parts

    def _counts_rows(self) -> bool:
        return any(
            a.op == "histogram" or (a.op == "count" and a.column is None)
            for a in self.query.aggregates
        )

    def _grid_frame(self) -> Any:
        """The declared public keys, every combination, as a LazyFrame of the columns' types."""
        import polars as pl

        assert self.grid is not None
        columns = self.group_columns
        specs = [self.metadata.columns[c] for c in columns]
        return pl.LazyFrame(
            {c: [row[i] for row in self.grid] for i, c in enumerate(columns)},
            schema={c: _polars_type(spec) for c, spec in zip(columns, specs, strict=True)},
        )

    def _margins(self) -> list[Any]:
        """What OpenDP may assume of the data: only what follows from the metadata's ``rows``,
        the most rows it holds, checked against the data before it is read
        (datasets/conform.py). No group has more rows, and there are no more groups than rows;
        nothing is claimed from categories, since a row may hold any value, declared or not.
        (The number of groups only sizes the allowance for float rounding in sums: declaring
        ``rows`` groups instead of a handful changes a noise scale in its eighth digit.)"""
        import opendp.prelude as dp

        rows = self.metadata.rows
        if not rows:
            return []
        margins = [dp.polars.Margin(by=[], max_length=rows)]
        if self.group_columns:
            margins.append(
                dp.polars.Margin(by=self.group_columns, max_length=rows, max_groups=rows)
            )
        return margins

    def _expressions(self, aggregate: Aggregate) -> list[Any]:
        import polars as pl

        name, op = aggregate.name, aggregate.op
        if op in ("count", "histogram") and aggregate.column is None or op == "histogram":
            return [_dp(pl.len()).noise().alias(f"{name}__n")]
        spec = self.metadata.columns[aggregate.column]  # type: ignore[index]
        column = pl.col(spec.name)
        if op == "count":
            return [_dp(column).count().alias(f"{name}__n")]
        if op in SUMS:
            spec = self._summed(spec.name)
            column = pl.col(spec.name)
        total = _dp(_null_free(column, spec)).sum(_bounds_with_zero(spec)).alias(f"{name}__sum")
        count = _dp(column).count().alias(f"{name}__n")
        if op == "sum":
            return [total]
        if op == "mean":
            return [total, count]
        if op == "variance":
            lower, upper = spec.numeric_bounds()
            largest = max(lower**2, upper**2)
            smallest = 0.0 if lower <= 0 <= upper else min(lower**2, upper**2)
            squares = _dp(pl.col(SQUARED + str(aggregate.column)).fill_null(0.0)).sum(
                (min(smallest, 0.0), largest)
            )
            return [total, squares.alias(f"{name}__squares"), count]
        q = 0.5 if op == "median" else aggregate.q
        return [_dp(column).quantile(q, candidates=_candidates(spec)).alias(f"{name}__q")]

    def _summed(self, column: str) -> ColumnSpec:
        """The column a sum, mean or variance of ``column`` adds up (a boolean's number)."""
        return self.metadata.summed(self.metadata.columns[column])

    def loss(self, context: Any) -> PrivacyLoss:
        declared = context.accountant.map(context.d_in)
        if isinstance(declared, tuple):
            value, delta = float(declared[0]), float(declared[1])
        else:
            value, delta = float(declared), 0.0
        kind = "approx_dp" if self.noise.mechanism == "laplace" else "zcdp"
        return PrivacyLoss([MechanismLoss(kind, value, delta)])

    # -- accuracy --------------------------------------------------------------------------------
    def accuracy(self, summary: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rows = summary.to_dicts()
        noisy = [
            {
                "name": r["column"],
                "aggregate": r["aggregate"],
                "distribution": r["distribution"],
                "scale": r["scale"],
                "half_width": r.get("accuracy"),
            }
            for r in rows
        ]
        by_name = {r["column"]: r.get("accuracy") for r in rows}
        columns = []
        for a in self.query.aggregates:
            # An output name never holds "__", so what precedes the last one is the output.
            parts = [n for n in by_name if "__" in n and n.rsplit("__", 1)[0] == a.name]
            exact = len(parts) == 1 and a.op in ("count", "sum", "histogram")
            lower, upper = self._public_range(a)
            columns.append(
                {
                    "column": a.name,
                    "noisy_values": parts,
                    "half_width": by_name[parts[0]] if exact else None,
                    "kind": a.op,
                    "lower": lower,
                    "upper": upper,
                    "half_width_times_count": self._mean_half_width(a, by_name),
                }
            )
        return noisy, columns

    def _public_range(self, aggregate: Aggregate) -> tuple[float | None, float | None]:
        """Where the statistic's true value lies, from the metadata alone."""
        if aggregate.op in ("count", "histogram"):
            return 0.0, None
        if aggregate.column is None:
            return None, None
        low, high = self._summed(aggregate.column).numeric_bounds()
        if aggregate.op == "sum":
            return (0.0 if low >= 0 else None), (0.0 if high <= 0 else None)
        if aggregate.op == "variance":
            return 0.0, ((high - low) / 2) ** 2
        return low, high  # mean, median, quantile

    def _mean_half_width(
        self, aggregate: Aggregate, by_name: dict[str, float | None]
    ) -> float | None:
        """A mean's half-width times its group's row count (delta method; see sql_plan.py)."""
        if aggregate.op != "mean" or aggregate.column is None:
            return None
        total, count = by_name.get(f"{aggregate.name}__sum"), by_name.get(f"{aggregate.name}__n")
        if total is None or count is None:
            return None
        low, high = self._summed(aggregate.column).numeric_bounds()
        return math.hypot(total, max(abs(low), abs(high)) * count)

    def budget_for_accuracy(self, empty: Any) -> float:
        """The smallest epsilon (or rho) at which every noisy value meets the target accuracy."""
        target = self.noise.half_width
        assert target is not None

        def worst(budget: float) -> float:
            from opendp.accuracy import summarize_polars_measurement

            _, parts = self.build(empty, budget)
            try:
                values = [
                    r.get("accuracy")
                    for part in parts
                    for r in summarize_polars_measurement(
                        resolve(part), alpha=1 - self.noise.confidence
                    ).to_dicts()
                ]
            except Exception as err:
                raise refusal(err) from err
            known = [v for v in values if v is not None]
            if not known:
                raise InvalidQuery(
                    "OpenDP gives no accuracy for these aggregates: choose epsilon or rho instead"
                )
            return max(known)

        lowest = MIN_RHO if self.noise.mechanism == "gaussian" else MIN_EPSILON
        if worst(MAX_SEARCH_EPSILON) > target:
            raise InvalidQuery(
                f"no budget up to {MAX_SEARCH_EPSILON:g} reaches a half-width of {target:g}; "
                "ask for less accuracy"
                + (
                    " (the target is for each noisy value: a mean's sum, in the column's "
                    "units, and its count, in rows; not for the mean itself)"
                    if any(a.op in ("mean", "variance") for a in self.query.aggregates)
                    else ""
                )
            )
        if worst(lowest) <= target:
            return lowest
        # The half-width falls as 1/epsilon (Laplace) or 1/sqrt(rho) (Gaussian), up to the
        # rounding of discrete noise: one evaluation places the answer, a few steps bracket it
        # and a short bisection settles it (instead of bisecting the whole range).
        power = 2 if self.noise.mechanism == "gaussian" else 1
        guess = min(max((worst(1.0) / target) ** power, lowest), MAX_SEARCH_EPSILON)
        low, high = lowest, MAX_SEARCH_EPSILON
        step = 1.02
        for _ in range(ACCURACY_BRACKET_STEPS):
            if worst(guess) <= target:
                high = guess
                below = max(guess / step, lowest)
                if worst(below) > target:
                    low = below
                    break
                guess = below
            else:
                low = guess
                above = min(guess * step, MAX_SEARCH_EPSILON)
                if worst(above) <= target:
                    high = above
                    break
                guess = above
            step *= step
        for _ in range(ACCURACY_SEARCH_STEPS):
            if high / low < 1 + ACCURACY_PRECISION:
                break
            middle = math.sqrt(low * high)
            if worst(middle) <= target:
                high = middle
            else:
                low = middle
        return float(f"{high:.6g}") if worst(float(f"{high:.6g}")) <= target else high

    # -- outputs ---------------------------------------------------------------------------------
    def outputs(self, released: pd.DataFrame, *, postprocess: bool = True) -> OpenDPResult:
        """The asked statistics, one row per group: in the declared grid's order for public
        keys (as the SQL path), else sorted by key, so that the order says nothing of how the
        engine met the rows. ``postprocess``: each statistic kept in its public range."""
        keys = self.group_columns
        if keys and self.grid is not None:
            position = {key: index for index, key in enumerate(self.grid)}
            order = [position[tuple(row)] for row in released[keys].itertuples(index=False)]
            released = released.iloc[sorted(range(len(order)), key=order.__getitem__)]
            released = released.reset_index(drop=True)
        elif keys:
            released = released.sort_values(keys, na_position="last").reset_index(drop=True)
        columns = [*keys, *[a.name for a in self.query.aggregates]]
        unbounded = (None, None)
        ranges = [
            self._public_range(a) if postprocess else unbounded for a in self.query.aggregates
        ]
        clamped: dict[str, int] = {}
        rows = []
        for _, row in released.iterrows():
            values = []
            for aggregate, (lower, upper) in zip(self.query.aggregates, ranges, strict=True):
                value = _finish(aggregate, row)
                kept = within(value, lower, upper)
                if kept is not value:  # the very value when it stays (NaN included)
                    clamped[aggregate.name] = clamped.get(aggregate.name, 0) + 1
                values.append(kept)
            rows.append([*[row[k] for k in keys], *values])
        return OpenDPResult(columns, rows, clamped)


def _finish(aggregate: Aggregate, row: pd.Series) -> Any:
    """Post-processing of the released noisy values into the asked statistic."""
    name, op = aggregate.name, aggregate.op
    if op in ("count", "histogram"):
        return row[f"{name}__n"]
    if op == "sum":
        return row[f"{name}__sum"]
    if op in ("quantile", "median"):
        return row[f"{name}__q"]
    n = row[f"{name}__n"]
    if n is None or pd.isna(n) or n <= 0:
        return None
    mean = row[f"{name}__sum"] / n
    if op == "mean":
        return mean
    return row[f"{name}__squares"] / n - mean * mean  # below 0 is moved by the public range


def _condition(f: Filter, metadata: DatasetMetadata) -> Any:
    """A filter as a Polars expression. Values were typed against the column when the query
    was parsed; a timestamp compares as its microseconds (OpenDP takes no datetime literal,
    and reading a timestamp as its integer cannot fail)."""
    import polars as pl

    column = pl.col(f.column)
    if f.op == "is_null":
        return column.is_null()
    if f.op == "is_not_null":
        return column.is_not_null()
    values = f.value if f.op == "in" else (f.value,)
    if metadata.columns[f.column].type == "datetime":
        column = column.cast(pl.Int64)
        values = tuple(epoch_microseconds(v) for v in values)
    if f.op == "in":
        # OpenDP does not take is_in: the same test as a chain of equalities.
        condition = column == values[0]
        for value in values[1:]:
            condition = condition | (column == value)
        return condition
    value = values[0]
    return {
        "==": column == value,
        "!=": column != value,
        "<": column < value,
        "<=": column <= value,
        ">": column > value,
        ">=": column >= value,
    }[f.op]


def _null_free(column: Any, spec: ColumnSpec) -> Any:
    """NULLs add nothing to a sum (OpenDP would put the middle of the bounds there)."""
    return column.fill_null(0 if spec.type == "int" else 0.0)


def _dp(expression: Any) -> Any:
    """OpenDP's ``.dp`` namespace of a Polars expression (added when OpenDP is imported, so
    unknown to the type checker)."""
    return expression.dp


def _bounds_with_zero(spec: ColumnSpec) -> tuple[Any, Any]:
    low, high = spec.numeric_bounds()
    lower, upper = min(low, 0.0), max(high, 0.0)
    if spec.type == "int":
        return int(lower), int(upper)
    return float(lower), float(upper)


def _candidates(spec: ColumnSpec) -> list[Any]:
    lower, upper = spec.lower, spec.upper
    if spec.type == "int" and upper - lower < QUANTILE_CANDIDATES:  # type: ignore[operator]
        return list(range(int(lower), int(upper) + 1))  # type: ignore[arg-type]
    step = (float(upper) - float(lower)) / (QUANTILE_CANDIDATES - 1)  # type: ignore[arg-type]
    values = [float(lower) + i * step for i in range(QUANTILE_CANDIDATES)]  # type: ignore[arg-type]
    return [int(round(v)) for v in values] if spec.type == "int" else values


def _polars_type(spec: ColumnSpec) -> Any:
    import polars as pl

    return {"int": pl.Int64, "string": pl.String, "boolean": pl.Boolean}[spec.type]
