"""What an analyst can do: list datasets, read metadata, get dummy data, price and run queries.

The order inside ``smartnoise_sql_query`` is the privacy contract: check the request, plan the
query and compute its cost from metadata alone, reserve that cost atomically, and only then
touch the data. A failure after the reservation keeps the spend and gets one generic message;
the cause goes to the server log under the query id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lomas_server.accounting import Budget, PrivacyAmount
from lomas_server.datasets import (
    DatasetCache,
    conform_to_metadata,
    make_dummy,
    source_from_description,
)
from lomas_server.engines.smartnoise_sql import (
    CONFIDENCE,
    ENGINE_NAME,
    SmartnoiseSqlEngine,
    SqlPlan,
)
from lomas_server.errors import (
    DatasetUnavailable,
    Forbidden,
    InvalidRequest,
    LomasError,
    NotFound,
    QueryFailed,
)
from lomas_server.metadata import DatasetMetadata
from lomas_server.store.base import (
    DONE,
    FAILED,
    AdminStore,
    ArchiveEntry,
    DatasetRecord,
    Reservation,
    UserRecord,
)
from lomas_server.tabular import rows_payload, table_payload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Server-wide limits; a dataset's own per-query maximum, when set, replaces the first two."""

    max_query_epsilon: float = 10.0
    max_query_delta: float = 1e-3
    max_dummy_rows: int = 100_000


