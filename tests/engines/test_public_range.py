"""Released values kept in their public range (engines/public_range.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lomas_server.engines.public_range import within


@pytest.mark.parametrize(
    ("value", "lower", "upper", "expected"),
    [
        (-3, 0.0, None, 0),
        (5, 0.0, None, 5),
        (1.04, 0.0, 1.0, 1.0),
        (-281.0, 2000.0, 7000.0, 2000.0),
        (np.int64(-2), 0.0, None, np.int64(0)),
        (np.float64(9000.5), None, 7000.0, np.float64(7000.0)),
    ],
)
def test_a_value_outside_moves_to_the_nearest_bound_keeping_its_type(value, lower, upper, expected):
    kept = within(value, lower, upper)
    assert kept == expected and type(kept) is type(value)


@pytest.mark.parametrize("value", [None, True, "text", math.nan])
def test_what_is_not_a_number_is_left_alone(value):
    kept = within(value, 0.0, 1.0)
    assert kept is value or (isinstance(value, float) and math.isnan(kept))
