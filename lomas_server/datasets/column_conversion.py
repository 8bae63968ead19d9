"""One stored column converted to its declared type, value by value.

Every value is converted by one rule that depends on its column's declared type, the type the
file stores it in, and the value itself: never on the other values of the column, nor on any
other column. Vectorised casts are used where they agree, value for value, with the rule; a
value they do not take is converted on its own by the same rule. A value that does not convert
is missing, and counted, so that conform.py can refuse the data or log what was read as
missing.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from lomas_server.arrow_schema import arrow_type
from lomas_server.errors import DatasetUnavailable

_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}
# The calendar every engine and Python share: years 1 to 9999, as microseconds since 1970.
FIRST_MICROSECOND = -62_135_596_800_000_000
LAST_MICROSECOND = 253_402_300_799_999_999
_DATE_LIKE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}")


# -- one rule per declared type ---------------------------------------------------------------
def converted_column(
    kind: str, column: Any, name: str, *, valid_text: bool = False
) -> tuple[Any, int]:
    """The column as the declared ``kind``, and how many present values did not convert.
    Raises DatasetUnavailable when the stored type can never hold that kind.

    ``valid_text``: text known to be valid UTF-8 already (Arrow's CSV reader checks it), so
    not checked again."""
    import pyarrow as pa

    stored = column.type
    texty = (
        pa.types.is_string(stored)
        or pa.types.is_large_string(stored)
        or pa.types.is_binary(stored)
        or pa.types.is_large_binary(stored)
    )
    numeric = (
        pa.types.is_integer(stored) or pa.types.is_floating(stored) or pa.types.is_decimal(stored)
    )
    temporal = pa.types.is_timestamp(stored) or pa.types.is_date(stored)
    if pa.types.is_null(stored):
        return pa.nulls(len(column), arrow_type(kind)), 0
    if texty:
        text, misfits = (column, 0) if valid_text and stored == pa.string() else _arrow_text(column)
        if kind == "string":
            return text, misfits
        converted, more = _TEXT_RULES[kind](text)
        return converted, misfits + more
    if kind == "string" and (numeric or pa.types.is_boolean(stored) or temporal):
        if temporal:
            column, misfits = _arrow_timestamps(column)
            return column.cast(pa.string()), misfits
        return column.cast(pa.string()), 0
    if kind == "int" and (numeric or pa.types.is_boolean(stored)):
        return _numbers_to_int(column)
    if kind == "float" and (numeric or pa.types.is_boolean(stored)):
        return _without_nan(column.cast(pa.float64(), safe=False)), 0
    if kind == "boolean" and pa.types.is_boolean(stored):
        return column, 0
    if kind == "boolean" and numeric:
        return _numbers_to_boolean(column)
    if kind == "datetime" and temporal:
        return _arrow_timestamps(column)
    raise DatasetUnavailable(f"column {name!r} is stored as {stored}, which cannot hold {kind}")


def _numbers_to_int(column: Any) -> tuple[Any, int]:
    """Whole numbers within 64 bits, exactly; anything else missing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    stored = column.type
    if pa.types.is_boolean(stored) or (
        pa.types.is_integer(stored) and stored not in (pa.uint64(),)
    ):
        return column.cast(pa.int64()), 0
    if pa.types.is_decimal(stored) or stored == pa.uint64():
        try:
            return column.cast(pa.int64()), 0  # exact, or it raises
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raw = column.to_pylist()
            values = [None if v is None else _whole(v) for v in raw]
            failed = sum(1 for v, w in zip(raw, values, strict=True) if v is not None and w is None)
            return pa.array(values, type=pa.int64()), failed
    floats = column.cast(pa.float64())
    whole = pc.and_(
        pc.is_finite(floats),
        pc.and_(pc.equal(pc.floor(floats), floats), pc.less(pc.abs(floats), 2.0**63)),
    )
    whole = pc.fill_null(whole, False)
    present = pc.invert(column.is_null())
    misfits = int(pc.sum(pc.and_(present, pc.invert(whole))).as_py() or 0)
    kept = pc.if_else(whole, floats, pa.scalar(None, pa.float64()))
    return kept.cast(pa.int64(), safe=False), misfits


def _whole(value: Any) -> int | None:
    try:
        number = int(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if number != value or not -(2**63) <= number < 2**63:
        return None
    return number


def _numbers_to_boolean(column: Any) -> tuple[Any, int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    floats = column.cast(pa.float64(), safe=False)
    true, false = pc.equal(floats, 1.0), pc.equal(floats, 0.0)
    known = pc.fill_null(pc.or_(true, false), False)
    present = pc.invert(column.is_null())
    misfits = int(pc.sum(pc.and_(present, pc.invert(known))).as_py() or 0)
    return pc.if_else(known, true, pa.scalar(None, pa.bool_())), misfits


def _without_nan(column: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.if_else(pc.is_nan(column), pa.scalar(None, pa.float64()), column)


# -- text ------------------------------------------------------------------------------------
def _text_to_int(text: Any) -> tuple[Any, int]:
    """Arrow's exact parse where it takes every value (plain digits), else each value alone."""
    import pyarrow as pa

    try:
        return text.cast(pa.int64()), 0
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values = [None if v is None else _one_int(v) for v in text.to_pylist()]
    failed = sum(
        1 for v, n in zip(text.to_pylist(), values, strict=True) if v is not None and n is None
    )
    return pa.array(values, type=pa.int64()), failed


def _one_int(text: str) -> int | None:
    text = text.strip()
    if not text.isascii() or "_" in text:
        return None
    try:
        number = int(text)
    except ValueError:
        whole = _one_float(text)
        # "3.0" is 3; a float is an exact whole number only below 2**53
        if whole is None or not math.isfinite(whole) or not whole.is_integer():
            return None
        if abs(whole) >= 2**53:
            return None
        number = int(whole)
    return number if -(2**63) <= number < 2**63 else None


def _text_to_float(text: Any) -> tuple[Any, int]:
    import pyarrow as pa

    try:
        return _without_nan(text.cast(pa.float64())), 0
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    raw = text.to_pylist()
    values = [None if v is None else _one_float(v) for v in raw]
    failed = sum(1 for v, n in zip(raw, values, strict=True) if v is not None and n is None)
    return _without_nan(pa.array(values, type=pa.float64())), failed


def _one_float(text: str) -> float | None:
    """What Arrow's parser makes of a number, for the values it does not take (surrounding
    spaces): never digits of other scripts or Python's underscores."""
    text = text.strip()
    if not text.isascii() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _text_to_boolean(text: Any) -> tuple[Any, int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    words = pc.utf8_lower(pc.utf8_trim_whitespace(text))
    true = pc.is_in(words, value_set=pa.array(sorted(_TRUE)))
    false = pc.is_in(words, value_set=pa.array(sorted(_FALSE)))
    known = pc.or_(true, false)
    present = pc.invert(text.is_null())
    misfits = int(pc.sum(pc.and_(present, pc.invert(known))).as_py() or 0)
    return pc.if_else(known, true, pa.scalar(None, pa.bool_())), misfits


def _text_to_datetime(text: Any) -> tuple[Any, int]:
    """ISO 8601 by Arrow's parser where it takes every value, else each value alone by the
    same reading (and a few common date forms); within years 1-9999."""
    import pyarrow as pa

    try:
        parsed = text.cast(pa.timestamp("us"))
        return _within_calendar(parsed)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    raw = text.to_pylist()
    values = [None if v is None else _one_datetime(v) for v in raw]
    failed = sum(1 for v, n in zip(raw, values, strict=True) if v is not None and n is None)
    return pa.array(values, type=pa.timestamp("us")), failed


def _one_datetime(text: str) -> datetime | None:
    text = text.strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        if not _DATE_LIKE.search(text):
            return None  # no date: a time of day alone, or 'now', would be read as today's
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


_TEXT_RULES = {
    "int": _text_to_int,
    "float": _text_to_float,
    "boolean": _text_to_boolean,
    "datetime": _text_to_datetime,
}


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
    values: list[str | None] = []
    failed = 0
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


# -- dates and times --------------------------------------------------------------------------
def _within_calendar(column: Any) -> tuple[Any, int]:
    """Timestamps (microseconds, no zone) outside years 1-9999 made missing, and how many."""
    import pyarrow as pa
    import pyarrow.compute as pc

    micros = pc.cast(column, pa.int64())
    inside = pc.and_(
        pc.greater_equal(micros, FIRST_MICROSECOND), pc.less_equal(micros, LAST_MICROSECOND)
    )
    outside = int(pc.sum(pc.invert(pc.fill_null(inside, True))).as_py() or 0)
    if not outside:
        return column, 0
    return pc.if_else(inside, column, pa.scalar(None, column.type)), outside


_UNIT_MICROSECONDS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}


def _arrow_timestamps(column: Any) -> tuple[Any, int]:
    """Dates and timestamps of any unit and zone as microseconds without zone (zoned ones in
    UTC, nanoseconds rounded down), within years 1-9999, without any step that can
    overflow; and how many were not."""
    import numpy as np
    import pyarrow as pa

    kind = column.type
    per_unit: int | None
    if pa.types.is_date32(kind):
        raw, per_unit = column.cast(pa.int32()).cast(pa.int64()), 86_400_000_000
    elif pa.types.is_date64(kind):
        raw, per_unit = column.cast(pa.int64()), 1_000
    else:
        raw, per_unit = column.cast(pa.int64()), _UNIT_MICROSECONDS[kind.unit]
    present = ~column.is_null().to_numpy(zero_copy_only=False)
    values = raw.fill_null(0).to_numpy(zero_copy_only=False)
    valid = present.copy()
    if per_unit is None:  # nanoseconds: dividing never overflows
        micros = np.floor_divide(values, 1_000)
    else:
        low, high = -(-FIRST_MICROSECOND // per_unit), LAST_MICROSECOND // per_unit
        valid &= (values >= low) & (values <= high)
        micros = np.where(valid, values, 0) * per_unit
    valid &= (micros >= FIRST_MICROSECOND) & (micros <= LAST_MICROSECOND)
    outside = int((present & ~valid).sum())
    return pa.array(micros, type=pa.timestamp("us"), mask=~valid), outside
