"""The exact aggregates behind a release, with the noise removed: a test-only hook.

The engines' own execution runs (the server's plan, its shaping of rows, clamping, per-person
bounding, the key grid), with the noise switched off in this test process only: SmartNoise-SQL's
mechanisms release their input, and OpenDP's measurement is built at noise scale 0. Nothing
here exists in the server.

``sensitivity`` is the oracle the tester holds these numbers against: how much one person can
move each noisy value, from the metadata alone (rows per person times the largest magnitude a
clamped value can have), whatever the engines compute for themselves.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lomas_server.engines.opendp_compiler import Compiler
from lomas_server.engines.opendp_engine import OpenDPPlan, _only_contrib
from lomas_server.engines.smartnoise_sql import SmartnoiseSqlEngine
from lomas_server.engines.sql_plan import SqlPlan
from lomas_server.metadata import DatasetMetadata


@contextmanager
def smartnoise_without_noise() -> Iterator[None]:
    from snsql.sql._mechanisms.gaussian import Gaussian
    from snsql.sql._mechanisms.laplace import Laplace

    saved = Laplace.release, Gaussian.release
    Laplace.release = Gaussian.release = lambda self, values: [  # type: ignore[method-assign]
        0.0 if v is None else float(v) for v in values
    ]
    try:
        yield
    finally:
        Laplace.release, Gaussian.release = saved  # type: ignore[method-assign]


def sql_exact(
    engine: SmartnoiseSqlEngine, plan: SqlPlan, metadata: DatasetMetadata, version: str, table: Any
) -> tuple[list[str], dict[tuple[Any, ...], list[float]], list[float]]:
    """(noisy value names, key -> exact values, each value's sensitivity from metadata)."""
    with smartnoise_without_noise():
        outcome = engine.execute(plan, metadata, version, lambda: table, postprocess=False)
    symbols = _subquery_symbols(plan, metadata)
    keys = [i for i, s in enumerate(symbols) if s.mechanism is None]
    noisy = [i for i, s in enumerate(symbols) if s.mechanism is not None]
    values = {tuple(row[i] for i in keys): [_number(row[i]) for i in noisy] for row in outcome.rows}
    bounds = [_sql_sensitivity(symbols[i].expression, metadata) for i in noisy]
    return [symbols[i].name for i in noisy], values, bounds


def _subquery_symbols(plan: SqlPlan, metadata: DatasetMetadata) -> list[Any]:
    import snsql
    from snsql.sql.private_reader import PrivateReader

    from lomas_server.arrow_schema import empty_arrow
    from lomas_server.engines.duckdb_reader import DuckDBReader

    document = {"": {"": {"df": metadata.smartnoise_table(censor_dims=plan.thresholded)}}}
    reader = PrivateReader(
        DuckDBReader(empty_arrow(metadata)),
        document,
        privacy=snsql.Privacy(epsilon=plan.epsilon, delta=plan.delta),
    )
    subquery, _ = reader._rewrite(plan.sql)
    return list(subquery._select_symbols)


def _sql_sensitivity(expression: Any, metadata: DatasetMetadata) -> float:
    name = str(expression.name).upper()
    if name == "COUNT":
        return float(metadata.max_ids)
    # the aggregate's argument is the clamped column (or its square), as df.<name>
    (column,) = set(re.findall(r"\bdf\.(\w+)", str(expression)))
    largest = _largest(column, metadata)
    squared = "*" in str(expression)
    return metadata.max_ids * (largest * largest if squared else largest)


def opendp_exact(
    plan: OpenDPPlan, metadata: DatasetMetadata, table: Any
) -> tuple[list[str], dict[tuple[Any, ...], list[float]], list[float]]:
    """The same for an OpenDP plan: its measurements built at noise scale 0, on the rows."""
    from opendp.measurements import make_private_lazyframe

    _only_contrib()
    compiler = Compiler(metadata, plan.query, plan.noise)
    keys = compiler.group_columns
    merged: dict[tuple[Any, ...], dict[str, float]] = {}
    for part in compiler.build(compiler.frame(table), plan.budget)[1]:
        query = object.__getattribute__(part, "_query")
        domain, metric = query._chain
        approximate = getattr(query._output_measure.type, "origin", None) == "Approximate"
        measurement = make_private_lazyframe(
            input_domain=domain,
            input_metric=metric,
            output_measure=query._output_measure,
            lazyframe=object.__getattribute__(part, "polars_plan"),
            global_scale=0.0,
            threshold=0 if approximate else None,
        )
        frame = measurement(compiler.frame(table)).collect()
        for row in frame.to_dicts():
            key = tuple(row[k] for k in keys)
            merged.setdefault(key, {}).update(
                {c: _number(v) for c, v in row.items() if c not in keys}
            )
    names = sorted({c for row in merged.values() for c in row if not c.endswith("__q")})
    values = {key: [row.get(c, 0.0) for c in names] for key, row in merged.items()}
    return names, values, [_opendp_sensitivity(c, plan, metadata) for c in names]


def _opendp_sensitivity(name: str, plan: OpenDPPlan, metadata: DatasetMetadata) -> float:
    if name.endswith("__n"):
        return float(metadata.max_ids)
    aggregate = next(a for a in plan.query.aggregates if name.startswith(a.name + "__"))
    largest = _largest(str(aggregate.column), metadata)
    return metadata.max_ids * (largest * largest if name.endswith("__squares") else largest)


def _largest(column: str, metadata: DatasetMetadata) -> float:
    """The largest magnitude one clamped value of ``column`` can have. A boolean adds up as
    true 1, false 0 (in SQL, through a number column of its own, which no other column is)."""
    spec = metadata.column(column)
    if spec is None:
        numbers = metadata.booleans_as_numbers
        assert column in {n.name for n in numbers.values()}, column
        return 1.0
    if spec.type == "boolean":
        return 1.0
    assert spec.is_bounded
    return max(abs(float(spec.lower)), abs(float(spec.upper)))  # type: ignore[arg-type]


def largest_change(
    base: dict[tuple[Any, ...], list[float]], neighbour: dict[tuple[Any, ...], list[float]]
) -> list[float]:
    """For each noisy value, the L1 distance between the two releases over all groups."""
    width = len(next(iter({**base, **neighbour}.values()), []))
    totals = [0.0] * width
    for key in set(base) | set(neighbour):
        a = base.get(key, [0.0] * width)
        b = neighbour.get(key, [0.0] * width)
        for i in range(width):
            totals[i] += abs(a[i] - b[i])
    return totals


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    number = float(value)
    assert math.isfinite(number), f"an exact aggregate is {value!r}"
    return number
