"""Shape raw rows to the admin's metadata: exactly the declared columns, with the declared types.

The engines must never see a column the metadata does not describe, nor a value of another
type than declared (a string in an int column would make SQL behave differently per row).
"""

from __future__ import annotations

from typing import Any

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


def arrow_schema(metadata: DatasetMetadata) -> Any:
    """The Arrow schema of a dataset, from its metadata (the engines' common ground)."""
    import pyarrow as pa

    types = {
        "int": pa.int64(),
        "float": pa.float64(),
        "string": pa.string(),
        "boolean": pa.bool_(),
        "datetime": pa.timestamp("us"),
    }
    return pa.schema([pa.field(name, types[spec.type]) for name, spec in metadata.columns.items()])


def to_arrow(frame: pd.DataFrame, metadata: DatasetMetadata) -> Any:
    """A conformed frame as an Arrow table: one columnar copy that DuckDB and Polars read in place."""
    import pyarrow as pa

    schema = arrow_schema(metadata)
    columns = []
    for field in schema:
        series = frame[field.name]
        if field.type == pa.timestamp("us"):
            series = pd.to_datetime(series).astype("datetime64[us]")
        columns.append(pa.array(series, type=field.type, from_pandas=True))
    return pa.Table.from_arrays(columns, schema=schema)


def empty_arrow(metadata: DatasetMetadata) -> Any:
    """No rows, the dataset's schema: what engines plan against."""
    return arrow_schema(metadata).empty_table()


def conformed_table(raw: Any, metadata: DatasetMetadata) -> Any:
    """Rows as the engines read them: an Arrow table with exactly the metadata's columns and types.

    Typed input (Parquet, read as Arrow) is cast column by column without going through
    pandas, which keeps a large dataset to about one copy in memory; a column that does not
    cast safely takes the general path (the same rules as for CSV).
    """
    import pyarrow as pa

    if isinstance(raw, pa.Table):
        fast = _conform_arrow(raw, metadata)
        if fast is not None:
            return compact_strings(fast)
        raw = raw.to_pandas()
    return compact_strings(to_arrow(conform_to_metadata(raw, metadata), metadata))


def compact_strings(table: Any) -> Any:
    """Text columns with few distinct values stored as dictionaries.

    DuckDB groups and filters dictionary columns about three times faster than plain text
    (it reads them as VARCHAR all the same, so no query means anything else), and they take
    less memory. Columns with mostly distinct values stay plain, where a dictionary would
    cost more than it saves.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    for index, field in enumerate(table.schema):
        if not pa.types.is_string(field.type) or table.num_rows == 0:
            continue
        encoded = pc.dictionary_encode(table.column(index))
        distinct = sum(len(chunk.dictionary) for chunk in encoded.chunks)
        if distinct * 2 <= table.num_rows:
            table = table.set_column(index, field.name, encoded)
    return table


def plain_strings(table: Any) -> Any:
    """The same table with dictionary columns decoded (Polars would make them Categorical,
    which is not the type the OpenDP path plans with)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for index, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            decoded = pc.cast(table.column(index), field.type.value_type)
            table = table.set_column(index, field.name, decoded)
    return table


def _conform_arrow(table: Any, metadata: DatasetMetadata) -> Any | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    by_lower = {name.lower(): name for name in table.column_names}
    missing = [name for name in metadata.columns if name.lower() not in by_lower]
    if missing:
        raise DatasetUnavailable(
            f"the data has no column(s) {', '.join(missing)} declared in the metadata"
        )
    schema = arrow_schema(metadata)
    columns = []
    for field in schema:
        column = table.column(by_lower[field.name.lower()])
        if pa.types.is_dictionary(column.type):
            column = pc.cast(column, column.type.value_type)
        if metadata.columns[field.name].type == "boolean" and not pa.types.is_boolean(column.type):
            return None  # text or numbers meaning true/false: the general rules decide
        try:
            column = pc.cast(column, field.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if not metadata.columns[field.name].nullable and column.null_count:
            raise DatasetUnavailable(
                f"column {field.name!r} is declared not nullable but has missing values"
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)
