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
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from lomas_server.accounting import ZCDP, AccountingRule, PrivacyAmount, PrivacyLoss
from lomas_server.datasets import (
    DatasetCache,
    conformed_table,
    make_dummy,
    source_from_description,
)
from lomas_server.datasets.parquet_scan import ScanPlans, scannable
from lomas_server.datasets.sources import DatasetSource
from lomas_server.engines.opendp_engine import ENGINE_NAME as OPENDP_ENGINE
from lomas_server.engines.opendp_engine import Noise, OpenDPEngine, OpenDPPlan
from lomas_server.engines.opendp_query import parse_opendp_query
from lomas_server.engines.smartnoise_sql import (
    CONFIDENCE,
    ENGINE_NAME,
    SmartnoiseSqlEngine,
    SqlPlan,
)
from lomas_server.errors import (
    BudgetExceeded,
    DatasetUnavailable,
    EngineBusy,
    Forbidden,
    InvalidRequest,
    NotFound,
    QueryFailed,
    StoreUnavailable,
    TimeLimitExceeded,
)
from lomas_server.metadata import DatasetMetadata
from lomas_server.service.accounts import Account, rule_of
from lomas_server.store.base import (
    DONE,
    FAILED,
    INTERRUPTED,
    STOPPED,
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
        opendp: OpenDPEngine | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.opendp = opendp or OpenDPEngine()
        self.cache = cache
        self.scans = ScanPlans()
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
                    "engines": [ENGINE_NAME, OPENDP_ENGINE],
                    "budget": self._account(user, record).view(),
                    "max_query": self._max_query(record).as_dict(),
                }
            )
        return out

    def metadata(self, user: str, dataset: str) -> dict[str, Any]:
        record = self._granted(user, dataset)
        return _metadata(record).public_view()

    def budget(self, user: str, dataset: str) -> dict[str, Any]:
        """The budget, and how many more queries like the analyst's last paid one fit."""
        record = self._granted(user, dataset)
        account = self._account(user, record)
        entry = self.store.last_paid(user, dataset)
        last = None
        if entry is not None:
            last = {
                "query_id": entry.query_id,
                "cost": account.cost_view(entry.cost),
                "queries_left": account.times_fit(entry.cost, self._dataset_spent(record)),
            }
        return {"dataset": dataset, **account.view(), "last_query": last}

    def queries(self, user: str, dataset: str | None = None) -> list[dict[str, Any]]:
        if dataset is not None:
            self._granted(user, dataset)
        entries = self.store.archive(user, dataset=dataset)
        rules: dict[str, AccountingRule] = {}
        for name in {entry.dataset for entry in entries}:
            record = self.store.get_dataset(name)
            rules[name] = rule_of(record) if record is not None else AccountingRule()
        return [_archive_view(entry, rules[entry.dataset]) for entry in entries]

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
        record, plan, cost = self._plan_sql(user, dataset, query, epsilon, delta)
        fingerprint = _fingerprint(ENGINE_NAME, plan.sql, plan.epsilon, plan.delta, True)
        return {
            **self._estimate(user, record, cost, fingerprint),
            "normalized_query": plan.sql,
            "accuracy": _sql_accuracy(plan),
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
        record, plan, cost = self._plan_sql(user, dataset, query, epsilon, delta)
        request = {
            "query": query,
            "normalized_query": plan.sql,
            "epsilon": epsilon,
            "delta": delta,
            "postprocess": postprocess,
        }

        def run(data: Reachable) -> dict[str, Any]:
            # In place (PostgreSQL, Spark), the SQL runs where the data lives.
            rows: Any = data.source if data.frame is None else (lambda: data.frame)
            outcome = self.engine.execute(
                plan, _metadata(record), data.version, rows, postprocess=postprocess, owner=user
            )
            return rows_payload(outcome.columns, outcome.rows)

        # The plan's epsilon and delta: a delta given to a query that needs none changes nothing
        # about the release, and /cost words its replays the same way.
        fingerprint = _fingerprint(ENGINE_NAME, plan.sql, plan.epsilon, plan.delta, postprocess)
        reply = self._release(
            user, record, ENGINE_NAME, request, cost, fingerprint, fresh, run, in_place=True
        )
        return {**reply, "accuracy": _sql_accuracy(plan)}

    # -- OpenDP ------------------------------------------------------------------------------
    def opendp_cost(self, user: str, dataset: str, query: Any, noise: Noise) -> dict[str, Any]:
        record, plan, cost = self._plan_opendp(user, dataset, query, noise)
        return {
            **self._estimate(user, record, cost, _opendp_fingerprint(plan)),
            "query_text": plan.query.describe(),
            "noise": _noise_view(plan),
            "accuracy": _opendp_accuracy(plan),
        }

    def opendp_query(
        self, user: str, dataset: str, query: Any, noise: Noise, fresh: bool = False
    ) -> dict[str, Any]:
        record, plan, cost = self._plan_opendp(user, dataset, query, noise)
        request = {
            "query": plan.query.describe(),
            "opendp": plan.query.as_dict(),
            **_noise_view(plan),
        }

        def run(data: Reachable) -> dict[str, Any]:
            outcome = self.opendp.execute(plan, _metadata(record), lambda: data.frame, owner=user)
            return rows_payload(outcome.columns, outcome.rows)

        reply = self._release(
            user, record, OPENDP_ENGINE, request, cost, _opendp_fingerprint(plan), fresh, run
        )
        return {**reply, "accuracy": _opendp_accuracy(plan)}

    # -- internals ---------------------------------------------------------------------------
    def _estimate(
        self, user: str, record: DatasetRecord, cost: PrivacyAmount, fingerprint: str
    ) -> dict[str, Any]:
        account = self._account(user, record)
        earlier = self.store.find_release(user, record.name, fingerprint)
        return {
            "cost": account.cost_view(cost),
            "budget": account.view(),
            "fits": account.fits(cost),
            "queries_left": account.times_fit(cost, self._dataset_spent(record)),
            "replay_of": earlier.query_id if earlier else None,
        }

    def _dataset_spent(self, record: DatasetRecord) -> PrivacyAmount | None:
        """The dataset-wide spend, when the dataset has a cap that it counts against."""
        return self.store.dataset_spent(record.name) if record.cap is not None else None

    def _release(
        self,
        user: str,
        record: DatasetRecord,
        engine: str,
        request: dict[str, Any],
        cost: PrivacyAmount,
        fingerprint: str,
        fresh: bool,
        run: Callable[[Reachable], dict[str, Any]],
        *,
        in_place: bool = False,
    ) -> dict[str, Any]:
        """Replay, or check the data is reachable, reserve, run, archive: the privacy contract.

        ``in_place``: the engine can run where the data lives (SQL on PostgreSQL or Spark)
        instead of on rows loaded into the server.
        """
        if not fresh:
            earlier = self.store.find_release(user, record.name, fingerprint)
            if earlier is not None:
                # Releasing the same noisy answer again is free post-processing, and it denies
                # an analyst the average of many fresh answers to one question.
                return {
                    "query_id": earlier.query_id,
                    "replay_of": earlier.query_id,
                    "result": earlier.result,
                    "cost": self._account(user, record).cost_view(PrivacyAmount.zero()),
                    "budget": self._account(user, record).view(),
                }
        data = self._reachable(record, in_place=in_place)
        # A refusal now costs nothing; after the reservation it would.
        self.engine.check_ready(user)
        query_id = uuid.uuid4().hex
        draft = Reservation(
            query_id, user, record.name, engine, request, cost, PrivacyAmount.zero()
        )
        before = self._reserve(record, draft, fingerprint)
        # From here on the budget is spent, whatever happens.
        try:
            result = run(data)
        except TimeLimitExceeded as err:
            log.warning("query %s on %s by %s stopped: %s", query_id, record.name, user, err)
            self._finish(query_id, STOPPED, error=err.message)
            raise err.with_message(
                f"{err.message}; its budget stays spent (query id {query_id}). Ask for less "
                "(fewer groups, a smaller dataset) or ask the administrator about the time limit."
            ) from None
        except EngineBusy as err:
            # The server is stopping (or cannot take the job after all): the query never ran.
            self._finish(query_id, INTERRUPTED, error=err.message)
            raise err.with_message(
                f"the query could not run: {err.message}; its budget stays spent "
                f"(query id {query_id})"
            ) from None
        except Exception as err:
            log.exception(
                "query %s on %s by %s failed after reservation", query_id, record.name, user
            )
            self._finish(query_id, FAILED, error=f"{type(err).__name__}: {err}")
            raise QueryFailed(
                "the query failed while running; its budget stays spent. Give the administrator "
                f"the query id {query_id} to find the cause in the server log."
            ) from err
        self._finish(query_id, DONE, result=result)
        try:
            account = self._account(user, record)
        except StoreUnavailable:
            # A paid release is never hidden by the store going away now: the budget shown is
            # the one read at the reservation, with this query's cost.
            account = replace(before, spent=before.spent + cost)
        return {
            "query_id": query_id,
            "replay_of": None,
            "result": result,
            "cost": account.cost_view(cost),
            "budget": account.view(),
        }

    def _reserve(self, record: DatasetRecord, draft: Reservation, fingerprint: str) -> Account:
        """Reserve with the caps of the dataset's rule; word a refusal in (epsilon, delta).
        Returns the account as read before the reservation."""
        account = self._account(draft.user, record)
        reservation = replace(
            draft, user_cap=account.cap, dataset_cap=account.dataset_cap, fingerprint=fingerprint
        )
        try:
            self.store.reserve(reservation)
        except BudgetExceeded as err:
            if err.scope == "user":
                what, left = "your remaining budget", self._account(draft.user, record).remaining()
            else:
                what = "the dataset-wide budget left"
                left = account.dataset_remaining(self.store.dataset_spent(record.name))
            cost = account.cost_view(draft.cost)
            raise err.with_message(
                f"not enough budget: this query costs {_amount_text(cost)} but {what} is "
                f"{_amount_text(left)}; nothing was spent"
            ) from None
        return account

    def _plan_sql(
        self, user: str, dataset: str, query: str, epsilon: float, delta: float
    ) -> tuple[DatasetRecord, SqlPlan, PrivacyAmount]:
        """Check and price a query; the cost is in the dataset's ledger currency."""
        record = self._granted(user, dataset, for_query=True)
        plan = self.engine.plan(dataset, _metadata(record), query, epsilon, delta, scope=user)
        return record, plan, self._charge(record, plan.loss)

    def _plan_opendp(
        self, user: str, dataset: str, document: Any, noise: Noise
    ) -> tuple[DatasetRecord, OpenDPPlan, PrivacyAmount]:
        record = self._granted(user, dataset, for_query=True)
        metadata = _metadata(record)
        query = parse_opendp_query(document, metadata)
        plan = self.opendp.plan(dataset, metadata, query, noise, scope=user)
        return record, plan, self._charge(record, plan.loss)

    def _charge(self, record: DatasetRecord, loss: PrivacyLoss) -> PrivacyAmount:
        rule = rule_of(record)
        cost = rule.charge(loss)
        self._check_maximum(record, rule.as_approx_dp(cost))
        return cost

    def _check_maximum(self, record: DatasetRecord, cost: PrivacyAmount) -> None:
        maximum = self._max_query(record)
        if not cost.fits_within(maximum):
            raise InvalidRequest(
                f"this query would cost epsilon={cost.epsilon:g}, delta={cost.delta:g}, "
                f"above the per-query maximum epsilon={maximum.epsilon:g}, delta={maximum.delta:g} "
                "for this dataset; lower epsilon or delta, or query fewer aggregates",
                code="query_too_expensive",
            )

    def _reachable(self, record: DatasetRecord, *, in_place: bool) -> Reachable:
        """The rows a query will read, ready before anything is spent.

        A dataset that is missing, forbidden or offline, or whose data does not fit its
        metadata as a whole (a declared column missing, more rows than its ``rows``), costs
        the analyst nothing. Single rows never make it fail: they are shaped to the metadata
        on the way in (datasets/conform.py). Loading happens here, before the reservation,
        so that after it only the engine's own run is left.
        """
        try:
            source = source_from_description(record.source)
            metadata = _metadata(record)
            if source.in_place:
                columns = {name: spec.type for name, spec in metadata.columns.items()}
                source.check_columns(columns)  # types that would need a cast mean no query
                if in_place:
                    source.check_engine()
            version = source.version()
            if in_place and source.in_place:
                return Reachable(version, source, None)
            if scannable(source):
                # The file's footer says whether it can be scanned and whether it fits the
                # metadata: a file that cannot serve the query costs nothing.
                scan = self.scans.get(record.name, _scan_key(record, version), source, metadata)
                if scan is not None and self.cache.should_scan(scan.nbytes):
                    # Too big to keep loaded: each query streams the file.
                    return Reachable(version, source, scan)
            cached = self.cache.get(
                record.name,
                source,
                # One columnar copy, kept between queries, read in place by DuckDB and Polars.
                lambda raw: conformed_table(raw, metadata),
                version=version,
                columns=list(metadata.columns),
            )
            return Reachable(cached.version, source, cached.frame)
        except DatasetUnavailable as err:
            log.warning("dataset %s is unavailable: %s", record.name, err.message)
            raise DatasetUnavailable(
                f"dataset {record.name!r} cannot be read right now; nothing was spent. "
                "The administrator can find the cause in the server log."
            ) from err

    def _finish(self, query_id: str, status: str, **details: Any) -> None:
        try:
            self.store.finish(query_id, status, **details)
        except Exception:
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

    def _account(self, user: str, record: DatasetRecord) -> Account:
        grant = self.store.get_grant(user, record.name)
        stated = grant.initial if grant is not None else PrivacyAmount.zero()
        return Account(record, stated, self.store.spent(user, record.name))

    def _max_query(self, record: DatasetRecord) -> PrivacyAmount:
        if record.max_query is not None:
            return record.max_query
        return PrivacyAmount.budget(self.limits.max_query_epsilon, self.limits.max_query_delta)


@dataclass(frozen=True)
class Reachable:
    """Where a query's rows are: in place at the source (``frame`` None), a ParquetScan, or
    the conformed Arrow table from the cache."""

    version: str
    source: DatasetSource
    frame: Any


def _amount_text(amount: dict[str, float]) -> str:
    """An amount in (epsilon, delta): the numbers ``/budget`` shows as ``remaining``."""
    return f"epsilon={amount['epsilon']:g}, delta={amount['delta']:g}"


def _fingerprint(engine: str, query: str, *parameters: Any) -> str:
    """Identical requests share a fingerprint: same engine, normalized query, parameters.

    The normalized query comes from the parsed query (SQL text rebuilt from its syntax tree,
    or the canonical JSON of an OpenDP query), so whitespace, keyword case and spelling do not
    matter; a different epsilon, delta, rho or option does.
    """
    canonical = json.dumps(
        [engine, query, *[repr(float(p)) if isinstance(p, float) else p for p in parameters]]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _opendp_fingerprint(plan: OpenDPPlan) -> str:
    query = json.dumps(plan.query.as_dict(), sort_keys=True)
    return _fingerprint(
        OPENDP_ENGINE, query, plan.noise.mechanism, float(plan.budget), plan.delta or 0.0
    )


def _sql_accuracy(plan: SqlPlan) -> dict[str, Any]:
    """What the noise means for each released column (data-independent, from the plan)."""
    return {
        "confidence": CONFIDENCE,
        "columns": [column.as_dict() for column in plan.columns],
        "noisy_values": [value.as_dict() for value in plan.noisy_values],
    }


def _opendp_accuracy(plan: OpenDPPlan) -> dict[str, Any]:
    return {
        "confidence": plan.noise.confidence,
        "columns": plan.columns,
        "noisy_values": plan.noisy_values,
    }


def _noise_view(plan: OpenDPPlan) -> dict[str, Any]:
    budget = "epsilon" if plan.noise.mechanism == "laplace" else "rho"
    return {"mechanism": plan.noise.mechanism, budget: plan.budget, "delta": plan.delta or 0.0}


def _scan_key(record: DatasetRecord, version: str) -> str:
    """What a scan plan depends on: the file version, where it is and the metadata."""
    described = json.dumps([record.source, record.metadata], sort_keys=True, default=str)
    return f"{version}:{hashlib.sha256(described.encode()).hexdigest()}"


def _metadata(record: DatasetRecord) -> DatasetMetadata:
    return DatasetMetadata.from_dict(record.metadata)


def _archive_view(entry: ArchiveEntry, rule: AccountingRule) -> dict[str, Any]:
    """An archived query, its cost worded as every reply words it: (epsilon, delta), with
    rho beside them on zCDP datasets (whose ledger counts rho)."""
    cost: dict[str, float] = rule.as_approx_dp(entry.cost).as_dict()
    if rule.mode == ZCDP:
        cost["rho"] = entry.cost.epsilon
    return {
        "query_id": entry.query_id,
        "dataset": entry.dataset,
        "engine": entry.engine,
        **entry.request,
        "cost": cost,
        "status": entry.status,
        "created_at": entry.created_at,
        "finished_at": entry.finished_at,
        "result": entry.result,
    }
