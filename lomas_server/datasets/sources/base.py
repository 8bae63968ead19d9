"""What every dataset source is: a version, raw rows, a description, and the checks of rows
read where they live; with the helpers they share (file formats, whole CSV lines).

A source reports a cheap ``version`` (changes whenever the underlying data changes: file
mtime and size, an S3 ETag, an HTTP ETag or Last-Modified) so that the cache tells a fresh copy
from a stale one without reading the data, and so that the service can check that a dataset is
reachable before it reserves any budget. Descriptions may hold credentials: they are kept in
the admin store and shown elsewhere only through ``public_description``.
"""

from __future__ import annotations

import abc
import io
import logging
from collections.abc import Callable, Collection, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from lomas_server.errors import DatasetUnavailable, InvalidMetadata

FORMATS = ("csv", "parquet")
log = logging.getLogger(__name__)
SECRET_FIELDS = ("secret_access_key", "access_key_id", "session_token", "headers")
REDACTED = "***"


class DatasetSource(abc.ABC):
    kind: str
    # True when SQL runs where the data lives (PostgreSQL, Spark) instead of on a cached copy.
    in_place = False

    def __init__(self, file_format: str | None, name_for_format: str) -> None:
        self.format = file_format or _format_from_suffix(name_for_format)
        if self.format not in FORMATS:
            raise InvalidMetadata(
                f"unsupported file format {self.format!r}; use one of {', '.join(FORMATS)} (--format)"
            )

    @abc.abstractmethod
    def version(self) -> str:
        """A token that changes whenever the data changes; raises DatasetUnavailable."""

    # Sources read in place (``in_place``) check these where the data lives; the others
    # are shaped to the metadata when loaded, and have nothing to check beforehand.
    def check_columns(self, columns: dict[str, str]) -> None:
        """Refuse (DatasetUnavailable) columns whose stored type would need a cast."""
        return None

    def count_rows(self, required: list[str]) -> tuple[int, int]:
        """(rows, rows lacking a required value): only for sources read in place."""
        raise NotImplementedError

    def check_engine(self) -> None:
        """Refuse (DatasetUnavailable) if the engine that reads it in place cannot start."""
        return None

    @abc.abstractmethod
    def read_bytes(self) -> bytes | Path:
        """The raw file (or its local path); raises DatasetUnavailable."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """The JSON description stored in the admin store (credentials included)."""

    @abc.abstractmethod
    def where(self) -> str:
        """Where the data lives, for messages and logs: never a credential."""

    def load(self, columns: Collection[str] | None = None, *, strict: bool = False) -> Any:
        """The rows as one Arrow table: of text for CSV, typed already for Parquet.

        ``columns``: only these (matched without regard to case), when the caller needs no
        others; a wide file then costs the memory of the declared columns only. ``strict``
        (when the admin adds the dataset) refuses a CSV line with the wrong number of fields,
        a quote left open, or bytes that are not UTF-8; otherwise such a line is left out and
        such bytes read as a replacement character, so that one row cannot make every query
        fail, nor take other rows with it (``whole_lines``).
        """
        return self.stream(columns, strict=strict).read_all()

    def stream(self, columns: Collection[str] | None = None, *, strict: bool = False) -> RawRows:
        """The same rows as ``load``, read a part at a time (``RawRows``): whoever shapes them
        holds one part of the raw file at once, not all of it beside what it makes of it."""
        raw = self.read_bytes()
        wanted = None if columns is None else {name.lower() for name in columns}
        if self.format == "csv":
            parts = csv_tables(raw, wanted, self.where(), strict=strict)
        else:
            parts = _parquet_tables(raw, wanted)
        return RawRows(parts, self.where(), self.format)

    def public_description(self) -> dict[str, Any]:
        return {
            key: (REDACTED if key in SECRET_FIELDS else value)
            for key, value in self.describe().items()
        }


def _format_from_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower().lstrip(".")
    return {"pq": "parquet", "txt": "csv"}.get(suffix, suffix)


class RawRows:
    """A file's rows as Arrow tables, one part after another (every part has the same columns;
    there is always at least one, empty if the file has no rows). A file that cannot be read
    raises DatasetUnavailable while iterating, after the parts read before the fault."""

    def __init__(self, parts: Iterator[Any], where: str, file_format: str) -> None:
        self._parts, self._where, self.format = parts, where, file_format

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._parts
        except (OSError, ValueError) as err:
            raise DatasetUnavailable(
                f"{self._where} is not a readable {self.format} file: {_first_line(err)}"
            ) from err

    @classmethod
    def whole(cls, table: Any, where: str, file_format: str) -> RawRows:
        """Rows read at once (by SQL or Spark) as one part."""
        return cls(iter([table]), where, file_format)

    def read_all(self) -> Any:
        """Every part as one table."""
        import pyarrow as pa

        return pa.concat_tables(list(self))


# Rows of a Parquet file read at once; a CSV file is read in parts of about this many bytes
# (whole lines): each part is parsed by Arrow's multi-threaded reader.
PARQUET_BATCH_ROWS = 256 * 1024
CSV_PART_BYTES = 16 * 2**20


def _parquet_tables(raw: bytes | Path, wanted: set[str] | None) -> Iterator[Any]:
    """A Parquet file in batches, one row group after another: the reader keeps the bytes it
    read ahead until its read is over, so one read per row group holds one group's bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    handle: Any = raw if isinstance(raw, Path) else pa.BufferReader(raw)
    parquet = pq.ParquetFile(handle, pre_buffer=True)
    schema = parquet.schema_arrow
    names = [n for n in schema.names if wanted is None or n.lower() in wanted]
    empty = True
    for group in range(parquet.metadata.num_row_groups):
        for batch in parquet.iter_batches(
            batch_size=PARQUET_BATCH_ROWS, row_groups=[group], columns=names
        ):
            empty = False
            yield pa.Table.from_batches([batch])
            del batch
    if empty:
        yield pa.Table.from_batches([], schema=pa.schema([schema.field(n) for n in names]))


