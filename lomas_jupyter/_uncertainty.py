"""What a result is worth, read from the server's accuracy: half-widths and notes.

The server says, for each released column, the half-width of the interval that holds the
true value with the stated confidence (a count's or a sum's), or for a mean the constant K
of its half-width K/n for a group of n rows; which values post-processing moved into their
public range; and the noisy count a group needs to be shown when groups are thresholded.
This module turns that into ``± column`` values, per row where they depend on the group,
and one-line notes, so that no result arrives without saying what it is worth.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

PLUS_MINUS = "± "


def half_widths(frame: pd.DataFrame, accuracy: dict[str, Any] | None) -> dict[str, Any]:
    """Per released column: its half-width (one number), a list with one per row (a mean,
    when the result also counts its rows), or None where none is known."""
    if not accuracy:
        return {}
    out: dict[str, Any] = {}
    for column in accuracy.get("columns", []):
        name = column["column"]
        if column.get("kind") is None and not column.get("noisy_values"):
            continue  # a group key: exact, not noisy
        if column.get("half_width") is not None:
            out[name] = float(column["half_width"])
        elif column.get("half_width_times_count") is not None and (
            rows := _row_counts(frame, accuracy, column)
        ):
            k = float(column["half_width_times_count"])
            out[name] = [k / n if _positive(n) else None for n in rows]
        else:
            out[name] = None
    return out


def with_uncertainty(frame: pd.DataFrame, widths: dict[str, Any]) -> pd.DataFrame:
    """The frame with a ``± column`` after each column whose half-width is known."""
    shown = frame.copy()
    shown.attrs = dict(frame.attrs)
    for name, width in widths.items():
        if width is None or name not in shown.columns:
            continue
        position = list(shown.columns).index(name) + 1
        values = width if isinstance(width, list) else [width] * len(shown)
        shown.insert(position, PLUS_MINUS + name, pd.Series(values, dtype=float).to_numpy())
    return shown


def release_notes(
    frame: pd.DataFrame,
    result: dict[str, Any],
    accuracy: dict[str, Any] | None,
    *,
    widths: dict[str, Any] | None = None,
) -> list[str]:
    """What the analyst must know to read the result: hidden groups, moved values, means
    whose half-width needs the group size."""
    accuracy = accuracy or {}
    notes = []
    threshold = accuracy.get("threshold")
    if threshold is not None:
        about = math.ceil(float(threshold))
        empty = "no group passed it; " if len(frame) == 0 else ""
        notes.append(
            f"a group is shown only when its noisy count passes about {about} (its values are "
            f"not public): {empty}smaller groups are hidden, and a shown count near {about} is "
            "likely above the true one"
        )
    elif len(frame) == 0:
        notes.append("no rows: the query's HAVING or LIMIT kept none")
    clamped = result.get("clamped")
    if clamped:
        ranges = {
            c["column"]: (c.get("lower"), c.get("upper")) for c in accuracy.get("columns", [])
        }
        moved = ", ".join(
            f"{count} of {name!r} (to {_range(ranges.get(name))})"
            for name, count in clamped.items()
        )
        notes.append(
            f"post-processing kept values in their public range: moved {moved}; free under "
            "DP, --no-postprocess keeps the raw values"
        )
    if widths is None:
        widths = half_widths(frame, accuracy)
    for column in accuracy.get("columns", []):
        k = column.get("half_width_times_count")
        shown = column["column"] in frame.columns  # not with --no-postprocess's raw parts
        if k is not None and shown and widths.get(column["column"]) is None:
            notes.append(f"{column['column']!r}: ±{k:.4g}/n for a group of n rows (95%)")
    return notes


def estimate_notes(accuracy: dict[str, Any]) -> list[str]:
    notes = []
    threshold = accuracy.get("threshold")
    if threshold is not None:
        notes.append(
            f"a group will be shown only when its noisy count passes about "
            f"{math.ceil(float(threshold))}: smaller groups will be hidden"
        )
    for column in accuracy.get("columns", []):
        k = column.get("half_width_times_count")
        if k is not None:
            what = "is a mean" if column.get("kind") == "mean" else "is computed from a mean"
            notes.append(
                f"{column['column']!r} {what}: ±{k:.4g}/n for a group of n rows "
                f"(e.g. ±{k / 100:.4g} for 100 rows; delta method)"
            )
    return notes


def _row_counts(
    frame: pd.DataFrame, accuracy: dict[str, Any], mean: dict[str, Any]
) -> list[Any] | None:
    """Each row's released count of the rows behind ``mean``: a count column made of the very
    noisy count the mean divides by (SQL's AVG(x) and COUNT(x) share it), if the result has
    one. Another count (COUNT(*) with NULLs in x) could be larger and understate the width."""
    counts = [
        name for name in mean.get("noisy_values", []) if "count" in name or name.endswith("__n")
    ]
    for column in accuracy.get("columns", []):
        if (
            column.get("kind") == "count"
            and column["column"] in frame.columns
            and column.get("noisy_values") == counts[-1:]
        ):
            return list(frame[column["column"]])
    return None


def _positive(value: Any) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def _range(bounds: tuple[Any, Any] | None) -> str:
    if bounds is None:
        return "its range"
    lower, upper = bounds
    if lower is not None and upper is not None:
        return f"[{lower:g}, {upper:g}]"
    return f">= {lower:g}" if lower is not None else f"<= {upper:g}"
