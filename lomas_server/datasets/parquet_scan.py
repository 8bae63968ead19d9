"""Parquet datasets read in place, in streaming, when they are too big to keep in memory.

A Parquet file (local or on S3) whose rows would take more memory than the cache allows one
dataset is not loaded: each query scans it. DuckDB reads the file with its own Parquet reader
(local) or streams record batches from a pyarrow dataset (S3), and the OpenDP path reads it
through a Polars scan of the same pyarrow dataset, so memory holds the query's columns in
flight rather than the whole table.

A scan reads the columns as the file stores them, so the file's types must become the
metadata's without a cast that could fail on some rows: only widenings that never fail are
allowed (int32 to int64, integers to double, ...), and text is checked to be UTF-8 once per
file version. The rows are shaped as on
every other path: NaN reads as missing, and rows without a person id or a value in a column
declared not nullable are left out by the scan itself. When the admin adds the dataset, such
rows are refused instead, from the Parquet statistics where the writer kept them. A file that
does not qualify is loaded and conformed as usual.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from lomas_server.datasets.conform import check_rows, declared_columns
from lomas_server.datasets.sources import DatasetSource, LocalFileSource, S3Source
from lomas_server.errors import DatasetUnavailable
from lomas_server.metadata import DatasetMetadata
from lomas_server.readable import PARQUET_SCAN

log = logging.getLogger(__name__)

SOURCE_VIEW = "lomas_scan_source"
DUCKDB_TYPES = {
    "int": "BIGINT",
    "float": "DOUBLE",
    "string": "VARCHAR",
    "boolean": "BOOLEAN",
    "datetime": "TIMESTAMP",
}


def _widens_without_failure(kind: str, arrow_type: Any) -> bool:
    """Whether every value of ``arrow_type`` converts to the metadata type ``kind``."""
    import pyarrow as pa

    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    signed_or_small = pa.types.is_signed_integer(t) or t in (pa.uint8(), pa.uint16(), pa.uint32())
    return {
        "int": signed_or_small,
        "float": pa.types.is_floating(t) or pa.types.is_integer(t),
        "string": pa.types.is_string(t) or pa.types.is_large_string(t),
        "boolean": pa.types.is_boolean(t),
        # Microseconds without a zone only: dates and coarser units can hold years past what
        # a microsecond timestamp holds, and the cast would overflow on that one row; DuckDB
        # rounds nanoseconds where loading rounds them down; zoned timestamps would be
        # shifted differently by each engine. Those are loaded and conformed.
        "datetime": pa.types.is_timestamp(t) and t.tz is None and t.unit == "us",
    }[kind]


@dataclass(frozen=True)
class ParquetScan:
    reads_as = PARQUET_SCAN
    """How to read one version of a Parquet dataset in place, shaped to its metadata."""

    source: DatasetSource
    metadata: DatasetMetadata
    columns: dict[str, str]  # metadata name -> the file's name for it
    nbytes: int  # the rows' size once decoded, from the Parquet footer

    # -- DuckDB --------------------------------------------------------------------------------
    def register_in(self, connection: Any, name: str) -> None:
        """Make ``name`` a view of the rows with the metadata's names and types."""
        if isinstance(self.source, LocalFileSource):
            path = str(self.source.path).replace("'", "''")
            origin = f"read_parquet('{path}')"
        else:
            connection.register(SOURCE_VIEW, self.arrow_dataset())
            origin = SOURCE_VIEW
        selected = []
        for column, stored in self.columns.items():
            kind = self.metadata.columns[column].type
            value = f'CAST("{stored}" AS {DUCKDB_TYPES[kind]})'
            if kind == "float":
                value = f"CASE WHEN isnan({value}) THEN NULL ELSE {value} END"
            selected.append(f'{value} AS "{column}"')
        required = " AND ".join(f'"{c}" IS NOT NULL' for c in self.metadata.required_columns)
        rows = f"SELECT {', '.join(selected)} FROM {origin}"
        if required:
            rows = f"SELECT * FROM ({rows}) AS lomas_typed WHERE {required}"
        connection.execute(f'CREATE TEMP VIEW "{name}" AS {rows}')

    # -- Polars (the OpenDP path) -------------------------------------------------------------
    def lazy_frame(self) -> Any:
        import polars as pl

        from lomas_server.arrow_schema import empty_arrow

        schema = pl.from_arrow(empty_arrow(self.metadata)).schema  # type: ignore[union-attr]
        frame = pl.scan_pyarrow_dataset(self.arrow_dataset()).select(
            pl.col(stored).cast(schema[column], strict=True).alias(column)
            for column, stored in self.columns.items()
        )
        floats = [c for c, spec in self.metadata.columns.items() if spec.type == "float"]
        if floats:
            frame = frame.with_columns(pl.col(c).fill_nan(None) for c in floats)
        required = self.metadata.required_columns
        if required:
            frame = frame.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in required))
        return frame

    # -- pyarrow -------------------------------------------------------------------------------
    def arrow_dataset(self) -> Any:
        import pyarrow.dataset as pads

        path, filesystem = _location(self.source)
        return pads.dataset(path, filesystem=filesystem, format="parquet")


