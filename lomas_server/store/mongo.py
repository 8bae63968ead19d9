"""The admin store on MongoDB (or any MongoDB-wire server such as FerretDB), via pymongo.

Selected by a ``mongodb://host:port/database`` URL (database ``lomas`` when the path is empty).
Collections: ``store_info`` (schema version), ``users``, ``datasets``, ``grants``, ``ledger``,
``archive``, ``budget_requests`` and ``budget_decisions``. Reservations and decisions are safe
without transactions because of how the ledger and the requests are written (mongo_ledger.py,
mongo_budget_requests.py); the client and set-up are in mongo_connection.py.
"""

from __future__ import annotations

from typing import Any

from lomas_server.accounting import PrivacyAmount
from lomas_server.errors import BudgetExceeded, StoreUnavailable
from lomas_server.store import record_fields, rules
from lomas_server.store.base import (
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    AdminStore,
    ArchiveEntry,
    BudgetRequestRecord,
    DatasetRecord,
    GrantRecord,
    LedgerEntry,
    Reservation,
    UserRecord,
    utc_now,
)
from lomas_server.store.mongo_budget_requests import MongoBudgetRequests
from lomas_server.store.mongo_connection import MongoConnection, unavailable_on_errors
from lomas_server.store.mongo_ledger import SequenceLedger


