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
from collections.abc import Iterator
from typing import Any

import pandas as pd

from lomas_server.arrow_schema import arrow_schema
from lomas_server.datasets.column_conversion import converted_column
from lomas_server.datasets.sources.base import RawRows
from lomas_server.errors import DatasetUnavailable
from lomas_server.metadata import DatasetMetadata

log = logging.getLogger(__name__)


def conformed_table(raw: Any, metadata: DatasetMetadata, *, strict: bool = False) -> Any:
    """Rows as the engines read them: an Arrow table with exactly the metadata's columns and
    types, from an Arrow table (Parquet), a DataFrame, or a file's rows read a part at a time
    (``DatasetSource.stream``: each part is converted and let go before the next is read)."""
    table = _conformed(raw, metadata, strict)
    if isinstance(raw, RawRows):
        # What the load freed goes back to the system: the engines' own allocators do not
        # draw on Arrow's pool, so a query would otherwise add its memory on top of it.
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    return table


def check_conforms(raw: Any, metadata: DatasetMetadata) -> None:
    """What ``conformed_table(raw, metadata, strict=True)`` refuses, with the same messages,
    keeping none of the rows: for the admin adding a file that may be as large as memory."""
    _conformed(raw, metadata, True, keep=False)


def _conformed(
    raw: Any, metadata: DatasetMetadata, strict: bool, *, keep: bool = True, compact: bool = True
) -> Any:
    """The conformed rows, each part of ``raw`` converted on its own (every value is converted
    by its own rule, so parts change nothing); what is refused or logged is decided on the
    whole, in the order of a whole table: columns, row count, each column's values in the
    metadata's order, then rows lacking a required value."""
    import pyarrow as pa

    schema = arrow_schema(metadata)
    refusal: DatasetUnavailable | None = None  # the columns' fault: nothing else is needed
    where: dict[str, str] | None = None
    unfit: dict[str, DatasetUnavailable] = {}  # columns whose stored type cannot hold theirs
    misfits = dict.fromkeys(schema.names, 0)
    missing = dict.fromkeys(metadata.required_columns, 0)
    kept: dict[str, list[Any]] = {name: [] for name in schema.names}
    count = 0
    # Arrow's CSV reader refuses text that is not UTF-8 (what is not was replaced before)
    checked_text = isinstance(raw, RawRows) and raw.format == "csv"
    for rows, stored in _parts(raw):
        if where is None and refusal is None:
            try:
                where = declared_columns(list(stored), metadata)
            except DatasetUnavailable as err:
                refusal = err
        count += rows
        if where is None or (metadata.rows is not None and count > metadata.rows):
            continue  # refused at the end: the rows are only counted
        columns = []
        for field in schema:
            name, spec = field.name, metadata.columns[field.name]
            if name in unfit:
                columns.append(pa.nulls(0, field.type))
                continue
            try:
                column, bad = converted_column(
                    spec.type, stored[where[name]](), name, valid_text=checked_text
                )
            except DatasetUnavailable as err:
                unfit[name] = err
                columns.append(pa.nulls(0, field.type))
                continue
            misfits[name] += bad
            columns.append(column)
        del stored
        if unfit:
            continue
        part = pa.Table.from_arrays(columns, schema=schema)
        del columns
        part = _required_rows(part, metadata, strict, missing)
        if keep and not (strict and any(misfits.values())):
            for field, column in zip(schema, part.columns, strict=True):
                kept[field.name].extend(column.chunks)
        del part
    if refusal is not None:
        raise refusal
    check_rows(count, metadata)
    for field in schema:
        name, kind = field.name, metadata.columns[field.name].type
        if name in unfit:
            raise unfit[name]
        if not misfits[name]:
            continue
        if strict:
            raise DatasetUnavailable(
                f"column {name!r} does not hold values of type {kind} "
                f"({misfits[name]} value(s) do not convert)"
            )
        log.warning(
            "column %r: %d value(s) not of type %s read as missing", name, misfits[name], kind
        )
    _refuse_missing(missing, metadata, strict)
    if not keep:
        return None
    arrays, fields = [], []
    # The parts' memory goes back to the system as they are let go: the allocator could not
    # reuse it for a whole column (so the process would hold both), nor could the engines.
    pool = pa.default_memory_pool()
    for field in schema:
        # One chunk per column, as engines that copy a chunked column on each query want it;
        # text compacted here, one column at a time, while its parts are let go.
        chunks = kept.pop(field.name)
        column = chunks[0] if len(chunks) == 1 else pa.concat_arrays(chunks) if chunks else None
        column = pa.array([], field.type) if column is None else column
        del chunks
        pool.release_unused()
        column = _compact(column) if compact else column
        fields.append(pa.field(field.name, column.type, field.nullable, field.metadata))
        arrays.append(column)
        del column
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))


