"""The rows a model is fitted on: the columns it needs, at most ``max_ids`` rows per person.

Synthesizers and machine-learning models protect one row; the server charges for a person's
``max_ids`` rows by group privacy (accounting/group_privacy.py). Where a column names each
row's person, a person's rows past ``max_ids`` are left out, the ones kept drawn at random, so
that no person weighs more than paid for, whatever the data holds. (Under row privacy each
row is a person's, up to ``max_ids`` of them, as the admin declared.)
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import pandas as pd

from lomas_server.metadata import DatasetMetadata
from lomas_server.readable import PARQUET_SCAN, reads_as


def person_rows(table: Any, metadata: DatasetMetadata, columns: list[str]) -> pd.DataFrame:
    """``columns`` of the rows (an Arrow table, or a ParquetScan), bounded per person."""
    person = metadata.id_column
    wanted = list(dict.fromkeys([*columns, *([person] if person else [])]))
    if reads_as(table) == PARQUET_SCAN:
        frame = table.lazy_frame().select(wanted).collect().to_pandas()
    else:
        frame = table.select(wanted).to_pandas()
    if person is None:
        return frame[columns]
    rng = np.random.default_rng(secrets.randbits(128))
    shuffled = frame.iloc[rng.permutation(len(frame))]
    kept = shuffled[shuffled.groupby(person, sort=False).cumcount() < metadata.max_ids]
    return kept[columns].reset_index(drop=True)
