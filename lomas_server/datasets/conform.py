"""Shape raw rows to the admin's metadata: exactly the declared columns, with the declared types.

The engines must never see a column the metadata does not describe, nor a value of another
type than declared (a string in an int column would make SQL behave differently per row).

Two ways to meet a row that does not fit:

- ``strict`` (when the admin adds a dataset): refuse the data, naming the column, so the admin
  fixes it before any analyst sees the dataset;
- otherwise (when a query reads a version the admin never checked): a value that is not of
  its column's type becomes missing, and a row missing its person's id or a value in a column
  declared not nullable is left out. Each of these is decided by one row alone, so it changes
  no one else's contribution, and no query can fail because of what one row holds. What was
  left out goes to the server log.

``NaN`` in a float column is a missing value on every path (engines disagree on how it
compares and sums). The number of rows is checked against the metadata's ``rows``, an upper
bound OpenDP relies on, in both modes: data with more rows does not fit its metadata at all.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from lomas_server.errors import DatasetUnavailable
from lomas_server.metadata import ColumnSpec, DatasetMetadata

log = logging.getLogger(__name__)

_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


def conform_to_metadata(
    raw: pd.DataFrame, metadata: DatasetMetadata, *, strict: bool = False
) -> pd.DataFrame:
    """A new frame with the metadata's columns converted to their types (see the module doc).

    Raises DatasetUnavailable naming the column when the data does not fit; the message is
    meant for the admin (at add time) and the server log (at query time), never an analyst.
    """
    by_lower = {str(col).lower(): col for col in raw.columns}
    _check_columns(list(by_lower), metadata)
    check_rows(len(raw), metadata)
    out = {}
    for name, spec in metadata.columns.items():
        series = raw[by_lower[name.lower()]]
        try:
            converted, misfits = _convert(series.reset_index(drop=True), spec)
        except (ValueError, TypeError, OverflowError, ArithmeticError) as err:
            # A kind of value none of the rules above foresaw: the column cannot be read.
            raise DatasetUnavailable(f"column {name!r} cannot be read as {spec.type}") from err
        if misfits:
            if strict:
                raise DatasetUnavailable(
                    f"column {name!r} does not hold values of type {spec.type} "
                    f"({misfits} value(s) do not convert)"
                )
            log.warning(
                "column %r: %d value(s) not of type %s read as missing", name, misfits, spec.type
            )
        out[name] = converted
    frame = pd.DataFrame(out)
    return _required_rows(frame, metadata, strict)


def _convert(series: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, int]:
    """The column in its declared type, and how many present values did not convert."""
    present = series.notna()
    if spec.type == "int":
        return _to_int(series)
    if spec.type == "float":
        numeric = pd.to_numeric(series, errors="coerce").astype("float64")
        # NaN is a missing value, whichever way the file wrote it.
        failed = present & numeric.isna() & ~_nan_text(series)
        return numeric, int(failed.sum())
    if spec.type == "boolean":
        return _to_boolean(series)
    if spec.type == "datetime":
        return _to_datetime(series)
    return series.astype("string").astype(object).where(present, None), 0


def _to_int(series: pd.Series) -> tuple[pd.Series, int]:
    """Whole numbers within 64 bits, exactly: ``9223372036854775807`` stays itself (a trip
    through floats would change it, and merge ids above 2**53)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pd.api.types.is_integer_dtype(series) and (
        series.empty or -(2**63) <= int(series.min()) and int(series.max()) < 2**63
    ):
        return series.astype("Int64"), 0
    text = series.astype("string").str.strip()
    try:
        parsed = pc.cast(pa.array(text, type=pa.string(), from_pandas=True), pa.int64())
        return pd.Series(parsed.to_pylist(), dtype="Int64"), 0
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # some value is not plain digits: read them one by one
    values, failed = [], 0
    for value in text:
        number = None if value is None or value is pd.NA else _one_int(str(value))
        failed += number is None and not (value is None or value is pd.NA)
        values.append(number)
    return pd.Series(values, dtype="Int64"), failed


def _one_int(text: str) -> int | None:
    try:
        number = int(text)
    except ValueError:
        try:
            whole = float(text)
        except ValueError:
            return None
        # "3.0" is 3; a float is an exact whole number only below 2**53
        if not math.isfinite(whole) or not whole.is_integer() or abs(whole) >= 2**53:
            return None
        number = int(whole)
    return number if -(2**63) <= number < 2**63 else None


def _nan_text(series: pd.Series) -> pd.Series:
    text = series.astype("string").str.strip().str.lower()
    return text.isin(["nan", "-nan", "+nan"]).fillna(False).astype(bool)