def whole_lines(data: bytes, where: str, *, strict: bool) -> bytes:
    """CSV bytes in which every line is a whole record: a line with an odd number of quotes
    would open a quoted field that runs into the next lines (one row could swallow other
    people's rows, or fail the whole file), so such lines are left out, or refused when
    ``strict``. Fields holding line breaks are therefore not supported."""
    kept, dropped = _whole_lines(data, where, strict=strict)
    if dropped:
        log.warning("%s: %d line(s) with a quote left open are left out", where, dropped)
    return bytes(kept)


def _whole_lines(
    data: bytes | bytearray,
    where: str,
    *,
    strict: bool,
    lines_before: Callable[[], int] | None = None,
) -> tuple[bytes | bytearray, int]:
    """``whole_lines`` of a part of a file (``lines_before`` tells how many lines come before
    it, counted only when a message needs it): the part's whole lines, and how many lines
    were left out."""
    import numpy as np

    if b'"' not in data:
        return data, 0
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == ord("\n"))
    if len(ends) == 0 or ends[-1] != len(raw) - 1:
        ends = np.append(ends, len(raw) - 1)
    quotes = np.cumsum(raw == ord('"'))
    per_line = np.diff(np.concatenate(([0], quotes[ends])))
    odd = np.flatnonzero(per_line % 2)
    if len(odd) == 0:
        return data, 0
    if strict or (lines_before is None and odd[0] == 0):
        # the header itself, or the admin adding the file: say which line
        line = (lines_before() if lines_before else 0) + int(odd[0]) + 1
        raise DatasetUnavailable(
            f"{where}: line {line} leaves a quote open (fields holding line breaks are not "
            "supported; every record must be on one line)"
        )
    starts = np.concatenate(([0], ends[:-1] + 1))
    keep = np.ones(len(ends), dtype=bool)
    keep[odd] = False
    return b"".join(data[starts[i] : ends[i] + 1] for i in np.flatnonzero(keep)), len(odd)


# The texts pandas reads as missing by default: CSV files read before kept that meaning.
MISSING_TEXTS = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip


