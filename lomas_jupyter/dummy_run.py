"""Run a SmartNoise-SQL query in the kernel, on dummy rows, spending nothing.

The dummy rows come from the server (generated from metadata only); the query goes through
the very allow-list, planner and engine the server uses, so a query that works here works
there, and a query refused there is refused here with the same message.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lomas_server.datasets import conform_to_metadata
from lomas_server.engines.smartnoise_sql import SmartnoiseSqlEngine, SqlPlan
from lomas_server.metadata import DatasetMetadata

_engine: SmartnoiseSqlEngine | None = None
_engine_lock = threading.Lock()


@dataclass(frozen=True)
class DummyRun:
    result: pd.DataFrame
    plan: SqlPlan
    rows: int
    seed: int


def _shared_engine() -> SmartnoiseSqlEngine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = SmartnoiseSqlEngine(max_readers=2)
        return _engine


def run_on_dummy(
    metadata_document: dict[str, Any],
    dummy: pd.DataFrame,
    dataset: str,
    query: str,
    *,
    epsilon: float,
    delta: float,
    seed: int,
) -> DummyRun:
    metadata = DatasetMetadata.from_dict(metadata_document)
    engine = _shared_engine()
    plan = engine.plan(dataset, metadata, query, epsilon, delta)
    frame = conform_to_metadata(dummy.astype(object).where(dummy.notna(), None), metadata)
    outcome = engine.execute(plan, metadata, f"dummy:{len(frame)}:{seed}", lambda: frame)
    result = pd.DataFrame(outcome.rows, columns=outcome.columns)
    return DummyRun(result=result, plan=plan, rows=len(frame), seed=seed)