def conform_to_metadata(
    raw: pd.DataFrame, metadata: DatasetMetadata, *, strict: bool = False
) -> pd.DataFrame:
    """The same rules, as a DataFrame (nullable Int64 and boolean columns, timestamps as
    Python datetimes): for dummy rows and benchmarks that work in pandas."""
    import pyarrow as pa

    table = _conformed(raw, metadata, strict, compact=False)
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


def _parts(raw: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each part of ``raw`` (a whole table or DataFrame is one part; ``RawRows`` yields many):
    its number of rows, and each stored column by name as a function giving it as one Arrow
    array (dictionaries decoded). A DataFrame's columns are text (CSV) or, for rows made in
    Python, values."""
    if isinstance(raw, pd.DataFrame):
        yield (
            len(raw),
            {str(name): (lambda series=raw[name]: _from_pandas(series)) for name in raw.columns},
        )
    elif isinstance(raw, RawRows):
        for table in raw:
            yield table.num_rows, _table_columns(table)
            del table
    else:
        yield raw.num_rows, _table_columns(raw)


def _table_columns(table: Any) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    def column(index: int) -> Any:
        values = table.column(index)
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        if pa.types.is_dictionary(values.type):
            values = pc.cast(values, values.type.value_type)
        return values

    return {name: (lambda i=i: column(i)) for i, name in enumerate(table.column_names)}


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
def _required_rows(
    table: Any, metadata: DatasetMetadata, strict: bool, missing: dict[str, int]
) -> Any:
    """``table`` without the rows that lack a required value (all of them, when strict: the
    data is refused then), counting them per column in ``missing``."""
    import numpy as np
    import pyarrow as pa

    keep = None
    for name in metadata.required_columns:
        absent = table.column(name).is_null().to_numpy(zero_copy_only=False)
        count = int(absent.sum())
        if not count:
            continue
        missing[name] += count
        keep = ~absent if keep is None else keep & ~absent
    if keep is None or strict:
        return table
    return table.filter(pa.array(np.asarray(keep, dtype=bool)))


def _refuse_missing(missing: dict[str, int], metadata: DatasetMetadata, strict: bool) -> None:
    """Refuse (strict) or log the rows that lack a required value."""
    for name, count in missing.items():
        if not count:
            continue
        if strict:
            if name == metadata.id_column:
                raise DatasetUnavailable(
                    f"column {name!r} names each row's person, but {count} row(s) have no id"
                )
            raise DatasetUnavailable(
                f"column {name!r} is declared not nullable but has {count} missing value(s)"
            )
        log.warning("%d row(s) missing a value in required column %r are left out", count, name)


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
    """Text columns with few distinct values stored as dictionaries (``_compact``)."""
    for index, field in enumerate(table.schema):
        column = _compact(table.column(index))
        if column.type != field.type:
            table = table.set_column(index, field.name, column)
    return table


def _compact(column: Any) -> Any:
    """A text column with few distinct values as a dictionary, any other column as it is.

    DuckDB groups and filters dictionary columns about three times faster than plain text
    (it reads them as VARCHAR all the same, so no query means anything else), and they take
    less memory. Columns with mostly distinct values stay plain, where a dictionary would
    cost more than it saves.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_string(column.type) or len(column) == 0:
        return column
    encoded = pc.dictionary_encode(column)
    chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
    distinct = sum(len(chunk.dictionary) for chunk in chunks)
    return encoded if distinct * 2 <= len(column) else column
