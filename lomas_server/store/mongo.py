"""The admin store on MongoDB (or any MongoDB-wire server such as FerretDB), via pymongo.

Selected by a ``mongodb://host:port/database`` URL (database ``lomas`` when the path is empty).
Collections: ``store_info`` (schema version), ``users``, ``datasets``, ``grants``, ``ledger``
and ``archive``.

Reservations use only what every MongoDB-wire server enforces atomically: a unique key on
insert. The ledger of a dataset is one sequence: entry ``seq`` N+1 records a spend together
with the running totals of its user and of the whole dataset after it. A reservation reads the
last entry, checks the grant and the dataset cap against those totals, and inserts entry N+1;
if another reservation took N+1 first, the insert fails on the unique ``_id`` and it starts
over. So no two reservations are ever checked against the same totals, across threads,
processes and servers, without transactions and without ``findAndModify`` (FerretDB runs
neither atomically: concurrent conditional ``$inc`` updates were seen to lose writes). Nothing
is ever deleted or rewritten, which is also what rules out a stale reader reusing a place.
"""

from __future__ import annotations

import functools
import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

from lomas_server.accounting import PrivacyAmount
from lomas_server.errors import BudgetExceeded, Conflict, NotFound, StoreUnavailable
from lomas_server.store.base import (
    DONE,
    FAILED,
    INTERRUPTED,
    RUNNING,
    AdminStore,
    ArchiveEntry,
    DatasetRecord,
    GrantRecord,
    LedgerEntry,
    Reservation,
    UserRecord,
    utc_now,
)

SCHEMA_VERSION = 1
MAX_ATTEMPTS = 2000  # a reservation that loses the race for a place starts over at most this often
F = TypeVar("F", bound=Callable[..., Any])


def _unavailable_on_connection_errors(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: MongoStore, *args: Any, **kwargs: Any) -> Any:
        from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

        try:
            self._ensure_ready()
            return method(self, *args, **kwargs)
        except ConnectionFailure as err:
            raise StoreUnavailable("the admin database cannot be reached; try again later") from err
        except OperationFailure as err:
            raise StoreUnavailable(f"the admin database refused an operation ({err.code})") from err
        except PyMongoError as err:
            raise StoreUnavailable("the admin database failed; nothing was recorded") from err

    return wrapper  # type: ignore[return-value]


