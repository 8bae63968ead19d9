"""Values in queries, typed against their column in one format per type."""

from __future__ import annotations

from datetime import datetime

import pytest

from lomas_server.errors import InvalidQuery
from lomas_server.literals import epoch_microseconds, sql_text, typed_value
from lomas_server.metadata import ColumnSpec

INT, FLOAT = ColumnSpec("n", "int"), ColumnSpec("x", "float")
TEXT, FLAG, WHEN = (
    ColumnSpec("s", "string"),
    ColumnSpec("b", "boolean"),
    ColumnSpec("d", "datetime"),
)


@pytest.mark.parametrize(
    ("spec", "value", "typed", "written"),
    [
        (INT, 3, 3, "3"),
        (INT, 3.0, 3, "3"),
        (INT, -(10**15), -(10**15), "-1000000000000000"),
        (FLOAT, 2, 2.0, "2.0"),
        (FLOAT, 0.0001, 0.0001, "0.0001"),
        (FLOAT, 123456789012345.6, 123456789012345.6, "123456789012345.6"),
        (TEXT, "é😀 'x'", "é😀 'x'", "'é😀 ''x'''"),
        (FLAG, True, True, "TRUE"),
        (WHEN, "0001-01-01", datetime(1, 1, 1), "CAST('0001-01-01 00:00:00.000000' AS TIMESTAMP)"),
        (
            WHEN,
            "2000-02-29 23:59:59.5",
            datetime(2000, 2, 29, 23, 59, 59, 500000),
            "CAST('2000-02-29 23:59:59.500000' AS TIMESTAMP)",
        ),
    ],
)
def test_accepted_values_become_constants_of_the_column_type(spec, value, typed, written):
    assert typed_value(value, spec) == typed
    assert type(typed_value(value, spec)) is type(typed)
    assert sql_text(typed_value(value, spec), spec) == written


@pytest.mark.parametrize(
    ("spec", "value", "mentions"),
    [
        (INT, 40.5, "whole number"),
        (INT, True, "compare it with a number"),
        (INT, "3", "compare it with a number"),
        (INT, 10**16, r"at most 1e\+15"),
        (FLOAT, float("nan"), "finite"),
        (FLOAT, 1e-5, "0.0001"),
        (TEXT, 5, "text value"),
        (TEXT, "a\\b", "backslashes"),
        (TEXT, "a\nb", "control characters"),
        (TEXT, "x" * 1001, "1000 characters"),
        (FLAG, 1, "true or false"),
        (WHEN, "2020/01/01", "'YYYY-MM-DD'"),
        (WHEN, "2020-01-01T00:00:00", "'YYYY-MM-DD'"),
        (WHEN, "2020-01-01 00:00:00+01:00", "'YYYY-MM-DD'"),
        (WHEN, "2020-1-1", "'YYYY-MM-DD'"),
        (WHEN, "2021-02-29", "not a valid date"),
        (WHEN, "2020-01-01 24:00:00", "not a valid date"),
        (WHEN, "２０２０-01-01", "'YYYY-MM-DD'"),  # other digits than ASCII ones
    ],
)
def test_other_values_are_refused_naming_the_format(spec, value, mentions):
    with pytest.raises(InvalidQuery, match=mentions):
        typed_value(value, spec)


def test_timestamps_compare_as_microseconds_since_1970():
    assert epoch_microseconds(datetime(1970, 1, 1)) == 0
    assert epoch_microseconds(datetime(1969, 12, 31, 23, 59, 59, 999999)) == -1
    assert epoch_microseconds(datetime(1, 1, 1)) == -62135596800 * 10**6
