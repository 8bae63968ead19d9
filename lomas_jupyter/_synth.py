"""Synthetic data (SmartNoise-Synth): the request the server fits a synthesizer for, and the
public domain its price comes with.

The rows come back as any release does (``Release``, its DataFrame's ``attrs`` saying what
it cost); what is particular to synthetic data is said here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from lomas_jupyter._results import Estimate

SYNTHESIZERS = ("mst", "aim")
# domain_table(), in this order.
DOMAIN_COLUMNS = ("column", "domain", "nullable")


def synth_body(
    synthesizer: str,
    columns: Sequence[str],
    *,
    epsilon: float,
    delta: float | None = None,
    rows: int = 1000,
    bins: int = 10,
    fresh: bool | None = None,
) -> dict[str, Any]:
    """The body of ``/synth`` (``fresh`` only for a release, never for its price); a delta
    left out is the server's to choose."""
    body: dict[str, Any] = {
        "synthesizer": synthesizer,
        # One column given as a string is one column, not one per letter.
        "columns": [columns] if isinstance(columns, str) else list(columns),
        "epsilon": epsilon,
        "rows": rows,
        "bins": bins,
    }
    if delta is not None:
        body["delta"] = delta
    if fresh is not None:
        body["fresh"] = fresh
    return body


def domain_table(estimate: Estimate) -> pd.DataFrame:
    """What a synthesizer would model, one row per column: its declared values, or the
    equal-width bins its bounds are cut into (``DOMAIN_COLUMNS``). All from the metadata:
    a synthetic value is always one of these."""
    rows = []
    for column in estimate.raw.get("domain") or ():
        if "values" in column:
            domain = f"{column['values']} values"
        else:
            domain = f"{column['bins']} bins"
        rows.append((column["column"], domain, bool(column.get("nullable", False))))
    return pd.DataFrame(rows, columns=list(DOMAIN_COLUMNS))


def synth_notes(estimate: Estimate) -> list[str]:
    """What an analyst should know before paying: how the synthesizer works, and how much
    less each row gets when a person may have several."""
    notes = []
    raw = estimate.raw
    if raw.get("purpose"):
        notes.append(f"{raw.get('synthesizer', 'the synthesizer')}: {raw['purpose']}")
    per_person = int(raw.get("rows_per_person") or 1)
    if per_person > 1:
        notes.append(
            f"one person may have up to {per_person} rows here: the synthesizer gets epsilon / "
            f"{per_person} for each row, so expect more noise than the cost alone suggests"
        )
    return notes
