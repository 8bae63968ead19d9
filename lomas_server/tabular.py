"""Tables as JSON: ``{"columns": [...], "data": [[...], ...]}`` with plain JSON values."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd


def json_value(value: Any) -> Any:
    """One cell as a JSON value: missing and non-finite numbers become null."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    return value


def table_payload(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "columns": [str(column) for column in frame.columns],
        "data": [
            [json_value(cell) for cell in row] for row in frame.itertuples(index=False, name=None)
        ],
    }


def rows_payload(columns: list[str], rows: list[Any]) -> dict[str, Any]:
    return {"columns": list(columns), "data": [[json_value(cell) for cell in row] for row in rows]}
