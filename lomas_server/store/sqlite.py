"""The embedded admin store: one SQLite file in WAL mode, created on first use.

Reservations run in ``BEGIN IMMEDIATE`` transactions, which SQLite serializes across threads
and processes, so the check "remaining >= cost" and the insert of the spend can never
interleave with another reservation. Amounts are integers (see accounting.amounts), so SUM is
exact. The file and its connections are in sqlite_connections.py, the tables in
sqlite_schema.py.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from lomas_server.accounting import PrivacyAmount
from lomas_server.store import record_fields, rules
from lomas_server.store.base import (
    DONE,
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
from lomas_server.store.sqlite_connections import SqliteConnections
from lomas_server.store.sqlite_schema import create_schema, schema_version


class SqliteStore(AdminStore):
    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._db = SqliteConnections(self.path, busy_timeout_s=busy_timeout_s)
        create_schema(self._db)

    def schema_version(self) -> int:
        return schema_version(self._db)

    def close(self) -> None:
        self._db.close()

    def ping(self) -> None:
        self._db.read("SELECT 1")

    # -- users ---------------------------------------------------------------------------
    def add_user(
        self, name: str, token_hash: str, *, is_admin: bool = False, created_at: str | None = None
    ) -> UserRecord:
        record = record_fields.new_user(name, token_hash, is_admin=is_admin, created_at=created_at)
        with self._db.write() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone():
                raise rules.user_exists(name)
            _insert(conn, "users", record_fields.user_fields(record))
        return record

    def get_user(self, name: str) -> UserRecord | None:
        rows = self._db.read("SELECT * FROM users WHERE name=?", (name,))
        return record_fields.user_record(_fields(rows[0])) if rows else None

    def user_by_token_hash(self, token_hash: str) -> UserRecord | None:
        rows = self._db.read("SELECT * FROM users WHERE token_hash=?", (token_hash,))
        return record_fields.user_record(_fields(rows[0])) if rows else None

    def list_users(self) -> list[UserRecord]:
        rows = self._db.read("SELECT * FROM users ORDER BY name")
        return [record_fields.user_record(_fields(row)) for row in rows]

    def set_token_hash(self, name: str, token_hash: str) -> None:
        with self._db.write() as conn:
            if not _update(conn, "users", {"token_hash": token_hash}, name=name):
                raise rules.no_user(name)

    def set_may_query(self, name: str, may_query: bool) -> None:
        with self._db.write() as conn:
            if not _update(conn, "users", {"may_query": may_query}, name=name):
                raise rules.no_user(name)

    # -- datasets ------------------------------------------------------------------------
    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        with self._db.write() as conn:
            if conn.execute("SELECT 1 FROM datasets WHERE name=?", (record.name,)).fetchone():
                raise rules.dataset_exists(record.name)
            _insert(conn, "datasets", record_fields.dataset_fields(record))
        return self.get_dataset(record.name)  # type: ignore[return-value]

    def get_dataset(self, name: str) -> DatasetRecord | None:
        rows = self._db.read("SELECT * FROM datasets WHERE name=?", (name,))
        return record_fields.dataset_record(_fields(rows[0])) if rows else None

    def list_datasets(self) -> list[DatasetRecord]:
        rows = self._db.read("SELECT * FROM datasets ORDER BY name")
        return [record_fields.dataset_record(_fields(row)) for row in rows]

    def set_dataset_limits(
        self, name: str, *, max_query: PrivacyAmount | None, cap: PrivacyAmount | None
    ) -> None:
        limits = record_fields.limits_fields(max_query, cap)
        with self._db.write() as conn:
            if not _update(conn, "datasets", limits, name=name):
                raise rules.no_dataset(name)

    # -- grants --------------------------------------------------------------------------
    def set_grant(self, user: str, dataset: str, initial: PrivacyAmount) -> GrantRecord:
        with self._db.write() as conn:
            if not conn.execute("SELECT 1 FROM users WHERE name=?", (user,)).fetchone():
                raise rules.no_user(user)
            if not conn.execute("SELECT 1 FROM datasets WHERE name=?", (dataset,)).fetchone():
                raise rules.no_dataset(dataset)
            values = record_fields.grant_fields(initial)
            _insert(
                conn,
                "grants",
                {"user": user, "dataset": dataset, **values},
                # A grant replaces the one before it.
                or_else="ON CONFLICT (user, dataset) DO UPDATE SET "
                + ", ".join(f"{column}=excluded.{column}" for column in values),
            )
        return GrantRecord(user, dataset, initial)

    def get_grant(self, user: str, dataset: str) -> GrantRecord | None:
        rows = self._db.read("SELECT * FROM grants WHERE user=? AND dataset=?", (user, dataset))
        return record_fields.grant_record(_fields(rows[0])) if rows else None

    def grants_for_user(self, user: str) -> list[GrantRecord]:
        rows = self._db.read("SELECT * FROM grants WHERE user=? ORDER BY dataset", (user,))
        return [record_fields.grant_record(_fields(row)) for row in rows]

    # -- ledger --------------------------------------------------------------------------
    def reserve(self, reservation: Reservation) -> None:
        r = reservation
        with self._db.write() as conn:
            rules.check_fits(
                r, _user_spent(conn, r.user, r.dataset), lambda: _dataset_spent(conn, r.dataset)
            )
            now = utc_now()
            _insert(
                conn,
                "ledger",
                record_fields.ledger_fields(
                    r.user, r.dataset, r.cost, kind="query", query_id=r.query_id, created_at=now
                ),
            )
            _insert(
                conn, "archive", record_fields.archive_fields(record_fields.running_entry(r, now))
            )

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
        fields = record_fields.ledger_fields(
            user, dataset, amount, kind=kind, query_id=query_id, created_at=created_at or utc_now()
        )
        with self._db.write() as conn:
            _insert(conn, "ledger", fields)

    def spent(self, user: str, dataset: str) -> PrivacyAmount:
        with self._db.reading() as conn:
            return _user_spent(conn, user, dataset)

    def dataset_spent(self, dataset: str) -> PrivacyAmount:
        with self._db.reading() as conn:
            return _dataset_spent(conn, dataset)

    def ledger(self, *, user: str | None = None, dataset: str | None = None) -> list[LedgerEntry]:
        sql, params = _filtered("SELECT * FROM ledger", user=user, dataset=dataset)
        rows = self._db.read(sql + " ORDER BY seq", params)
        return [record_fields.ledger_entry(row["seq"], _fields(row)) for row in rows]

    # -- archive -------------------------------------------------------------------------
    def finish(
        self,
        query_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        with self._db.write() as conn:
            _update(
                conn,
                "archive",
                record_fields.finished_fields(status, result, error),
                query_id=query_id,
            )

    def archive(self, user: str, *, dataset: str | None = None) -> list[ArchiveEntry]:
        sql, params = _filtered("SELECT * FROM archive", user=user, dataset=dataset)
        return self._archive_entries(sql + " ORDER BY created_at, rowid", params)

    def find_release(self, user: str, dataset: str, fingerprint: str) -> ArchiveEntry | None:
        return self._first_archive_entry(
            "SELECT * FROM archive WHERE user=? AND dataset=? AND fingerprint=? AND status=? "
            "ORDER BY created_at, rowid LIMIT 1",
            (user, dataset, fingerprint, DONE),
        )

    def last_paid(self, user: str, dataset: str) -> ArchiveEntry | None:
        return self._first_archive_entry(
            "SELECT * FROM archive WHERE user=? AND dataset=? AND (eps_units > 0 OR "
            "delta_units > 0) ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (user, dataset),
        )

    def archive_entry(self, query_id: str) -> ArchiveEntry | None:
        return self._first_archive_entry("SELECT * FROM archive WHERE query_id=?", (query_id,))

    def restore_archive_entry(self, entry: ArchiveEntry) -> None:
        with self._db.write() as conn:
            _insert(conn, "archive", record_fields.archive_fields(entry))

    def mark_interrupted(self) -> int:
        with self._db.write() as conn:
            return _update(conn, "archive", record_fields.interrupted_fields(), status=RUNNING)

    # -- budget requests -----------------------------------------------------------------
    def add_budget_request(self, record: BudgetRequestRecord) -> BudgetRequestRecord:
        if record.state != PENDING:
            raise ValueError("a new budget request is pending")
        with self._db.write() as conn:
            if not conn.execute("SELECT 1 FROM users WHERE name=?", (record.user,)).fetchone():
                raise rules.no_user(record.user)
            if not conn.execute(
                "SELECT 1 FROM datasets WHERE name=?", (record.dataset,)
            ).fetchone():
                raise rules.no_dataset(record.dataset)
            _insert_request(conn, record)
        return record

    def get_budget_request(self, request_id: str) -> BudgetRequestRecord | None:
        rows = self._db.read("SELECT * FROM budget_requests WHERE id=?", (request_id,))
        return record_fields.budget_request_record(_fields(rows[0])) if rows else None

    def budget_requests(
        self, *, user: str | None = None, dataset: str | None = None, state: str | None = None
    ) -> list[BudgetRequestRecord]:
        sql, params = _filtered(
            "SELECT * FROM budget_requests", user=user, dataset=dataset, state=state
        )
        rows = self._db.read(sql + " ORDER BY created_at, rowid", params)
        return [record_fields.budget_request_record(_fields(row)) for row in rows]

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
        with self._db.write() as conn:
            row = conn.execute("SELECT * FROM budget_requests WHERE id=?", (request_id,)).fetchone()
            if row is None:
                raise rules.no_budget_request(request_id)
            record = record_fields.budget_request_record(_fields(row))
            # The write lock is held since BEGIN IMMEDIATE: no one decides it in between.
            if record.state != PENDING:
                raise rules.already_decided(request_id, record.state)
            decided = record_fields.decided(
                record,
                state=state,
                decided_by=decided_by,
                note=note,
                granted=granted,
                decided_at=decided_at,
            )
            _update(
                conn,
                "budget_requests",
                record_fields.decision_fields(decided),
                id=request_id,
                state=PENDING,
            )
        return decided

    def restore_budget_request(self, record: BudgetRequestRecord) -> None:
        with self._db.write() as conn:
            _insert_request(conn, record)

    def _archive_entries(self, sql: str, params: tuple[Any, ...]) -> list[ArchiveEntry]:
        return [record_fields.archive_entry(_fields(row)) for row in self._db.read(sql, params)]

    def _first_archive_entry(self, sql: str, params: tuple[Any, ...]) -> ArchiveEntry | None:
        entries = self._archive_entries(sql, params)
        return entries[0] if entries else None


# -- rows ----------------------------------------------------------------------------------
# Columns that hold a JSON document as text; every other field is stored as it is.
_JSON_COLUMNS = frozenset({"source", "metadata", "request"})


def _fields(row: sqlite3.Row) -> dict[str, Any]:
    return {
        column: json.loads(row[column]) if column in _JSON_COLUMNS else row[column]
        for column in row.keys()
    }


def _values(fields: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        json.dumps(value) if column in _JSON_COLUMNS else value for column, value in fields.items()
    )


# Table and column names below come from this package, never from a request.
def _insert(
    conn: sqlite3.Connection, table: str, fields: dict[str, Any], *, or_else: str = ""
) -> None:
    columns = ", ".join(fields)
    places = ", ".join("?" for _ in fields)
    conn.execute(
        f"INSERT INTO {table} ({columns}) VALUES ({places}) {or_else}".rstrip(), _values(fields)
    )


def _update(conn: sqlite3.Connection, table: str, fields: dict[str, Any], **where: Any) -> int:
    """Set ``fields`` on the rows matching ``where``; how many rows there were."""
    changes = ", ".join(f"{column}=?" for column in fields)
    matches = " AND ".join(f"{column}=?" for column in where)
    return conn.execute(
        f"UPDATE {table} SET {changes} WHERE {matches}", _values(fields) + tuple(where.values())
    ).rowcount


def _filtered(sql: str, **filters: str | None) -> tuple[str, tuple[Any, ...]]:
    clauses = [f"{column}=?" for column, value in filters.items() if value is not None]
    params = tuple(value for value in filters.values() if value is not None)
    return (sql + (" WHERE " + " AND ".join(clauses) if clauses else ""), params)


def _insert_request(conn: sqlite3.Connection, record: BudgetRequestRecord) -> None:
    """File a request (pending, or decided when restored): nothing follows a pending request
    of the same user and dataset, as on MongoDB. The write lock is held by the caller."""
    if conn.execute("SELECT 1 FROM budget_requests WHERE id=?", (record.id,)).fetchone():
        raise rules.request_id_taken(record.id)
    if conn.execute(
        "SELECT 1 FROM budget_requests WHERE user=? AND dataset=? AND state=?",
        (record.user, record.dataset, PENDING),
    ).fetchone():
        raise rules.pending_request(record.user, record.dataset)
    _insert(conn, "budget_requests", record_fields.budget_request_fields(record))


def _user_spent(conn: sqlite3.Connection, user: str, dataset: str) -> PrivacyAmount:
    row = conn.execute(
        "SELECT COALESCE(SUM(eps_units), 0) AS e, COALESCE(SUM(delta_units), 0) AS d "
        "FROM ledger WHERE user=? AND dataset=?",
        (user, dataset),
    ).fetchone()
    return PrivacyAmount(row["e"], row["d"])


def _dataset_spent(conn: sqlite3.Connection, dataset: str) -> PrivacyAmount:
    # Summed per user in SQL (each bounded by a grant, so no 64-bit overflow) and across
    # users in Python, whose integers do not overflow however many users there are.
    rows = conn.execute(
        "SELECT SUM(eps_units) AS e, SUM(delta_units) AS d FROM ledger WHERE dataset=? GROUP BY user",
        (dataset,),
    ).fetchall()
    return PrivacyAmount(sum(row["e"] for row in rows), sum(row["d"] for row in rows))
