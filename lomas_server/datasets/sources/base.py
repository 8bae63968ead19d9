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
from collections.abc import Collection
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
        """The rows as an Arrow table: of text for CSV, typed already for Parquet.

        ``columns``: only these (matched without regard to case), when the caller needs no
        others; a wide file then costs the memory of the declared columns only. ``strict``
        (when the admin adds the dataset) refuses a CSV line with the wrong number of fields,
        a quote left open, or bytes that are not UTF-8; otherwise such a line is left out and
        such bytes read as a replacement character, so that one row cannot make every query
        fail, nor take other rows with it (``whole_lines``).
        """
        raw = self.read_bytes()
        handle: Any = raw if isinstance(raw, Path) else io.BytesIO(raw)
        wanted = None if columns is None else {name.lower() for name in columns}
        try:
            if self.format == "csv":
                data = raw.read_bytes() if isinstance(raw, Path) else raw
                return read_csv_text(
                    whole_lines(data, self.where(), strict=strict), wanted, strict=strict
                )
            import pyarrow.parquet as pq

            if wanted is None:
                return pq.read_table(handle)
            names = pq.ParquetFile(handle).schema_arrow.names
            if not isinstance(handle, Path):
                handle.seek(0)
            return pq.read_table(handle, columns=[n for n in names if n.lower() in wanted])
        except (OSError, ValueError) as err:
            raise DatasetUnavailable(
                f"{self.where()} is not a readable {self.format} file: {_first_line(err)}"
            ) from err

    def public_description(self) -> dict[str, Any]:
        return {
            key: (REDACTED if key in SECRET_FIELDS else value)
            for key, value in self.describe().items()
        }


def _format_from_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower().lstrip(".")
    return {"pq": "parquet", "txt": "csv"}.get(suffix, suffix)


def whole_lines(data: bytes, where: str, *, strict: bool) -> bytes:
    """CSV bytes in which every line is a whole record: a line with an odd number of quotes
    would open a quoted field that runs into the next lines (one row could swallow other
    people's rows, or fail the whole file), so such lines are left out, or refused when
    ``strict``. Fields holding line breaks are therefore not supported."""
    import numpy as np

    if b'"' not in data:
        return data
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == ord("\n"))
    if len(ends) == 0 or ends[-1] != len(raw) - 1:
        ends = np.append(ends, len(raw) - 1)
    quotes = np.cumsum(raw == ord('"'))
    per_line = np.diff(np.concatenate(([0], quotes[ends])))
    odd = np.flatnonzero(per_line % 2)
    if len(odd) == 0:
        return data
    if strict or odd[0] == 0:
        # the header itself, or the admin adding the file: say which line
        raise DatasetUnavailable(
            f"{where}: line {int(odd[0]) + 1} leaves a quote open (fields holding line breaks "
            "are not supported; every record must be on one line)"
        )
    log.warning("%s: %d line(s) with a quote left open are left out", where, len(odd))
    starts = np.concatenate(([0], ends[:-1] + 1))
    keep = np.ones(len(ends), dtype=bool)
    keep[odd] = False
    return b"".join(data[starts[i] : ends[i] + 1] for i in np.flatnonzero(keep))


# The texts pandas reads as missing by default: CSV files read before kept that meaning.
MISSING_TEXTS = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip


def read_csv_text(data: bytes, wanted: set[str] | None, *, strict: bool) -> Any:
    """CSV bytes as an Arrow table of text columns (only those in ``wanted``, by lower-case
    name), with Arrow's multi-threaded reader: conform converts them with the admin's types,
    so no reader's guesses decide what a column is. A line with another number of fields than
    the header is left out (refused when ``strict``); bytes that are not UTF-8 read as a
    replacement character (refused when ``strict``)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        if strict:
            raise
        data = data.decode("utf-8", errors="replace").encode("utf-8")
    names = _header(data)
    if wanted is not None:
        names = [name for name in names if name.lower() in wanted]
    skipped = 0

    def skip(row: Any) -> str:
        nonlocal skipped
        skipped += 1
        return "skip"

    table = pcsv.read_csv(
        io.BytesIO(data),
        parse_options=pcsv.ParseOptions(invalid_row_handler=None if strict else skip),
        convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            include_columns=names,
            null_values=list(MISSING_TEXTS),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    if skipped:
        log.warning(
            "%d line(s) with another number of fields than the header are left out", skipped
        )
    return table


def _header(data: bytes) -> list[str]:
    """The column names of the CSV's first line."""
    import pyarrow.csv as pcsv

    first = data.split(b"\n", 1)[0] + b"\n"
    return list(pcsv.read_csv(io.BytesIO(first)).column_names) if first.strip() else []


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
