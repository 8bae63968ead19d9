"""Synthetic rows generated from metadata alone (never from data).

Analysts use them to develop queries without spending budget: same columns, types, bounds,
categories and nullability as the real dataset, values drawn at random.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from lomas_server.metadata import ColumnSpec, DatasetMetadata

NULL_SHARE = 0.05  # share of missing values in a nullable column
_UNBOUNDED_RANGE = 1000
_ALPHABET = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))
_DEFAULT_DATES = ("2000-01-01", "2030-01-01")


def make_dummy(metadata: DatasetMetadata, rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {name: _column(spec, rows, rng) for name, spec in metadata.columns.items()}
    return pd.DataFrame(data, columns=list(metadata.columns))


def _column(spec: ColumnSpec, rows: int, rng: np.random.Generator) -> pd.Series:
    values = _values(spec, rows, rng)
    if spec.nullable and rows:
        missing = rng.random(rows) < NULL_SHARE
        values = values.mask(missing)
    return values


def _values(spec: ColumnSpec, rows: int, rng: np.random.Generator) -> pd.Series:
    if spec.categories is not None:
        picked = rng.integers(0, len(spec.categories), rows)
        series = pd.Series([spec.categories[i] for i in picked], dtype=object)
        return _typed(series, spec)
    if spec.type == "int":
        low, high = (
            spec.numeric_bounds() if spec.is_bounded else (-_UNBOUNDED_RANGE, _UNBOUNDED_RANGE)
        )
        return pd.Series(rng.integers(int(low), int(high) + 1, rows), dtype="Int64")
    if spec.type == "float":
        low, high = (
            spec.numeric_bounds() if spec.is_bounded else (-_UNBOUNDED_RANGE, _UNBOUNDED_RANGE)
        )
        return pd.Series(rng.uniform(low, high, rows), dtype="float64")
    if spec.type == "boolean":
        return pd.Series(rng.random(rows) < 0.5, dtype="boolean")
    if spec.type == "datetime":
        low = datetime.fromisoformat(str(spec.lower or _DEFAULT_DATES[0])).timestamp()
        high = datetime.fromisoformat(str(spec.upper or _DEFAULT_DATES[1])).timestamp()
        seconds = rng.uniform(low, high, rows).astype("int64")
        return pd.Series(pd.to_datetime(seconds, unit="s"))
    letters = rng.integers(0, len(_ALPHABET), (rows, 8))
    return pd.Series(["".join(_ALPHABET[row]) for row in letters], dtype=object)


def _typed(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    if spec.type == "int":
        return series.astype("Int64")
    if spec.type == "float":
        return series.astype("float64")
    if spec.type == "boolean":
        return series.astype("boolean")
    return series