def scannable(source: DatasetSource) -> bool:
    return isinstance(source, (LocalFileSource, S3Source)) and source.format == "parquet"


def plan_scan(
    source: DatasetSource, metadata: DatasetMetadata, *, strict: bool = False
) -> ParquetScan | None:
    """The scan of a Parquet file shaped to ``metadata``, or None if it needs conforming.

    Reads the footer only (and, when ``strict``, for a required column without statistics,
    that column). Raises DatasetUnavailable for a file that cannot serve the metadata at all:
    a declared column missing, more rows than the metadata's ``rows``, or (``strict``) rows
    lacking a required value.
    """
    import pyarrow.parquet as pq

    path, filesystem = _location(source)
    try:
        handle = filesystem.open_input_file(path) if filesystem else path
        footer = pq.ParquetFile(handle)
    except (OSError, ValueError) as err:
        raise DatasetUnavailable(f"{source.where()} is not a readable parquet file") from err
    schema = footer.schema_arrow
    # the same columns as loading reads (and the same refusal of names alike but for case)
    columns = declared_columns(schema.names, metadata)
    for name, stored in columns.items():
        kind = metadata.columns[name].type
        if not _widens_without_failure(kind, schema.field(stored).type):
            log.info(
                "%s: column %r is %s in the file, not a %s without conversion; it is loaded "
                "and conformed instead of scanned",
                source.where(),
                stored,
                schema.field(stored).type,
                kind,
            )
            return None
    meta = footer.metadata
    check_rows(meta.num_rows, metadata)
    # Parquet numbers leaf columns, which differ from the Arrow field positions as soon as
    # the file has a nested column: look the declared ones up by path.
    leaves = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    nbytes = sum(
        meta.row_group(group).column(leaves[stored]).total_uncompressed_size
        for group in range(meta.num_row_groups)
        for stored in columns.values()
    )
    scan = ParquetScan(source, metadata, columns, nbytes)
    text = [stored for name, stored in columns.items() if metadata.columns[name].type == "string"]
    if text and not _valid_utf8(scan, text):
        # Parquet does not check it, DuckDB's and Polars' readers do, on the one row: such a
        # file is loaded instead, where text that is not UTF-8 reads as missing.
        log.info("%s holds text that is not UTF-8; it is loaded instead of scanned", source.where())
        return None
    if strict:
        for name in metadata.required_columns:
            if _null_count(scan, meta, leaves[columns[name]]):
                what = "the person id" if name == metadata.id_column else "declared not nullable"
                raise DatasetUnavailable(f"column {name!r} is {what} but has missing values")
    return scan


def _valid_utf8(scan: ParquetScan, columns: list[str]) -> bool:
    """Whether every value of these text columns is UTF-8 (read once per file version)."""
    import pyarrow as pa

    for batch in scan.arrow_dataset().to_batches(columns=columns):
        for column in batch.columns:
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                return False
    return True


def _null_count(scan: ParquetScan, meta: Any, leaf: int) -> int:
    counts = []
    for group in range(meta.num_row_groups):
        statistics = meta.row_group(group).column(leaf).statistics
        if statistics is None or not statistics.has_null_count:
            break
        counts.append(statistics.null_count)
    else:
        return sum(counts)
    import pyarrow.dataset as pads

    # No statistics from the writer: count by reading that one column.
    stored = meta.schema.column(leaf).path
    return scan.arrow_dataset().count_rows(filter=pads.field(stored).is_null())


def _location(source: DatasetSource) -> tuple[str, Any]:
    """A path and a pyarrow filesystem (None for the local one)."""
    if isinstance(source, LocalFileSource):
        return str(source.path), None
    assert isinstance(source, S3Source)
    return f"{source.bucket}/{source.key}", _s3_filesystem(source)


_filesystems: dict[tuple[Any, ...], Any] = {}
_filesystems_lock = threading.Lock()


def _s3_filesystem(source: S3Source) -> Any:
    """Credentials as for the download path: the dataset's own, else the server's environment."""
    from pyarrow import fs

    with _filesystems_lock:
        filesystem = _filesystems.get(source.identity)
        if filesystem is None:
            options: dict[str, Any] = {
                "region": source.region_name,
                "connect_timeout": 10,
                "request_timeout": 300,
            }
            if source.endpoint_url:
                options["endpoint_override"] = source.endpoint_url
            if source.access_key_id:
                options["access_key"] = source.access_key_id
                options["secret_key"] = source.secret_access_key
            filesystem = fs.S3FileSystem(**options)
            _filesystems[source.identity] = filesystem
        return filesystem


class ScanPlans:
    """The scan of each dataset's current file version, planned once per version.

    A plan reads the file's footer (a request on S3), so it is remembered per dataset under
    a key naming the file version and the metadata it was checked against.
    """

    def __init__(self) -> None:
        self._plans: dict[str, tuple[str, ParquetScan | None]] = {}
        self._lock = threading.Lock()

    def get(
        self, name: str, key: str, source: DatasetSource, metadata: DatasetMetadata
    ) -> ParquetScan | None:
        with self._lock:
            known = self._plans.get(name)
        if known is not None and known[0] == key:
            return known[1]
        scan = plan_scan(source, metadata)
        with self._lock:
            self._plans[name] = (key, scan)
        return scan