class MongoStore(AdminStore):
    def __init__(self, url: str, *, timeout_ms: int = 2000) -> None:
        from pymongo import MongoClient

        self.url = url
        name = urlparse(url).path.lstrip("/").split("?")[0] or "lomas"
        # An unreachable database fails a call within timeout_ms (a 503), unless the URL
        # says otherwise (e.g. ?serverSelectionTimeoutMS=30000 to ride out a failover).
        timeouts: dict[str, Any] = {
            option: timeout_ms
            for option in ("serverSelectionTimeoutMS", "connectTimeoutMS")
            if option.lower() not in url.lower()
        }
        self.client: Any = MongoClient(url, tz_aware=False, **timeouts)
        self.db = self.client[name]
        # Indexes and the schema version are set up by the first call that reaches the
        # database, so that a server can start (and report itself unhealthy) during an outage.
        self._ready = False
        self._ready_lock = threading.Lock()

    # -- set-up ------------------------------------------------------------------------------
    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            from pymongo import ASCENDING, DESCENDING

            info = self.db.store_info.find_one({"_id": "schema"})
            if info is None:
                self.db.store_info.update_one(
                    {"_id": "schema"},
                    {"$setOnInsert": {"version": SCHEMA_VERSION, "created_at": utc_now()}},
                    upsert=True,
                )
            elif int(info["version"]) > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"the admin database has schema version {info['version']}, newer than this "
                    f"server understands ({SCHEMA_VERSION}); upgrade lomas-jupyter"
                )
            self.db.users.create_index([("token_hash", ASCENDING)], unique=True, sparse=True)
            self.db.grants.create_index([("user", ASCENDING), ("dataset", ASCENDING)], unique=True)
            self.db.ledger.create_index([("dataset", ASCENDING), ("seq", DESCENDING)], unique=True)
            self.db.ledger.create_index(
                [("dataset", ASCENDING), ("user", ASCENDING), ("seq", DESCENDING)]
            )
            self.db.archive.create_index(
                [("user", ASCENDING), ("dataset", ASCENDING), ("created_at", ASCENDING)]
            )
            self.db.archive.create_index(
                [
                    ("user", ASCENDING),
                    ("dataset", ASCENDING),
                    ("fingerprint", ASCENDING),
                    ("status", ASCENDING),
                ]
            )
            self.db.archive.create_index([("status", ASCENDING)])
            self.db.ledger.create_index([("query_id", ASCENDING)], sparse=True)
            self._ready = True

    def schema_version(self) -> int:
        self._ensure_ready()
        info = self.db.store_info.find_one({"_id": "schema"})
        if info is None:
            raise StoreUnavailable("the admin database has no schema version")
        return int(info["version"])

    def close(self) -> None:
        self.client.close()

    @_unavailable_on_connection_errors
    def ping(self) -> None:
        import pymongo

        with pymongo.timeout(1.0):  # a health check answers quickly, up or down
            self.client.admin.command("ping")

    # -- users ---------------------------------------------------------------------------------
    @_unavailable_on_connection_errors
    def add_user(
        self, name: str, token_hash: str, *, is_admin: bool = False, created_at: str | None = None
    ) -> UserRecord:
        from pymongo.errors import DuplicateKeyError

        record = UserRecord(
            name=name,
            is_admin=is_admin,
            may_query=True,
            created_at=created_at or utc_now(),
            token_hash=token_hash,
        )
        try:
            self.db.users.insert_one(
                {
                    "_id": name,
                    "token_hash": token_hash,
                    "is_admin": is_admin,
                    "may_query": True,
                    "created_at": record.created_at,
                }
            )
        except DuplicateKeyError as err:
            raise Conflict(f"user {name!r} already exists") from err
        return record

    @_unavailable_on_connection_errors
    def get_user(self, name: str) -> UserRecord | None:
        return _user(self.db.users.find_one({"_id": name}))

    @_unavailable_on_connection_errors
    def user_by_token_hash(self, token_hash: str) -> UserRecord | None:
        return _user(self.db.users.find_one({"token_hash": token_hash}))

    @_unavailable_on_connection_errors
    def list_users(self) -> list[UserRecord]:
        return [_user(doc) for doc in self.db.users.find().sort("_id", 1)]  # type: ignore[misc]

    @_unavailable_on_connection_errors
    def set_token_hash(self, name: str, token_hash: str) -> None:
        if (
            self.db.users.update_one(
                {"_id": name}, {"$set": {"token_hash": token_hash}}
            ).matched_count
            == 0
        ):
            raise NotFound(f"no user {name!r}")

    @_unavailable_on_connection_errors
    def set_may_query(self, name: str, may_query: bool) -> None:
        if (
            self.db.users.update_one(
                {"_id": name}, {"$set": {"may_query": may_query}}
            ).matched_count
            == 0
        ):
            raise NotFound(f"no user {name!r}")

    # -- datasets ------------------------------------------------------------------------------
    @_unavailable_on_connection_errors
    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        from pymongo.errors import DuplicateKeyError

        try:
            self.db.datasets.insert_one(
                {
                    "_id": record.name,
                    "source": record.source,
                    "metadata": record.metadata,
                    **_amount_fields("max_query", record.max_query),
                    **_amount_fields("cap", record.cap),
                    "created_at": record.created_at or utc_now(),
                    "accounting": record.accounting,
                    "conversion_delta": record.conversion_delta,
                }
            )
        except DuplicateKeyError as err:
            raise Conflict(f"dataset {record.name!r} already exists") from err
        return self.get_dataset(record.name)  # type: ignore[return-value]

    @_unavailable_on_connection_errors
    def get_dataset(self, name: str) -> DatasetRecord | None:
        return _dataset(self.db.datasets.find_one({"_id": name}))

    @_unavailable_on_connection_errors
    def list_datasets(self) -> list[DatasetRecord]:
        return [_dataset(doc) for doc in self.db.datasets.find().sort("_id", 1)]  # type: ignore[misc]

    @_unavailable_on_connection_errors
    def set_dataset_limits(
        self, name: str, *, max_query: PrivacyAmount | None, cap: PrivacyAmount | None
    ) -> None:
        changes = {**_amount_fields("max_query", max_query), **_amount_fields("cap", cap)}
        if self.db.datasets.update_one({"_id": name}, {"$set": changes}).matched_count == 0:
            raise NotFound(f"no dataset {name!r}")

    # -- grants --------------------------------------------------------------------------------
    @_unavailable_on_connection_errors
    def set_grant(self, user: str, dataset: str, initial: PrivacyAmount) -> GrantRecord:
        if self.db.users.find_one({"_id": user}, {"_id": 1}) is None:
            raise NotFound(f"no user {user!r}")
        if self.db.datasets.find_one({"_id": dataset}, {"_id": 1}) is None:
            raise NotFound(f"no dataset {dataset!r}")
        self.db.grants.update_one(
            {"user": user, "dataset": dataset},
            {
                "$set": {
                    "eps_units": initial.eps_units,
                    "delta_units": initial.delta_units,
                    "updated_at": utc_now(),
                }
            },
            upsert=True,
        )
        return GrantRecord(user, dataset, initial)

    @_unavailable_on_connection_errors
    def get_grant(self, user: str, dataset: str) -> GrantRecord | None:
        doc = self.db.grants.find_one({"user": user, "dataset": dataset})
        return (
            None
            if doc is None
            else GrantRecord(user, dataset, PrivacyAmount(doc["eps_units"], doc["delta_units"]))
        )

    @_unavailable_on_connection_errors
    def grants_for_user(self, user: str) -> list[GrantRecord]:
        return [
            GrantRecord(user, doc["dataset"], PrivacyAmount(doc["eps_units"], doc["delta_units"]))
            for doc in self.db.grants.find({"user": user}).sort("dataset", 1)
        ]

    # -- ledger --------------------------------------------------------------------------------
    @_unavailable_on_connection_errors
    def reserve(self, reservation: Reservation) -> None:
        r = reservation

        def check(user_total: PrivacyAmount, dataset_total: PrivacyAmount) -> None:
            if not (user_total + r.cost).fits_within(r.user_cap):
                raise BudgetExceeded("user", r.user_cap - user_total, r.cost)
            if r.dataset_cap is not None and not (dataset_total + r.cost).fits_within(
                r.dataset_cap
            ):
                raise BudgetExceeded("dataset", r.dataset_cap - dataset_total, r.cost)

        # Two writes, no transaction: the archive entry goes first, so that a connection cut
        # between them can leave an entry without a spend (settled by mark_interrupted) but
        # never a spend that no archive entry explains.
        self.db.archive.insert_one(
            {
                "_id": r.query_id,
                "user": r.user,
                "dataset": r.dataset,
                "engine": r.engine,
                "request": r.request,
                "eps_units": r.cost.eps_units,
                "delta_units": r.cost.delta_units,
                "status": RUNNING,
                "created_at": utc_now(),
                "finished_at": None,
                "result": None,
                "error": None,
                "fingerprint": r.fingerprint,
            }
        )
        from pymongo.errors import PyMongoError

        try:
            self._append(r.user, r.dataset, r.cost, kind="query", query_id=r.query_id, check=check)
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

    @_unavailable_on_connection_errors
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
        self._append(
            user, dataset, amount, kind=kind, query_id=query_id, check=None, created_at=created_at
        )

    def _append(
        self,
        user: str,
        dataset: str,
        cost: PrivacyAmount,
        *,
        kind: str,
        query_id: str | None,
        check: Callable[[PrivacyAmount, PrivacyAmount], None] | None,
        created_at: str | None = None,
    ) -> str:
        """Insert the dataset's next ledger entry, checked against the totals it follows."""
        from pymongo.errors import DuplicateKeyError

        for attempt in range(MAX_ATTEMPTS):
            head = self._head(dataset)
            seq = head["seq"] if head else 0
            mine = self._head(dataset, user)
            if mine is not None and mine["seq"] > seq:
                continue  # an entry arrived between the two reads: read again
            user_total, dataset_total = _totals(mine, "user"), _totals(head, "dataset")
            if check is not None:
                check(user_total, dataset_total)
            now = created_at or utc_now()
            after_user, after_dataset = user_total + cost, dataset_total + cost
            try:
                self.db.ledger.insert_one(
                    {
                        "_id": f"{dataset}/{seq + 1:020d}",
                        "dataset": dataset,
                        "seq": seq + 1,
                        "user": user,
                        "query_id": query_id,
                        "eps_units": cost.eps_units,
                        "delta_units": cost.delta_units,
                        "kind": kind,
                        "created_at": now,
                        # Totals as text: a dataset's sum over many users may pass 64 bits.
                        "user_eps": str(after_user.eps_units),
                        "user_delta": str(after_user.delta_units),
                        "dataset_eps": str(after_dataset.eps_units),
                        "dataset_delta": str(after_dataset.delta_units),
                    }
                )
                return now
            except DuplicateKeyError:
                # Another reservation took this place in the sequence; back off a little.
                time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
        raise StoreUnavailable(
            "the admin database is too busy to record the spend; nothing was spent"
        )

    def _head(self, dataset: str, user: str | None = None) -> dict[str, Any] | None:
        """The dataset's last ledger entry (or the user's last one on it)."""
        query = {"dataset": dataset, **({"user": user} if user is not None else {})}
        return self.db.ledger.find_one(query, sort=[("seq", -1)])

    @_unavailable_on_connection_errors
    def spent(self, user: str, dataset: str) -> PrivacyAmount:
        return _totals(self._head(dataset, user), "user")

    @_unavailable_on_connection_errors
    def dataset_spent(self, dataset: str) -> PrivacyAmount:
        return _totals(self._head(dataset), "dataset")

    @_unavailable_on_connection_errors
    def ledger(self, *, user: str | None = None, dataset: str | None = None) -> list[LedgerEntry]:
        query = {k: v for k, v in (("user", user), ("dataset", dataset)) if v is not None}
        docs = sorted(
            self.db.ledger.find(query), key=lambda d: (d["created_at"], d["dataset"], d["seq"])
        )
        return [
            LedgerEntry(
                index,
                d["user"],
                d["dataset"],
                d["query_id"],
                PrivacyAmount(d["eps_units"], d["delta_units"]),
                d["kind"],
                d["created_at"],
            )
            for index, d in enumerate(docs, start=1)
        ]

    # -- archive -------------------------------------------------------------------------------
    @_unavailable_on_connection_errors
    def finish(
        self,
        query_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        self.db.archive.update_one(
            {"_id": query_id},
            {
                "$set": {
                    "status": status,
                    "finished_at": utc_now(),
                    "result": _encode(result),
                    "error": error,
                }
            },
        )

    @_unavailable_on_connection_errors
    def archive(self, user: str, *, dataset: str | None = None) -> list[ArchiveEntry]:
        query = {"user": user, **({"dataset": dataset} if dataset is not None else {})}
        docs = self.db.archive.find(query).sort([("created_at", 1), ("_id", 1)])
        return [_archive(doc) for doc in docs]

    @_unavailable_on_connection_errors
    def last_paid(self, user: str, dataset: str) -> ArchiveEntry | None:
        paid = {"$or": [{"eps_units": {"$gt": 0}}, {"delta_units": {"$gt": 0}}]}
        docs = list(
            self.db.archive.find({"user": user, "dataset": dataset, **paid})
            .sort([("created_at", -1)])
            .limit(1)
        )
        return _archive(docs[0]) if docs else None

    @_unavailable_on_connection_errors
    def archive_entry(self, query_id: str) -> ArchiveEntry | None:
        doc = self.db.archive.find_one({"_id": query_id})
        return None if doc is None else _archive(doc)

    @_unavailable_on_connection_errors
    def find_release(self, user: str, dataset: str, fingerprint: str) -> ArchiveEntry | None:
        doc = self.db.archive.find_one(
            {"user": user, "dataset": dataset, "fingerprint": fingerprint, "status": DONE},
            sort=[("created_at", 1), ("_id", 1)],
        )
        return None if doc is None else _archive(doc)

    @_unavailable_on_connection_errors
    def restore_archive_entry(self, entry: ArchiveEntry) -> None:
        self.db.archive.insert_one(
            {
                "_id": entry.query_id,
                "user": entry.user,
                "dataset": entry.dataset,
                "engine": entry.engine,
                "request": entry.request,
                "eps_units": entry.cost.eps_units,
                "delta_units": entry.cost.delta_units,
                "status": entry.status,
                "created_at": entry.created_at,
                "finished_at": entry.finished_at,
                "result": _encode(entry.result),
                "error": entry.error,
                "fingerprint": entry.fingerprint,
            }
        )

    @_unavailable_on_connection_errors
    def mark_interrupted(self) -> int:
        interrupted = 0
        for entry in list(self.db.archive.find({"status": RUNNING}, {"_id": 1})):
            if self.db.ledger.find_one({"query_id": entry["_id"]}, {"_id": 1}) is None:
                # Its reservation never reached the ledger (the connection was cut in
                # between): the query did not run and nothing was spent.
                update = {
                    "status": FAILED,
                    "eps_units": 0,
                    "delta_units": 0,
                    "error": "the admin database failed before the budget was reserved; "
                    "nothing was spent",
                }
            else:
                update = {"status": INTERRUPTED, "error": "the server stopped while the query ran"}
                interrupted += 1
            self.db.archive.update_one(
                {"_id": entry["_id"], "status": RUNNING},
                {"$set": {**update, "finished_at": utc_now()}},
            )
        return interrupted


# -- helpers -------------------------------------------------------------------------------------
def _totals(entry: dict[str, Any] | None, whose: str) -> PrivacyAmount:
    if entry is None:
        return PrivacyAmount.zero()
    return PrivacyAmount(int(entry[f"{whose}_eps"]), int(entry[f"{whose}_delta"]))


def _amount_fields(prefix: str, amount: PrivacyAmount | None) -> dict[str, int | None]:
    return {
        f"{prefix}_eps": None if amount is None else amount.eps_units,
        f"{prefix}_delta": None if amount is None else amount.delta_units,
    }


def _amount(doc: dict[str, Any], prefix: str) -> PrivacyAmount | None:
    eps = doc.get(f"{prefix}_eps")
    return None if eps is None else PrivacyAmount(eps, doc.get(f"{prefix}_delta") or 0)


def _user(doc: dict[str, Any] | None) -> UserRecord | None:
    if doc is None:
        return None
    return UserRecord(
        doc["_id"],
        bool(doc["is_admin"]),
        bool(doc["may_query"]),
        doc["created_at"],
        doc.get("token_hash"),
    )


def _dataset(doc: dict[str, Any] | None) -> DatasetRecord | None:
    if doc is None:
        return None
    return DatasetRecord(
        name=doc["_id"],
        source=doc["source"],
        metadata=doc["metadata"],
        max_query=_amount(doc, "max_query"),
        cap=_amount(doc, "cap"),
        created_at=doc["created_at"],
        accounting=doc.get("accounting", "basic"),
        conversion_delta=doc.get("conversion_delta", 1e-6),
    )


def _archive(doc: dict[str, Any]) -> ArchiveEntry:
    return ArchiveEntry(
        query_id=doc["_id"],
        user=doc["user"],
        dataset=doc["dataset"],
        engine=doc["engine"],
        request=doc["request"],
        cost=PrivacyAmount(doc["eps_units"], doc["delta_units"]),
        status=doc["status"],
        created_at=doc["created_at"],
        finished_at=doc.get("finished_at"),
        result=_decode(doc.get("result")),
        error=doc.get("error"),
        fingerprint=doc.get("fingerprint"),
    )


def _encode(result: dict[str, Any] | None) -> str | None:
    # Results are tables (lists of rows); FerretDB stores no nested arrays, so they go as text.
    return None if result is None else json.dumps(result)


def _decode(stored: str | None) -> dict[str, Any] | None:
    return None if stored is None else json.loads(stored)
