"""Run a query in the kernel, on dummy rows, spending nothing.

The dummy rows come from the server (generated from metadata only); the query goes through
the very parser, allow-list, planner and engine the server uses (SmartNoise-SQL, OpenDP or
DiffPrivLib), so a query that works here works there, and one refused there is refused here
with the same message, raised as the same ``ServerError`` subclass (without an HTTP status).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from lomas_jupyter._errors import ServerError
from lomas_server.api_requests import parse_diffprivlib_request, parse_opendp_request
from lomas_server.datasets import conform_to_metadata, to_arrow
from lomas_server.engines.diffprivlib_engine import DiffprivlibEngine
from lomas_server.engines.diffprivlib_models import model_spec
from lomas_server.engines.engine_thread import EngineThread
from lomas_server.engines.opendp_engine import OpenDPEngine
from lomas_server.engines.opendp_query import parse_opendp_query
from lomas_server.engines.smartnoise_sql import SmartnoiseSqlEngine
from lomas_server.engines.sql_plan import SqlPlan
from lomas_server.errors import ServiceError
from lomas_server.limits import DEFAULT_DELTA
from lomas_server.metadata import DatasetMetadata

_engines: tuple[SmartnoiseSqlEngine, OpenDPEngine, DiffprivlibEngine] | None = None
_engines_lock = threading.Lock()


@dataclass(frozen=True)
class DummyRun:
    result: pd.DataFrame
    plan: SqlPlan
    rows: int
    seed: int


def _shared_engines() -> tuple[SmartnoiseSqlEngine, OpenDPEngine, DiffprivlibEngine]:
    """The engines, on one thread of their own (as in the server: see engine_thread.py)."""
    global _engines
    with _engines_lock:
        if _engines is None:
            thread = EngineThread()
            _engines = (
                SmartnoiseSqlEngine(max_readers=2, thread=thread),
                OpenDPEngine(thread=thread),
                DiffprivlibEngine(pool=thread),
            )
        return _engines


@contextmanager
def _refused_as_by_the_server() -> Iterator[None]:
    """The server's checks raise its own errors: callers catch the client's, as for a reply."""
    try:
        yield
    except ServiceError as err:
        raise ServerError.from_reply(err.as_dict()) from err


def _for_dummy(document: dict[str, Any], dummy: pd.DataFrame) -> DatasetMetadata:
    """The dataset's metadata, with room for as many dummy rows as were asked for: ``rows``
    bounds the real data, and dummy rows are not it."""
    if document.get("rows") is not None and document["rows"] < len(dummy):
        document = {**document, "rows": len(dummy)}
    return DatasetMetadata.from_dict(document)


def run_on_dummy(
    metadata_document: dict[str, Any],
    dummy: pd.DataFrame,
    dataset: str,
    query: str,
    *,
    epsilon: float,
    delta: float | None,
    seed: int,
) -> DummyRun:
    with _refused_as_by_the_server():
        metadata = _for_dummy(metadata_document, dummy)
        engine = _shared_engines()[0]
        # A delta not given: a small one where groups are thresholded, as the server would.
        plan = engine.plan(dataset, metadata, query, epsilon, delta, default_delta=DEFAULT_DELTA)
        frame = conform_to_metadata(dummy.astype(object).where(dummy.notna(), None), metadata)
        table = to_arrow(frame, metadata)
        outcome = engine.execute(plan, metadata, f"dummy:{len(frame)}:{seed}", lambda: table)
    result = pd.DataFrame(outcome.rows, columns=outcome.columns)
    return DummyRun(result=result, plan=plan, rows=len(frame), seed=seed)


def run_opendp_on_dummy(
    metadata_document: dict[str, Any], dummy: pd.DataFrame, dataset: str, request: dict[str, Any]
) -> pd.DataFrame:
    """An OpenDP request, through the server's own parser and engine, on dummy rows."""
    with _refused_as_by_the_server():
        metadata = _for_dummy(metadata_document, dummy)
        parsed = parse_opendp_request(request, for_release=False)
        engine = _shared_engines()[1]
        query = parse_opendp_query(parsed.query, metadata)
        noise = parsed.noise
        if not parsed.delta_given:
            # As the server would choose for thresholded groups (and a delta changes nothing
            # where no group is thresholded).
            noise = replace(noise, delta=DEFAULT_DELTA)
        plan = engine.plan(dataset, metadata, query, noise)
        frame = conform_to_metadata(dummy.astype(object).where(dummy.notna(), None), metadata)
        outcome = engine.execute(
            plan, metadata, lambda: to_arrow(frame, metadata), postprocess=parsed.postprocess
        )
    return pd.DataFrame(outcome.rows, columns=outcome.columns)


def fit_model_on_dummy(
    metadata_document: dict[str, Any], dummy: pd.DataFrame, request: dict[str, Any]
) -> dict[str, Any]:
    """A DiffPrivLib model, checked and fitted as the server would, on dummy rows: the
    fitted model's numbers (``FittedModel`` in api.yaml)."""
    with _refused_as_by_the_server():
        metadata = _for_dummy(metadata_document, dummy)
        parsed = parse_diffprivlib_request(request, for_release=False)
        spec = model_spec(
            metadata,
            parsed.model,
            list(parsed.features),
            parsed.target,
            parsed.options,
            parsed.scaler,
        )
        engine = _shared_engines()[2]
        plan = engine.plan(metadata, spec, parsed.epsilon)
        frame = conform_to_metadata(dummy.astype(object).where(dummy.notna(), None), metadata)
        table = to_arrow(frame, metadata)
        return engine.execute(plan, metadata, lambda: table, owner="dummy")
