"""Released values kept in their public range: free post-processing under DP.

A count is never below 0, a mean lies within its column's bounds, a sum is on the bounds'
side of 0, an OpenDP variance within what the bounds allow (SmartNoise-SQL's VAR and STDDEV
are expressions of several noisy values and stay as released). Moving a noisy value there
uses nothing but the value and the metadata, so it costs no budget, and it only brings the
answer closer to the truth (which lies in that range). Both engines apply it, and say how
many values moved.
"""

from __future__ import annotations

import numbers
from typing import Any


def within(value: Any, lower: float | None, upper: float | None) -> Any:
    """``value`` moved into [lower, upper] (a None side is open), of the same type."""
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    number = float(value)
    if number != number:  # NaN: a missing statistic stays missing
        return value
    kind: Any = type(value)
    if lower is not None and number < lower:
        return kind(lower)
    if upper is not None and number > upper:
        return kind(upper)
    return value
