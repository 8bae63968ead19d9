"""Values in queries, typed by the server against the column they are compared with.

A comparison whose constant the engine converts while it reads rows can fail on some rows and
not on others: a date string that one engine parses and another does not, or a decimal with
more digits than an integer column can be widened to, raises only when a row reaches it. That
failure is a yes/no answer about the data that no noise covers. So every value an analyst
writes (in SQL or in an OpenDP filter) is parsed here, once, into a value of the column's own
type, in one accepted format per type, and handed to the engines as a typed constant. Anything
else is refused with a message naming the format; nothing is ever converted per row.

The formats (docs/SECURITY.md):

- ``int`` columns: whole numbers up to 1e15 in magnitude;
- ``float`` columns: numbers up to 1e15 in magnitude, either whole or at least 0.0001 in
  magnitude (SmartNoise-SQL cannot write smaller ones back as SQL);
- ``string`` columns: text of at most 1,000 characters without control characters or
  backslashes (engines disagree on what a backslash means);
- ``boolean`` columns: true or false;
- ``datetime`` columns: ``'YYYY-MM-DD'`` or ``'YYYY-MM-DD HH:MM:SS[.ffffff]'``, years 0001-9999,
  no time zone.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import datetime
from typing import Any

from lomas_server.errors import InvalidQuery
from lomas_server.metadata import ColumnSpec

MAX_MAGNITUDE = 1e15
MIN_FRACTION = 1e-4
MAX_TEXT = 1000
DATETIME_FORMAT = "'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS[.ffffff]'"
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?: (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?)?$", re.ASCII
)


def typed_value(value: Any, spec: ColumnSpec) -> Any:
    """``value`` as a constant of ``spec``'s type: int, float, str, bool or datetime."""
    kind = spec.type
    if kind in ("int", "float"):
        return _number(value, spec)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise InvalidQuery(f"column {spec.name!r} is boolean: compare it with true or false")
        return value
    if not isinstance(value, str):
        expected = DATETIME_FORMAT if kind == "datetime" else "a text value in quotes"
        raise InvalidQuery(f"column {spec.name!r} is {kind}: compare it with {expected}")
    if kind == "datetime":
        return parse_datetime(value, spec.name)
    return _text(value, spec.name)


def parse_datetime(text: str, column: str) -> datetime:
    match = _DATETIME.match(text)
    if match is None:
        raise InvalidQuery(
            f"column {column!r} is datetime: write its values as {DATETIME_FORMAT} "
            f"(got {_shown(text)})"
        )
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError as err:
        raise InvalidQuery(f"{_shown(text)} is not a valid date and time for {column!r}") from err


def sql_text(value: Any, spec: ColumnSpec) -> str:
    """How a typed constant is written in the SQL that SmartNoise-SQL and the engines read.

    Every engine reads these forms as constants of the column's type: integers as integers,
    floats as decimals (which every engine converts once, to the column's double), and
    timestamps through an explicit cast of a constant in the one format all of them parse.
    """
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if spec.type == "int":
        return str(int(value))
    if spec.type == "float":
        text = repr(float(value))
        assert "e" not in text and "inf" not in text and "nan" not in text, text
        return text
    if isinstance(value, datetime):
        return f"CAST('{datetime_text(value)}' AS TIMESTAMP)"
    return "'" + str(value).replace("'", "''") + "'"


def datetime_text(value: datetime) -> str:
    """The canonical text of a timestamp (``strftime`` would drop the zeros of year 1)."""
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    )


def epoch_microseconds(value: datetime) -> int:
    """A timestamp as the integer the engines store for it (no time zone)."""
    delta = value - datetime(1970, 1, 1)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _number(value: Any, spec: ColumnSpec) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidQuery(f"column {spec.name!r} is {spec.type}: compare it with a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidQuery(f"column {spec.name!r}: compare it with a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise InvalidQuery(
            f"numbers compared with {spec.name!r} are at most {MAX_MAGNITUDE:g} in magnitude"
        )
    whole = isinstance(value, int) or float(value).is_integer()
    if spec.type == "int":
        if not whole:
            raise InvalidQuery(
                f"column {spec.name!r} is int: compare it with a whole number "
                f"(e.g. '{spec.name} >= {math.floor(value) + 1}' for '{spec.name} > {value}')"
            )
        return int(value)
    if not whole and abs(value) < MIN_FRACTION:
        raise InvalidQuery(
            f"numbers compared with {spec.name!r} are 0, whole, or at least {MIN_FRACTION:g} "
            "in magnitude"
        )
    return float(value)


def _text(value: str, column: str) -> str:
    if len(value) > MAX_TEXT:
        raise InvalidQuery(f"text compared with {column!r} is at most {MAX_TEXT} characters")
    if "\\" in value or any(unicodedata.category(c) == "Cc" for c in value):
        raise InvalidQuery(
            f"text compared with {column!r} may not hold backslashes or control characters"
        )
    return value


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")
