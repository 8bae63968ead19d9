"""Shape raw rows to the admin's metadata: exactly the declared columns, with the declared types.

The engines must never see a column the metadata does not describe, nor a value of another
type than declared (a string in an int column would make SQL behave differently per row).

Every value is converted by one rule that depends on its column's declared type, the type the
file stores it in, and the value itself (column_conversion.py): never on the other values of
the column, nor on any other column. (A conversion that switched paths for the whole table
when one value did not fit rewrote everybody's values: one person could empty a grouped count.)

Two ways to meet a row that does not fit:

- ``strict`` (when the admin adds a dataset): refuse the data, naming the column, so the admin
  fixes it before any analyst sees the dataset;
- otherwise (when a query reads a version the admin never checked): a value that is not of
  its column's type reads as missing (text that is not UTF-8, a date outside years 1-9999, a
  fraction in an int column, ...), and a row missing its person's id or a value in a column
  declared not nullable is left out. Each of these is decided by one row alone, so it changes
  no one else's contribution, and no query can fail because of what one row holds. What was
  left out goes to the server log.

``NaN`` in a float column is a missing value on every path (engines disagree on how it
compares and sums). The number of rows is checked against the metadata's ``rows``, an upper
bound OpenDP relies on, in both modes, and so is the file's shape (declared columns present,
no two columns named alike but for case, types that can hold the declared kind): those depend
on the file, not on a row.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from lomas_server.arrow_schema import arrow_schema
from lomas_server.datasets.column_conversion import converted_column
from lomas_server.errors import DatasetUnavailable
from lomas_server.metadata import DatasetMetadata

log = logging.getLogger(__name__)


def conformed_table(raw: Any, metadata: DatasetMetadata, *, strict: bool = False) -> Any:
    """Rows as the engines read them: an Arrow table with exactly the metadata's columns and
    types, from an Arrow table (Parquet) or a DataFrame (CSV, read as text)."""
    return compact_strings(_conformed(raw, metadata, strict))


def _conformed(raw: Any, metadata: DatasetMetadata, strict: bool) -> Any:
    import pyarrow as pa

    stored = _stored_columns(raw)
    where = declared_columns(list(stored), metadata)
    check_rows(len(raw) if isinstance(raw, pd.DataFrame) else raw.num_rows, metadata)
    schema = arrow_schema(metadata)
    columns = []
    for field in schema:
        name, spec = field.name, metadata.columns[field.name]
        column, misfits = converted_column(spec.type, stored[where[name]](), name)
        if misfits:
            if strict:
                raise DatasetUnavailable(
                    f"column {name!r} does not hold values of type {spec.type} "
                    f"({misfits} value(s) do not convert)"
                )
            log.warning(
                "column %r: %d value(s) not of type %s read as missing", name, misfits, spec.type
            )
        columns.append(column)
    return _required_rows(pa.Table.from_arrays(columns, schema=schema), metadata, strict)


def conform_to_metadata(
    raw: pd.DataFrame, metadata: DatasetMetadata, *, strict: bool = False
) -> pd.DataFrame:
    """The same rules, as a DataFrame (nullable Int64 and boolean columns, timestamps as
    Python datetimes): for dummy rows and benchmarks that work in pandas."""
    import pyarrow as pa

    table = _conformed(raw, metadata, strict)
    mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=mapping.get, timestamp_as_object=True)


def check_rows(count: int, metadata: DatasetMetadata) -> None:
    """Data with more rows than the metadata's ``rows`` does not fit it (OpenDP relies on it)."""
    if metadata.rows is not None and count > metadata.rows:
        raise DatasetUnavailable(
            f"the data holds {count} rows, more than the metadata's 'rows' ({metadata.rows}), "
            "which OpenDP relies on as an upper bound; raise 'rows' or remove rows"
        )


def declared_columns(present: list[str], metadata: DatasetMetadata) -> dict[str, str]:
    """The stored column for each declared one (SQL names ignore case), or DatasetUnavailable
    when one is missing or two stored columns are named alike but for case (engines would not
    agree on which of them a query reads)."""
    declared = {name.lower(): name for name in metadata.columns}
    found: dict[str, str] = {}
    for name in present:
        key = str(name).lower()
        if key in declared and key in found:
            raise DatasetUnavailable(
                f"the data has two columns named {found[key]!r} and {name!r}: names must "
                "differ in more than letter case"
            )
        found[key] = str(name)
    missing = [name for name in metadata.columns if name.lower() not in found]
    if missing:
        raise DatasetUnavailable(
            f"the data has no column(s) {', '.join(missing)} declared in the metadata"
        )
    return {name: found[name.lower()] for name in metadata.columns}


def _stored_columns(raw: Any) -> dict[str, Any]:
    """Each stored column by name, as a function giving it as one Arrow array (dictionaries
    decoded). A DataFrame's columns are text (CSV) or, for rows made in Python, values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(raw, pd.DataFrame):
        return {str(name): (lambda series=raw[name]: _from_pandas(series)) for name in raw.columns}

    def column(index: int) -> Any:
        values = raw.column(index)
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        if pa.types.is_dictionary(values.type):
            values = pc.cast(values, values.type.value_type)
        return values

    return {name: (lambda i=i: column(i)) for i, name in enumerate(raw.column_names)}


def _from_pandas(series: pd.Series) -> Any:
    import pyarrow as pa

    if series.dtype == object or pd.api.types.is_string_dtype(series):
        try:  # text (a CSV read as text): taken as is
            return pa.array(series, type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            pass
    try:
        return pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        # values of several kinds in one column: each as its text
        text = [None if pd.isna(v) else str(v) for v in series]
        return pa.array(text, type=pa.string())


# -- rows -------------------------------------------------------------------------------------
def _required_rows(table: Any, metadata: DatasetMetadata, strict: bool) -> Any:
    """``table`` without the rows that lack a required value (or an error, when strict)."""
    import numpy as np
    import pyarrow as pa

    person = metadata.id_column
    keep = None
    for name in metadata.required_columns:
        missing = table.column(name).is_null().to_numpy(zero_copy_only=False)
        count = int(missing.sum())
        if not count:
            continue
        if strict:
            if name == person:
                raise DatasetUnavailable(
                    f"column {name!r} names each row's person, but {count} row(s) have no id"
                )
            raise DatasetUnavailable(
                f"column {name!r} is declared not nullable but has {count} missing value(s)"
            )
        log.warning("%d row(s) missing a value in required column %r are left out", count, name)
        keep = ~missing if keep is None else keep & ~missing
    if keep is None:
        return table
    return table.filter(pa.array(np.asarray(keep, dtype=bool)))


# -- the engines' common ground ---------------------------------------------------------------
def to_arrow(frame: pd.DataFrame, metadata: DatasetMetadata) -> Any:
    """A conformed frame as an Arrow table: one columnar copy that DuckDB and Polars read in place."""
    import pyarrow as pa

    schema = arrow_schema(metadata)
    columns = []
    for field in schema:
        series = frame[field.name]
        if field.type == pa.timestamp("us") and series.dtype != object:
            series = pd.to_datetime(series).astype("datetime64[us]")
        columns.append(pa.array(series, type=field.type, from_pandas=True))
    return pa.Table.from_arrays(columns, schema=schema)


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