def _to_boolean(series: pd.Series) -> tuple[pd.Series, int]:
    if pd.api.types.is_bool_dtype(series):
        return series.astype("boolean"), 0
    text = series.astype("string").str.strip().str.lower()
    known = text.isin(_TRUE | _FALSE).fillna(False).astype(bool)
    unknown = int((text.notna() & ~known).sum())
    return text.isin(_TRUE).astype("boolean").where(known, pd.NA), unknown


def _to_datetime(series: pd.Series) -> tuple[pd.Series, int]:
    """Timestamps to the microsecond, over years 1-9999 (not only pandas' 1677-2262)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pd.api.types.is_datetime64_any_dtype(series):
        values = pd.to_datetime(series)
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return pd.Series(list(values.dt.to_pydatetime()), dtype=object).where(
            series.notna(), None
        ), 0
    text = series.astype("string")
    try:
        parsed = pc.cast(pa.array(text, type=pa.string(), from_pandas=True), pa.timestamp("us"))
        within, outside = _within_calendar(parsed)
        return pd.Series(within.to_pylist(), dtype=object), outside
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # some value is not plain ISO 8601: read them one by one
    values, failed = [], 0
    for value in text:
        if value is None or value is pd.NA:
            values.append(None)
            continue
        parsed_value = _one_datetime(str(value))
        failed += parsed_value is None
        values.append(parsed_value)
    return pd.Series(values, dtype=object), failed


def _one_datetime(text: str) -> datetime | None:
    text = text.strip()
    if not text[:1].isdigit():
        return None  # words such as 'now' or 'today' are not dates of the data
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        if not re.search(r"\d{4}", text):
            return None  # no year: a time of day alone would be read as today's
        try:
            value = pd.Timestamp(text).to_pydatetime()
        except (ValueError, TypeError, OverflowError):
            return None
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            return None
    return value


# The calendar every engine and Python share: years 1 to 9999, as microseconds since 1970.
FIRST_MICROSECOND = -62_135_596_800_000_000
LAST_MICROSECOND = 253_402_300_799_999_999


def _within_calendar(column: Any) -> tuple[Any, int]:
    """Timestamps (microseconds, no zone) outside years 1-9999 made missing, and how many."""
    import pyarrow as pa
    import pyarrow.compute as pc

    micros = pc.cast(column, pa.int64())
    inside = pc.and_(
        pc.greater_equal(micros, FIRST_MICROSECOND), pc.less_equal(micros, LAST_MICROSECOND)
    )
    outside = int(pc.sum(pc.invert(inside)).as_py() or 0)
    if not outside:
        return column, 0
    return pc.if_else(inside, column, pa.scalar(None, column.type)), outside


_UNIT_MICROSECONDS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}


def _arrow_timestamps(column: Any) -> tuple[Any, int]:
    """Dates and timestamps of any unit and zone as microseconds without zone (zoned ones in
    UTC), within years 1-9999, without any step that can overflow; and how many were not."""
    import numpy as np
    import pyarrow as pa

    kind = column.type
    if pa.types.is_date32(kind):
        raw, per_unit = column.cast(pa.int32()).cast(pa.int64()), 86_400_000_000
    elif pa.types.is_date64(kind):
        raw, per_unit = column.cast(pa.int64()), 1_000
    else:
        raw, per_unit = column.cast(pa.int64()), _UNIT_MICROSECONDS[kind.unit]
    values = raw.to_numpy(zero_copy_only=False)
    valid = ~np.isnan(values) if values.dtype.kind == "f" else np.ones(len(values), bool)
    if hasattr(raw, "is_null"):
        valid &= ~raw.is_null().to_numpy(zero_copy_only=False)
    values = np.nan_to_num(values).astype(np.int64) if values.dtype.kind == "f" else values
    if per_unit is None:  # nanoseconds: dividing never overflows
        micros = np.floor_divide(values, 1_000)
    else:
        low, high = -(-FIRST_MICROSECOND // per_unit), LAST_MICROSECOND // per_unit
        valid &= (values >= low) & (values <= high)
        micros = np.where(valid, values, 0) * per_unit
    valid &= (micros >= FIRST_MICROSECOND) & (micros <= LAST_MICROSECOND)
    present = ~column.is_null().to_numpy(zero_copy_only=False)
    outside = int((present & ~valid).sum())
    return pa.array(micros, type=pa.timestamp("us"), mask=~valid), outside


def _arrow_text(column: Any) -> tuple[Any, int]:
    """Text that is valid UTF-8, values that are not made missing; and how many were not.
    (Parquet does not check it: a DuckDB or Polars read would fail on the one row.)"""
    import pyarrow as pa

    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        column = column.view(pa.string() if pa.types.is_binary(column.type) else pa.large_string())
    try:
        column.validate(full=True)
        return column.cast(pa.string()), 0
    except pa.ArrowInvalid:
        pass
    values, failed = [], 0
    for raw in column.cast(pa.large_binary()).to_pylist():
        if raw is None:
            values.append(None)
            continue
        try:
            values.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(None)
            failed += 1
    return pa.array(values, type=pa.string()), failed


def check_rows(count: int, metadata: DatasetMetadata) -> None:
    """Data with more rows than the metadata's ``rows`` does not fit it (OpenDP relies on it)."""
    if metadata.rows is not None and count > metadata.rows:
        raise DatasetUnavailable(
            f"the data holds {count} rows, more than the metadata's 'rows' ({metadata.rows}), "
            "which OpenDP relies on as an upper bound; raise 'rows' or remove rows"
        )