class AnalystService:
    def __init__(
        self,
        store: AdminStore,
        engine: SmartnoiseSqlEngine,
        cache: DatasetCache,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.cache = cache
        self.limits = limits or Limits()

    # -- identity ----------------------------------------------------------------------------
    def user_by_token_hash(self, token_hash: str) -> UserRecord | None:
        return self.store.user_by_token_hash(token_hash)

    # -- reading -----------------------------------------------------------------------------
    def list_datasets(self, user: str) -> list[dict[str, Any]]:
        out = []
        for grant in self.store.grants_for_user(user):
            record = self.store.get_dataset(grant.dataset)
            if record is None:
                continue
            out.append(
                {
                    "name": record.name,
                    "engines": [ENGINE_NAME],
                    "budget": self._budget(user, record.name).as_dict(),
                    "max_query": self._max_query(record).as_dict(),
                }
            )
        return out

    def metadata(self, user: str, dataset: str) -> dict[str, Any]:
        record = self._granted(user, dataset)
        return _metadata(record).public_view()

    def budget(self, user: str, dataset: str) -> dict[str, Any]:
        self._granted(user, dataset)
        return {"dataset": dataset, **self._budget(user, dataset).as_dict()}

    def queries(self, user: str, dataset: str | None = None) -> list[dict[str, Any]]:
        if dataset is not None:
            self._granted(user, dataset)
        return [_archive_view(entry) for entry in self.store.archive(user, dataset=dataset)]

    def dummy(self, user: str, dataset: str, rows: int, seed: int) -> dict[str, Any]:
        record = self._granted(user, dataset)
        if rows > self.limits.max_dummy_rows:
            raise InvalidRequest(f"'rows' is at most {self.limits.max_dummy_rows}")
        metadata = _metadata(record)
        frame = make_dummy(metadata, rows, seed)
        return {
            **table_payload(frame),
            "types": {name: spec.type for name, spec in metadata.columns.items()},
            "seed": seed,
        }

    # -- SmartNoise-SQL ----------------------------------------------------------------------
    def smartnoise_sql_cost(
        self, user: str, dataset: str, query: str, epsilon: float, delta: float
    ) -> dict[str, Any]:
        plan = self._plan(user, dataset, query, epsilon, delta)[1]
        budget = self._budget(user, dataset)
        earlier = self.store.find_release(user, dataset, _fingerprint(plan, postprocess=True))
        return {
            "cost": plan.cost.as_dict(),
            "budget": budget.as_dict(),
            "fits": budget.allows(plan.cost),
            "normalized_query": plan.sql,
            "replay_of": earlier.query_id if earlier else None,
            "accuracy": {
                "confidence": CONFIDENCE,
                "columns": [column.as_dict() for column in plan.columns],
                "noisy_values": [value.as_dict() for value in plan.noisy_values],
            },
        }

    def smartnoise_sql_query(
        self,
        user: str,
        dataset: str,
        query: str,
        epsilon: float,
        delta: float,
        postprocess: bool,
        fresh: bool = False,
    ) -> dict[str, Any]:
        record, plan = self._plan(user, dataset, query, epsilon, delta)
        fingerprint = _fingerprint(plan, postprocess=postprocess)
        if not fresh:
            earlier = self.store.find_release(user, dataset, fingerprint)
            if earlier is not None:
                # Releasing the same noisy answer again is free post-processing, and it denies
                # an analyst the average of many fresh answers to one question.
                return {
                    "query_id": earlier.query_id,
                    "replay_of": earlier.query_id,
                    "result": earlier.result,
                    "cost": PrivacyAmount.zero().as_dict(),
                    "budget": self._budget(user, dataset).as_dict(),
                }
        version = self._available_version(record)
        query_id = uuid.uuid4().hex
        request = {
            "query": query,
            "normalized_query": plan.sql,
            "epsilon": epsilon,
            "delta": delta,
            "postprocess": postprocess,
        }
        self.store.reserve(
            Reservation(query_id, user, dataset, ENGINE_NAME, request, plan.cost, fingerprint)
        )
        # From here on the budget is spent, whatever happens.
        try:
            result = self._execute(record, plan, postprocess, version)
        except Exception as err:
            log.exception("query %s on %s by %s failed after reservation", query_id, dataset, user)
            self._finish(query_id, FAILED, error=f"{type(err).__name__}: {err}")
            raise QueryFailed(
                "the query failed while running; its budget stays spent. Give the administrator "
                f"the query id {query_id} to find the cause in the server log."
            ) from err
        self._finish(query_id, DONE, result=result)
        return {
            "query_id": query_id,
            "replay_of": None,
            "result": result,
            "cost": plan.cost.as_dict(),
            "budget": self._budget(user, dataset).as_dict(),
        }

    # -- internals ---------------------------------------------------------------------------
    def _plan(
        self, user: str, dataset: str, query: str, epsilon: float, delta: float
    ) -> tuple[DatasetRecord, SqlPlan]:
        record = self._granted(user, dataset, for_query=True)
        plan = self.engine.plan(dataset, _metadata(record), query, epsilon, delta)
        maximum = self._max_query(record)
        if not plan.cost.fits_within(maximum):
            raise InvalidRequest(
                f"this query would cost epsilon={plan.cost.epsilon:g}, delta={plan.cost.delta:g}, "
                f"above the per-query maximum epsilon={maximum.epsilon:g}, delta={maximum.delta:g} "
                "for this dataset; lower epsilon or delta, or query fewer aggregates",
                code="query_too_expensive",
            )
        return record, plan

    def _available_version(self, record: DatasetRecord) -> str:
        """Check that the rows can be reached before spending: a dataset that is missing,
        forbidden or offline costs the analyst nothing (no row has been read)."""
        try:
            return source_from_description(record.source).version()
        except DatasetUnavailable as err:
            log.warning("dataset %s is unavailable: %s", record.name, err.message)
            raise DatasetUnavailable(
                f"dataset {record.name!r} cannot be read right now; nothing was spent. "
                "The administrator can find the cause in the server log."
            ) from err

    def _execute(
        self, record: DatasetRecord, plan: SqlPlan, postprocess: bool, version: str
    ) -> dict[str, Any]:
        metadata = _metadata(record)
        source = source_from_description(record.source)

        def prepare(raw: pd.DataFrame) -> pd.DataFrame:
            return conform_to_metadata(raw, metadata)

        cached = self.cache.get(record.name, source, prepare, version=version)
        outcome = self.engine.execute(
            plan, metadata, cached.version, lambda: cached.frame, postprocess=postprocess
        )
        return rows_payload(outcome.columns, outcome.rows)

    def _finish(self, query_id: str, status: str, **details: Any) -> None:
        try:
            self.store.finish(query_id, status, **details)
        except LomasError:
            # The release already happened; failing to file it must not hide it. The entry
            # stays 'running' and becomes 'interrupted' at the next start.
            log.exception("could not record the outcome of query %s", query_id)

    def _granted(self, user: str, dataset: str, *, for_query: bool = False) -> DatasetRecord:
        # Unknown and not-granted datasets answer alike: a user cannot probe for names.
        record = self.store.get_dataset(dataset)
        if record is None or self.store.get_grant(user, dataset) is None:
            raise NotFound(f"no dataset {dataset!r} is available to you", code="dataset_not_found")
        if for_query:
            account = self.store.get_user(user)
            if account is None or not account.may_query:
                raise Forbidden("your account is not allowed to run queries; ask the administrator")
        return record

    def _budget(self, user: str, dataset: str) -> Budget:
        grant = self.store.get_grant(user, dataset)
        initial = grant.initial if grant is not None else PrivacyAmount.zero()
        return Budget(initial=initial, spent=self.store.spent(user, dataset))

    def _max_query(self, record: DatasetRecord) -> PrivacyAmount:
        if record.max_query is not None:
            return record.max_query
        return PrivacyAmount.budget(self.limits.max_query_epsilon, self.limits.max_query_delta)


def _fingerprint(plan: SqlPlan, *, postprocess: bool) -> str:
    """Identical requests share a fingerprint: same engine, normalized query, parameters.

    The normalized query comes from the parsed query, so whitespace, keyword case and the
    table's spelling do not matter; a different epsilon, delta or postprocess does.
    """
    canonical = json.dumps(
        [ENGINE_NAME, plan.sql, repr(float(plan.epsilon)), repr(float(plan.delta)), postprocess]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _metadata(record: DatasetRecord) -> DatasetMetadata:
    return DatasetMetadata.from_dict(record.metadata)


def _archive_view(entry: ArchiveEntry) -> dict[str, Any]:
    return {
        "query_id": entry.query_id,
        "dataset": entry.dataset,
        "engine": entry.engine,
        **entry.request,
        "cost": entry.cost.as_dict(),
        "status": entry.status,
        "created_at": entry.created_at,
        "finished_at": entry.finished_at,
        "result": entry.result,
    }
