"""Shape raw rows to the admin's metadata: exactly the declared columns, with the declared types.

The engines must never see a column the metadata does not describe, nor a value of another
type than declared (a string in an int column would make SQL behave differently per row).
"""

from __future__ import annotations

import pandas as pd

from lomas_server.errors import DatasetUnavailable
from lomas_server.metadata import ColumnSpec, DatasetMetadata

_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


def conform_to_metadata(raw: pd.DataFrame, metadata: DatasetMetadata) -> pd.DataFrame:
    """Return a new frame with the metadata's columns converted to their types.

    Raises DatasetUnavailable naming the column when the data does not fit; the message is
    meant for the admin (at add time) and the server log (at query time), never an analyst.
    """
    by_lower = {str(col).lower(): col for col in raw.columns}
    missing = [name for name in metadata.columns if name.lower() not in by_lower]
    if missing:
        raise DatasetUnavailable(
            f"the data has no column(s) {', '.join(missing)} declared in the metadata"
        )
    out = {}
    for name, spec in metadata.columns.items():
        series = raw[by_lower[name.lower()]]
        try:
            out[name] = _convert(series, spec)
        except (ValueError, TypeError) as err:
            raise DatasetUnavailable(
                f"column {name!r} does not hold values of type {spec.type}"
            ) from err
        if not spec.nullable and out[name].isna().any():
            raise DatasetUnavailable(
                f"column {name!r} is declared not nullable but has missing values"
            )
    return pd.DataFrame(out)


def _convert(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    if spec.type == "int":
        numeric = pd.to_numeric(series, errors="raise")
        if (numeric.dropna() % 1 != 0).any():
            raise ValueError("non-integer values")
        return numeric.astype("Int64")
    if spec.type == "float":
        return pd.to_numeric(series, errors="raise").astype("float64")
    if spec.type == "boolean":
        return _to_boolean(series)
    if spec.type == "datetime":
        return pd.to_datetime(series, errors="raise")
    return series.astype("string").astype(object).where(series.notna(), None)


def _to_boolean(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series.astype("boolean")
    text = series.astype("string").str.strip().str.lower()
    unknown = text.notna() & ~text.isin(_TRUE | _FALSE)
    if unknown.any():
        raise ValueError("values other than true/false")
    return text.isin(_TRUE).astype("boolean").where(text.notna(), pd.NA)