def csv_tables(
    raw: bytes | Path,
    wanted: set[str] | None,
    where: str,
    *,
    strict: bool,
    part_bytes: int | None = None,
) -> Iterator[Any]:
    """A CSV file as Arrow tables of text columns (only those in ``wanted``, by lower-case
    name), read in parts of whole lines, each by Arrow's multi-threaded reader: conform
    converts them with the admin's types, so no reader's guesses decide what a column is.

    Every part is read as the header line followed by the part's lines, with the same options,
    so the file means what it meant read at once: a line with a quote left open is left out
    (``whole_lines``); a line with another number of fields than the header is left out;
    bytes that are not UTF-8 read as a replacement character. When ``strict``, each of these
    refuses the file, and a file with several faults is refused for the one it was refused for
    read at once: the first quote left open in the file, else its first bytes that are not
    UTF-8, else the first line Arrow refuses (the parts after a fault are still scanned for
    the faults that come before it in that order, without being parsed).
    """
    fault: tuple[int, Exception] | None = None  # (rank: 1 UTF-8, 2 parsing; the error)
    header: bytes | None = None
    blank = b""  # the empty lines before the header
    names: list[str] = []
    dropped = skipped = 0

    def skip(row: Any) -> str:
        nonlocal skipped
        skipped += 1
        return "skip"

    for offset, part in _line_parts(raw, part_bytes or CSV_PART_BYTES):
        # a quote left open comes first: the first one is raised where it is found
        kept, left_out = _whole_lines(
            part,
            where,
            strict=strict,
            lines_before=partial(_lines_before, raw, offset) if offset else None,
        )
        dropped += left_out
        del part
        if fault is not None and fault[0] == 1:
            continue
        try:
            kept.decode("utf-8")
        except UnicodeDecodeError as err:
            if strict:
                fault = (1, ValueError(_utf8_message(err, offset)))
                continue
            kept = kept.decode("utf-8", errors="replace").encode("utf-8")
        if fault is not None:
            continue
        if header is None:
            kept = blank + kept if blank else kept
            header, blank = _header_lines(kept), b""
            if header is None:  # empty lines only, so far: read with what follows
                blank = bytes(kept)
                continue
            body = kept
            names = _header(header)
            if wanted is not None:
                names = [name for name in names if name.lower() in wanted]
        elif not kept:
            continue
        else:
            body = header + kept
        del kept
        try:
            table = pcsv_read(body, names, None if strict else skip)
        except ValueError as err:  # pyarrow.ArrowInvalid: refused when strict
            fault = (2, err)
            continue
        del body
        yield table
        del table
    if fault is None and header is None:
        try:  # a file without a header: read as it is (refused, as it was read at once)
            yield pcsv_read(blank, names, None if strict else skip)
        except ValueError as err:
            fault = (2, err)
    if fault is not None:
        raise fault[1]
    if dropped:
        log.warning("%s: %d line(s) with a quote left open are left out", where, dropped)
    if skipped:
        log.warning(
            "%d line(s) with another number of fields than the header are left out", skipped
        )


def pcsv_read(data: bytes | bytearray, names: list[str], invalid_row: Any) -> Any:
    """One part of a CSV file (its header line first) as an Arrow table of text."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    return pcsv.read_csv(
        pa.BufferReader(data),
        parse_options=pcsv.ParseOptions(invalid_row_handler=invalid_row),
        convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            include_columns=names,
            null_values=list(MISSING_TEXTS),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )


def _line_parts(raw: bytes | Path, size: int) -> Iterator[tuple[int, bytearray]]:
    """The file in parts of about ``size`` bytes that end at a line break (or the file's
    end), with where each starts; one empty part for an empty file. Each part is read into
    its own buffer (only the line cut at its end is copied again)."""
    handle: Any = raw.open("rb") if isinstance(raw, Path) else io.BytesIO(raw)
    with handle:
        offset, rest = 0, b""
        while True:
            part = bytearray(len(rest) + size)
            part[: len(rest)] = rest
            filled, cut, end = len(rest), 0, False
            while not cut and not end:
                if filled == len(part):
                    part.extend(bytes(size))  # a line longer than a part
                with memoryview(part) as view:
                    got = handle.readinto(view[filled:])
                filled += got or 0
                end = not got
                if filled == len(part):
                    cut = part.rfind(b"\n") + 1
            if end:
                cut = filled
            rest = bytes(part[cut:filled])
            del part[cut:]
            if part or offset == 0:
                yield offset, part
            if end:
                return
            offset += len(part)
            del part


def _lines_before(raw: bytes | Path, offset: int) -> int:
    """How many lines the file holds before byte ``offset`` (a line's start)."""
    if not isinstance(raw, Path):
        return raw.count(b"\n", 0, offset)
    count = 0
    with raw.open("rb") as handle:
        while offset > 0:
            block = handle.read(min(offset, CSV_PART_BYTES))
            if not block:
                break
            count, offset = count + block.count(b"\n"), offset - len(block)
    return count


def _header_lines(data: bytes | bytearray) -> bytes | None:
    """The file's lines up to its header (the first line that is not empty), which every
    later part is read after; None when ``data`` holds only empty lines."""
    end = 0
    while end < len(data):
        cut = data.find(b"\n", end)
        stop = len(data) if cut < 0 else cut + 1
        line, end = data[end:stop].rstrip(b"\n"), stop
        if line not in (b"", b"\r"):
            return bytes(data[:end]) + (b"" if cut >= 0 else b"\n")
    return None


def _utf8_message(err: UnicodeDecodeError, offset: int) -> str:
    """Python's message for bytes that are not UTF-8, with positions in the whole file."""
    start, end = err.start + offset, err.end + offset
    if err.end - err.start == 1:
        what = f"byte 0x{err.object[err.start]:02x} in position {start}"
    else:
        what = f"bytes in position {start}-{end - 1}"
    return f"'{err.encoding}' codec can't decode {what}: {err.reason}"


def _header(data: bytes) -> list[str]:
    """The column names of the CSV's header line."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    first = data.lstrip(b"\r\n")
    first = first.split(b"\n", 1)[0] + b"\n"
    return list(pcsv.read_csv(pa.BufferReader(first)).column_names) if first.strip() else []


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