def _check_columns(present: list[str], metadata: DatasetMetadata) -> None:
    names = {name.lower() for name in present}
    missing = [name for name in metadata.columns if name.lower() not in names]
    if missing:
        raise DatasetUnavailable(
            f"the data has no column(s) {', '.join(missing)} declared in the metadata"
        )


def _required_rows(frame: Any, metadata: DatasetMetadata, strict: bool) -> Any:
    """``frame`` (pandas or Arrow) without the rows that lack a required value (or an error,
    when strict)."""
    import numpy as np

    person = metadata.id_column
    keep = None
    for name in metadata.required_columns:
        if isinstance(frame, pd.DataFrame):
            missing = frame[name].isna().to_numpy(dtype=bool)
        else:
            missing = frame.column(name).is_null().to_numpy(zero_copy_only=False)
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
        return frame
    if isinstance(frame, pd.DataFrame):
        return frame[keep].reset_index(drop=True)
    import pyarrow as pa

    return frame.filter(pa.array(np.asarray(keep, dtype=bool)))


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
        if field.type == pa.timestamp("us") and series.dtype != object:
            series = pd.to_datetime(series).astype("datetime64[us]")
        columns.append(pa.array(series, type=field.type, from_pandas=True))
    return pa.Table.from_arrays(columns, schema=schema)


def empty_arrow(metadata: DatasetMetadata) -> Any:
    """No rows, the dataset's schema: what engines plan against."""
    return arrow_schema(metadata).empty_table()


def conformed_table(raw: Any, metadata: DatasetMetadata, *, strict: bool = False) -> Any:
    """Rows as the engines read them: an Arrow table with exactly the metadata's columns and types.

    Typed input (Parquet, read as Arrow) is cast column by column without going through
    pandas, which keeps a large dataset to about one copy in memory; a column that does not
    cast safely takes the general path (the same rules as for CSV).
    """
    import pyarrow as pa

    if isinstance(raw, pa.Table):
        raw = _sanitized(raw, metadata, strict)
        fast = _conform_arrow(raw, metadata, strict)
        if fast is not None:
            return compact_strings(fast)
        # Integers with nulls stay Python integers (not floats, which would round ids past 2**53).
        raw = raw.to_pandas(
            date_as_object=True, timestamp_as_object=True, integer_object_nulls=True
        )
    return compact_strings(to_arrow(conform_to_metadata(raw, metadata, strict=strict), metadata))


def _sanitized(table: Any, metadata: DatasetMetadata, strict: bool) -> Any:
    """Typed columns whose values not every reader can take, made safe first: text that is
    not UTF-8, and dates or timestamps outside years 1-9999 (or zoned), which would overflow a
    conversion, read as missing (or, when strict, are refused)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    by_lower = {name.lower(): name for name in table.column_names}
    for name in metadata.columns:
        stored = by_lower.get(name.lower())
        if stored is None:
            continue  # named by _check_columns
        column = table.column(stored)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_dictionary(column.type):
            column = pc.cast(column, column.type.value_type)
        kind = column.type
        if (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)
        ):
            column, misfits = _arrow_text(column)
            what = "text that is not UTF-8"
        elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            column, misfits = _arrow_timestamps(column)
            what = "dates outside years 1-9999"
        else:
            continue
        if misfits and strict:
            raise DatasetUnavailable(f"column {name!r} holds {misfits} value(s) of {what}")
        if misfits:
            log.warning("column %r: %d value(s) of %s read as missing", name, misfits, what)
        table = table.set_column(table.column_names.index(stored), stored, column)
    return table


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


def _conform_arrow(table: Any, metadata: DatasetMetadata, strict: bool) -> Any | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    by_lower = {name.lower(): name for name in table.column_names}
    _check_columns(table.column_names, metadata)
    check_rows(table.num_rows, metadata)
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
        if pa.types.is_floating(field.type):
            # NaN is a missing value on every path.
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, field.type), column)
        columns.append(column)
    conformed = pa.Table.from_arrays(columns, schema=schema)
    return _required_rows(conformed, metadata, strict)