class MongoStore(AdminStore):
    def __init__(self, url: str, *, timeout_ms: int = 2000) -> None:
        self.url = url
        self.connection = MongoConnection(url, timeout_ms=timeout_ms)
        self.db = self.connection.db
        self._ledger = SequenceLedger(self.db)
        self._requests = MongoBudgetRequests(self.db)

    def schema_version(self) -> int:
        return self.connection.schema_version()

    def close(self) -> None:
        self.connection.close()

    @unavailable_on_errors
    def ping(self) -> None:
        self.connection.ping()

    # -- users ---------------------------------------------------------------------------------
    @unavailable_on_errors
    def add_user(
        self, name: str, token_hash: str, *, is_admin: bool = False, created_at: str | None = None
    ) -> UserRecord:
        from pymongo.errors import DuplicateKeyError

        record = record_fields.new_user(name, token_hash, is_admin=is_admin, created_at=created_at)
        try:
            self.db.users.insert_one(_document(record_fields.user_fields(record), "name"))
        except DuplicateKeyError as err:
            raise rules.user_exists(name) from err
        return record

    @unavailable_on_errors
    def get_user(self, name: str) -> UserRecord | None:
        return self._user({"_id": name})

    @unavailable_on_errors
    def user_by_token_hash(self, token_hash: str) -> UserRecord | None:
        return self._user({"token_hash": token_hash})

    def _user(self, query: dict[str, Any]) -> UserRecord | None:
        doc = self.db.users.find_one(query)
        return None if doc is None else record_fields.user_record(_fields(doc, "name"))

    @unavailable_on_errors
    def list_users(self) -> list[UserRecord]:
        return [
            record_fields.user_record(_fields(doc, "name"))
            for doc in self.db.users.find().sort("_id", 1)
        ]

    @unavailable_on_errors
    def set_token_hash(self, name: str, token_hash: str) -> None:
        if not self._set(self.db.users, name, {"token_hash": token_hash}):
            raise rules.no_user(name)

    @unavailable_on_errors
    def set_may_query(self, name: str, may_query: bool) -> None:
        if not self._set(self.db.users, name, {"may_query": may_query}):
            raise rules.no_user(name)

    @staticmethod
    def _set(collection: Any, key: str, changes: dict[str, Any]) -> bool:
        """Change the document ``key``; whether there was one."""
        return bool(collection.update_one({"_id": key}, {"$set": changes}).matched_count)

    # -- datasets ------------------------------------------------------------------------------
    @unavailable_on_errors
    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        from pymongo.errors import DuplicateKeyError

        try:
            self.db.datasets.insert_one(_document(record_fields.dataset_fields(record), "name"))
        except DuplicateKeyError as err:
            raise rules.dataset_exists(record.name) from err
        return self.get_dataset(record.name)  # type: ignore[return-value]

    @unavailable_on_errors
    def get_dataset(self, name: str) -> DatasetRecord | None:
        doc = self.db.datasets.find_one({"_id": name})
        return None if doc is None else record_fields.dataset_record(_fields(doc, "name"))

    @unavailable_on_errors
    def list_datasets(self) -> list[DatasetRecord]:
        docs = self.db.datasets.find().sort("_id", 1)
        return [record_fields.dataset_record(_fields(doc, "name")) for doc in docs]

    @unavailable_on_errors
    def set_dataset_limits(
        self, name: str, *, max_query: PrivacyAmount | None, cap: PrivacyAmount | None
    ) -> None:
        changes = record_fields.limits_fields(max_query, cap)
        if not self._set(self.db.datasets, name, changes):
            raise rules.no_dataset(name)

    # -- grants --------------------------------------------------------------------------------
    @unavailable_on_errors
    def set_grant(self, user: str, dataset: str, initial: PrivacyAmount) -> GrantRecord:
        if self.db.users.find_one({"_id": user}, {"_id": 1}) is None:
            raise rules.no_user(user)
        if self.db.datasets.find_one({"_id": dataset}, {"_id": 1}) is None:
            raise rules.no_dataset(dataset)
        self.db.grants.update_one(
            {"user": user, "dataset": dataset},
            {"$set": record_fields.grant_fields(initial)},
            upsert=True,
        )
        return GrantRecord(user, dataset, initial)

    @unavailable_on_errors
    def get_grant(self, user: str, dataset: str) -> GrantRecord | None:
        doc = self.db.grants.find_one({"user": user, "dataset": dataset})
        return None if doc is None else record_fields.grant_record(doc)

    @unavailable_on_errors
    def grants_for_user(self, user: str) -> list[GrantRecord]:
        return [
            record_fields.grant_record(doc)
            for doc in self.db.grants.find({"user": user}).sort("dataset", 1)
        ]

    # -- ledger --------------------------------------------------------------------------------
    @unavailable_on_errors
    def reserve(self, reservation: Reservation) -> None:
        r = reservation

        def check(user_total: PrivacyAmount, dataset_total: PrivacyAmount) -> None:
            rules.check_fits(r, user_total, lambda: dataset_total)

        # Two writes, no transaction: the archive entry goes first, so that a connection cut
        # between them can leave an entry without a spend (settled by mark_interrupted) but
        # never a spend that no archive entry explains.
        self.db.archive.insert_one(_archive_document(record_fields.running_entry(r, utc_now())))
        from pymongo.errors import PyMongoError

        try:
            self._ledger.append(
                r.user, r.dataset, r.cost, kind="query", query_id=r.query_id, check=check
            )
        except BudgetExceeded:
            self.db.archive.delete_one({"_id": r.query_id})
            raise
        except PyMongoError as err:
            # The spend may or may not have been written: say what is certain.
            raise StoreUnavailable(
                "the admin database failed while reserving this query's budget; the query did "
                f"not run. Its archive entry ({r.query_id}) says whether anything was spent "
                "once the server restarts"
            ) from err

    @unavailable_on_errors
    def record_spend(
        self,
        user: str,
        dataset: str,
        amount: PrivacyAmount,
        *,
        kind: str,
        query_id: str | None = None,
        created_at: str | None = None,
    ) -> None:
        self._ledger.append(
            user, dataset, amount, kind=kind, query_id=query_id, check=None, created_at=created_at
        )

    @unavailable_on_errors
    def spent(self, user: str, dataset: str) -> PrivacyAmount:
        return self._ledger.user_spent(user, dataset)

    @unavailable_on_errors
    def dataset_spent(self, dataset: str) -> PrivacyAmount:
        return self._ledger.dataset_spent(dataset)

    @unavailable_on_errors
    def ledger(self, *, user: str | None = None, dataset: str | None = None) -> list[LedgerEntry]:
        return self._ledger.listed(user=user, dataset=dataset)

    # -- archive -------------------------------------------------------------------------------
    @unavailable_on_errors
    def finish(
        self,
        query_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        self.db.archive.update_one(
            {"_id": query_id}, {"$set": record_fields.finished_fields(status, result, error)}
        )

    @unavailable_on_errors
    def archive(self, user: str, *, dataset: str | None = None) -> list[ArchiveEntry]:
        query = {"user": user, **({"dataset": dataset} if dataset is not None else {})}
        docs = self.db.archive.find(query).sort([("created_at", 1), ("_id", 1)])
        return [_archive_entry(doc) for doc in docs]

    @unavailable_on_errors
    def last_paid(self, user: str, dataset: str) -> ArchiveEntry | None:
        paid = {"$or": [{"eps_units": {"$gt": 0}}, {"delta_units": {"$gt": 0}}]}
        docs = list(
            self.db.archive.find({"user": user, "dataset": dataset, **paid})
            .sort([("created_at", -1)])
            .limit(1)
        )
        return _archive_entry(docs[0]) if docs else None

    @unavailable_on_errors
    def archive_entry(self, query_id: str) -> ArchiveEntry | None:
        doc = self.db.archive.find_one({"_id": query_id})
        return None if doc is None else _archive_entry(doc)

    @unavailable_on_errors
    def find_release(self, user: str, dataset: str, fingerprint: str) -> ArchiveEntry | None:
        doc = self.db.archive.find_one(
            {"user": user, "dataset": dataset, "fingerprint": fingerprint, "status": DONE},
            sort=[("created_at", 1), ("_id", 1)],
        )
        return None if doc is None else _archive_entry(doc)

    @unavailable_on_errors
    def restore_archive_entry(self, entry: ArchiveEntry) -> None:
        self.db.archive.insert_one(_archive_document(entry))

    @unavailable_on_errors
    def mark_interrupted(self) -> int:
        interrupted = 0
        for entry in list(self.db.archive.find({"status": RUNNING}, {"_id": 1})):
            if self._ledger.has_spend_of(entry["_id"]):
                update = record_fields.interrupted_fields()
                interrupted += 1
            else:
                # Its reservation never reached the ledger (the connection was cut in
                # between): the query did not run and nothing was spent.
                update = {
                    "status": FAILED,
                    "eps_units": 0,
                    "delta_units": 0,
                    "error": "the admin database failed before the budget was reserved; "
                    "nothing was spent",
                    "finished_at": utc_now(),
                }
            self.db.archive.update_one({"_id": entry["_id"], "status": RUNNING}, {"$set": update})
        return interrupted

    # -- budget requests -----------------------------------------------------------------------
    @unavailable_on_errors
    def add_budget_request(self, record: BudgetRequestRecord) -> BudgetRequestRecord:
        if record.state != PENDING:
            raise ValueError("a new budget request is pending")
        if self.db.users.find_one({"_id": record.user}, {"_id": 1}) is None:
            raise rules.no_user(record.user)
        if self.db.datasets.find_one({"_id": record.dataset}, {"_id": 1}) is None:
            raise rules.no_dataset(record.dataset)
        self._requests.add(record)
        return record

    @unavailable_on_errors
    def get_budget_request(self, request_id: str) -> BudgetRequestRecord | None:
        return self._requests.get(request_id)

    @unavailable_on_errors
    def budget_requests(
        self, *, user: str | None = None, dataset: str | None = None, state: str | None = None
    ) -> list[BudgetRequestRecord]:
        return self._requests.listed(user=user, dataset=dataset, state=state)

    @unavailable_on_errors
    def decide_budget_request(
        self,
        request_id: str,
        *,
        state: str,
        decided_by: str,
        note: str | None,
        granted: PrivacyAmount | None,
        decided_at: str | None = None,
    ) -> BudgetRequestRecord:
        return self._requests.decide(
            request_id,
            state=state,
            decided_by=decided_by,
            note=note,
            granted=granted,
            decided_at=decided_at,
        )

    @unavailable_on_errors
    def restore_budget_request(self, record: BudgetRequestRecord) -> None:
        self._requests.add(record)


# -- documents -----------------------------------------------------------------------------------
# A document is a record's fields keyed by ``_id`` (a user's or dataset's name, a query id).
def _document(fields: dict[str, Any], key: str) -> dict[str, Any]:
    return {"_id": fields[key], **{name: v for name, v in fields.items() if name != key}}


def _fields(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {key: doc["_id"], **{name: v for name, v in doc.items() if name != "_id"}}


def _archive_document(entry: ArchiveEntry) -> dict[str, Any]:
    return _document(record_fields.archive_fields(entry), "query_id")


def _archive_entry(doc: dict[str, Any]) -> ArchiveEntry:
    return record_fields.archive_entry(_fields(doc, "query_id"))
