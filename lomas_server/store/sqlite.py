"""The embedded admin store: one SQLite file in WAL mode, created on first use.

Reservations run in ``BEGIN IMMEDIATE`` transactions, which SQLite serializes across threads
and processes, so the check "remaining >= cost" and the insert of the spend can never
interleave with another reservation. Amounts are integers (see accounting.amounts), so SUM is
exact. Triggers make the ledger append-only at the database level.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lomas_server.accounting import PrivacyAmount
from lomas_server.errors import BudgetExceeded, Conflict, NotFound, StoreUnavailable
from lomas_server.store.base import (
    DONE,
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

log = logging.getLogger(__name__)


def _opened_read_only(conn: sqlite3.Connection) -> bool:
    """Whether SQLite opened the file read-only (it does so silently when it cannot write)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as err:
        return err.sqlite_errorcode & 0xFF == sqlite3.SQLITE_READONLY
    try:
        # Rewrites the header with the value it holds: a write that changes nothing.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute(f"PRAGMA user_version = {int(version)}")
    except sqlite3.OperationalError as err:
        return err.sqlite_errorcode & 0xFF == sqlite3.SQLITE_READONLY
    finally:
        _rollback(conn)
    return False


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is left of a transaction (SQLite ends some on its own, e.g. when full)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rolling back a failed admin store transaction failed")


SCHEMA_VERSION = 3

# Upgrades, in order: entry i takes a store from version i + 1 to i + 2. The base schema
# below is version 1; a new store is created at 1 and upgraded like any other.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 2: an identical request replays its earlier release, found by the request's fingerprint.
    (
        "ALTER TABLE archive ADD COLUMN fingerprint TEXT",
        "CREATE INDEX archive_by_fingerprint ON archive (user, dataset, fingerprint, status)",
    ),
    # 3: each dataset says how its spends compose (basic or zCDP).
    (
        "ALTER TABLE datasets ADD COLUMN accounting TEXT NOT NULL DEFAULT 'basic'",
        "ALTER TABLE datasets ADD COLUMN conversion_delta REAL NOT NULL DEFAULT 1e-6",
    ),
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    token_hash TEXT UNIQUE,
    is_admin INTEGER NOT NULL DEFAULT 0,
    may_query INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    metadata TEXT NOT NULL,
    max_query_eps INTEGER, max_query_delta INTEGER,
    cap_eps INTEGER, cap_delta INTEGER,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    user TEXT NOT NULL REFERENCES users(name),
    dataset TEXT NOT NULL REFERENCES datasets(name),
    eps_units INTEGER NOT NULL CHECK (eps_units >= 0),
    delta_units INTEGER NOT NULL CHECK (delta_units >= 0),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (user, dataset)
);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    dataset TEXT NOT NULL,
    query_id TEXT,
    eps_units INTEGER NOT NULL CHECK (eps_units >= 0),
    delta_units INTEGER NOT NULL CHECK (delta_units >= 0),
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_user_dataset ON ledger (user, dataset);
CREATE INDEX IF NOT EXISTS ledger_by_dataset ON ledger (dataset);
CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TABLE IF NOT EXISTS archive (
    query_id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    dataset TEXT NOT NULL,
    engine TEXT NOT NULL,
    request TEXT NOT NULL,
    eps_units INTEGER NOT NULL,
    delta_units INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS archive_by_user ON archive (user, dataset, created_at);
CREATE INDEX IF NOT EXISTS archive_by_status ON archive (status);
"""


class SqliteStore(AdminStore):
    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._create_private_file()
        self._create_schema()

    def _create_private_file(self) -> None:
        """Create the store readable by its owner only: it holds archives and dataset
        credentials. SQLite gives its -wal and -shm files the database file's mode."""
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise StoreUnavailable(
                f"cannot create the folder of the admin store {self.path}: {err}"
            ) from err
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        except FileExistsError:
            mode = self.path.stat().st_mode
            if mode & 0o077:
                log.warning(
                    "the admin store %s can be read by other users (mode %o); "
                    "chmod 600 it (and its -wal and -shm files)",
                    self.path,
                    stat.S_IMODE(mode),
                )
        except OSError as err:
            raise StoreUnavailable(f"cannot create the admin store {self.path}: {err}") from err

    # -- connections ---------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout_s,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a committed spend survives power loss too, not only a killed process.
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as err:
                raise StoreUnavailable(f"cannot open the admin store at {self.path}") from err
            self._local.conn = conn
            self._local.read_only = _opened_read_only(conn)
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _writable_conn(self) -> sqlite3.Connection:
        """This thread's connection, reopened if it was opened while the file could not be
        written (SQLite then opens it read-only, and it stays so after the fault passes)."""
        conn = self._conn()
        if getattr(self._local, "read_only", False):
            self._forget_connection(conn)
            conn = self._conn()
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: takes the write lock up front, so reads inside it are current."""
        conn = self._writable_conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            self._forget_connection(conn)
            raise StoreUnavailable("the admin store is busy or unavailable; try again") from err
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.OperationalError as err:
            # A full disk, a read-only file, an I/O error: SQLite may have rolled back already.
            _rollback(conn)
            # A connection opened while the file could not be written stays read-only for
            # good: this thread opens a fresh one next time, once the fault has passed.
            self._forget_connection(conn)
            raise StoreUnavailable(
                "the admin store cannot be written (full, read-only or failing); "
                "nothing was recorded"
            ) from err
        except BaseException:
            _rollback(conn)
            raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._conn()
        except sqlite3.OperationalError as err:
            raise StoreUnavailable("the admin store is busy or unavailable; try again") from err

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._reading() as conn:
            return conn.execute(sql, params).fetchall()

    def _create_schema(self) -> None:
        conn = self._conn()
        try:
            # One script, one transaction: concurrent first starts cannot half-create it.
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreUnavailable(f"cannot create the admin store at {self.path}: {err}") from err
        with self._write() as conn:
            row = conn.execute("SELECT value FROM store_info WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO store_info VALUES ('schema_version', '1'), ('created_at', ?)",
                    (utc_now(),),
                )
                version = 1
            else:
                version = int(row["value"])
            if version > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"the admin store {self.path} has schema version {version}, newer than this "
                    f"server understands ({SCHEMA_VERSION}); upgrade lomas-jupyter"
                )
            for statements in _MIGRATIONS[version - 1 :]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute(
                "UPDATE store_info SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),)
            )

    def schema_version(self) -> int:
        return int(
            self._read("SELECT value FROM store_info WHERE key='schema_version'")[0]["value"]
        )

    def _forget_connection(self, conn: sqlite3.Connection) -> None:
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._all_lock:
            if conn in self._all:
                self._all.remove(conn)
        try:
            conn.close()
        except sqlite3.Error:
            log.exception("closing a failed admin store connection failed")

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    def ping(self) -> None:
        self._read("SELECT 1")

    # -- users ---------------------------------------------------------------------------
    def add_user(
        self, name: str, token_hash: str, *, is_admin: bool = False, created_at: str | None = None
    ) -> UserRecord:
        record = UserRecord(
            name=name,
            is_admin=is_admin,
            may_query=True,
            created_at=created_at or utc_now(),
            token_hash=token_hash,
        )
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone():
                raise Conflict(f"user {name!r} already exists")
            conn.execute(
                "INSERT INTO users (name, token_hash, is_admin, may_query, created_at) VALUES (?,?,?,?,?)",
                (name, token_hash, int(is_admin), 1, record.created_at),
            )
        return record

    def get_user(self, name: str) -> UserRecord | None:
        rows = self._read("SELECT * FROM users WHERE name=?", (name,))
        return _user(rows[0]) if rows else None

    def user_by_token_hash(self, token_hash: str) -> UserRecord | None:
        rows = self._read("SELECT * FROM users WHERE token_hash=?", (token_hash,))
        return _user(rows[0]) if rows else None

    def list_users(self) -> list[UserRecord]:
        return [_user(row) for row in self._read("SELECT * FROM users ORDER BY name")]

    def set_token_hash(self, name: str, token_hash: str) -> None:
        with self._write() as conn:
            if (
                conn.execute(
                    "UPDATE users SET token_hash=? WHERE name=?", (token_hash, name)
                ).rowcount
                == 0
            ):
                raise NotFound(f"no user {name!r}")

    def set_may_query(self, name: str, may_query: bool) -> None:
        with self._write() as conn:
            if (
                conn.execute(
                    "UPDATE users SET may_query=? WHERE name=?", (int(may_query), name)
                ).rowcount
                == 0
            ):
                raise NotFound(f"no user {name!r}")

    # -- datasets ------------------------------------------------------------------------
    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        created = record.created_at or utc_now()
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM datasets WHERE name=?", (record.name,)).fetchone():
                raise Conflict(f"dataset {record.name!r} already exists")
            conn.execute(
                "INSERT INTO datasets (name, source, metadata, max_query_eps, max_query_delta, cap_eps, "
                "cap_delta, created_at, accounting, conversion_delta) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    record.name,
                    json.dumps(record.source),
                    json.dumps(record.metadata),
                    *_units_or_none(record.max_query),
                    *_units_or_none(record.cap),
                    created,
                    record.accounting,
                    record.conversion_delta,
                ),
            )
        return self.get_dataset(record.name)  # type: ignore[return-value]

    def get_dataset(self, name: str) -> DatasetRecord | None:
        rows = self._read("SELECT * FROM datasets WHERE name=?", (name,))
        return _dataset(rows[0]) if rows else None

    def list_datasets(self) -> list[DatasetRecord]:
        return [_dataset(row) for row in self._read("SELECT * FROM datasets ORDER BY name")]

    def set_dataset_limits(
        self, name: str, *, max_query: PrivacyAmount | None, cap: PrivacyAmount | None
    ) -> None:
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE datasets SET max_query_eps=?, max_query_delta=?, cap_eps=?, cap_delta=? WHERE name=?",
                (*_units_or_none(max_query), *_units_or_none(cap), name),
            ).rowcount
            if updated == 0:
                raise NotFound(f"no dataset {name!r}")

    # -- grants --------------------------------------------------------------------------
    def set_grant(self, user: str, dataset: str, initial: PrivacyAmount) -> GrantRecord:
        with self._write() as conn:
            if not conn.execute("SELECT 1 FROM users WHERE name=?", (user,)).fetchone():
                raise NotFound(f"no user {user!r}")
            if not conn.execute("SELECT 1 FROM datasets WHERE name=?", (dataset,)).fetchone():
                raise NotFound(f"no dataset {dataset!r}")
            conn.execute(
                "INSERT INTO grants VALUES (?,?,?,?,?) ON CONFLICT (user, dataset) DO UPDATE SET "
                "eps_units=excluded.eps_units, delta_units=excluded.delta_units, updated_at=excluded.updated_at",
                (user, dataset, initial.eps_units, initial.delta_units, utc_now()),
            )
        return GrantRecord(user, dataset, initial)

    def get_grant(self, user: str, dataset: str) -> GrantRecord | None:
        rows = self._read("SELECT * FROM grants WHERE user=? AND dataset=?", (user, dataset))
        return _grant(rows[0]) if rows else None

    def grants_for_user(self, user: str) -> list[GrantRecord]:
        rows = self._read("SELECT * FROM grants WHERE user=? ORDER BY dataset", (user,))
        return [_grant(row) for row in rows]

    # -- ledger --------------------------------------------------------------------------
    def reserve(self, reservation: Reservation) -> None:
        r = reservation
        with self._write() as conn:
            spent = _user_spent(conn, r.user, r.dataset)
            if not (spent + r.cost).fits_within(r.user_cap):
                raise BudgetExceeded("user", r.user_cap - spent, r.cost)
            if r.dataset_cap is not None:
                total = _dataset_spent(conn, r.dataset)
                if not (total + r.cost).fits_within(r.dataset_cap):
                    raise BudgetExceeded("dataset", r.dataset_cap - total, r.cost)
            now = utc_now()
            conn.execute(
                "INSERT INTO ledger (user, dataset, query_id, eps_units, delta_units, kind, created_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (r.user, r.dataset, r.query_id, r.cost.eps_units, r.cost.delta_units, "query", now),
            )
            conn.execute(
                "INSERT INTO archive (query_id, user, dataset, engine, request, eps_units, delta_units, "
                "status, created_at, fingerprint) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    r.query_id,
                    r.user,
                    r.dataset,
                    r.engine,
                    json.dumps(r.request),
                    r.cost.eps_units,
                    r.cost.delta_units,
                    RUNNING,
                    now,
                    r.fingerprint,
                ),
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
        with self._write() as conn:
            conn.execute(
                "INSERT INTO ledger (user, dataset, query_id, eps_units, delta_units, kind, created_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    user,
                    dataset,
                    query_id,
                    amount.eps_units,
                    amount.delta_units,
                    kind,
                    created_at or utc_now(),
                ),
            )

    def spent(self, user: str, dataset: str) -> PrivacyAmount:
        with self._reading() as conn:
            return _user_spent(conn, user, dataset)

    def dataset_spent(self, dataset: str) -> PrivacyAmount:
        with self._reading() as conn:
            return _dataset_spent(conn, dataset)

    def ledger(self, *, user: str | None = None, dataset: str | None = None) -> list[LedgerEntry]:
        sql, params = _filtered("SELECT * FROM ledger", user=user, dataset=dataset)
        return [
            LedgerEntry(
                row["seq"],
                row["user"],
                row["dataset"],
                row["query_id"],
                PrivacyAmount(row["eps_units"], row["delta_units"]),
                row["kind"],
                row["created_at"],
            )
            for row in self._read(sql + " ORDER BY seq", params)
        ]

    # -- archive -------------------------------------------------------------------------
    def finish(
        self,
        query_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE archive SET status=?, finished_at=?, result=?, error=? WHERE query_id=?",
                (
                    status,
                    utc_now(),
                    json.dumps(result) if result is not None else None,
                    error,
                    query_id,
                ),
            )

    def archive(self, user: str, *, dataset: str | None = None) -> list[ArchiveEntry]:
        sql, params = _filtered("SELECT * FROM archive", user=user, dataset=dataset)
        return [_archive(row) for row in self._read(sql + " ORDER BY created_at, rowid", params)]

    def find_release(self, user: str, dataset: str, fingerprint: str) -> ArchiveEntry | None:
        rows = self._read(
            "SELECT * FROM archive WHERE user=? AND dataset=? AND fingerprint=? AND status=? "
            "ORDER BY created_at, rowid LIMIT 1",
            (user, dataset, fingerprint, DONE),
        )
        return _archive(rows[0]) if rows else None

    def last_paid(self, user: str, dataset: str) -> ArchiveEntry | None:
        rows = self._read(
            "SELECT * FROM archive WHERE user=? AND dataset=? AND (eps_units > 0 OR "
            "delta_units > 0) ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (user, dataset),
        )
        return _archive(rows[0]) if rows else None

    def archive_entry(self, query_id: str) -> ArchiveEntry | None:
        rows = self._read("SELECT * FROM archive WHERE query_id=?", (query_id,))
        return _archive(rows[0]) if rows else None

    def restore_archive_entry(self, entry: ArchiveEntry) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO archive (query_id, user, dataset, engine, request, eps_units, delta_units, "
                "status, created_at, finished_at, result, error, fingerprint) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.query_id,
                    entry.user,
                    entry.dataset,
                    entry.engine,
                    json.dumps(entry.request),
                    entry.cost.eps_units,
                    entry.cost.delta_units,
                    entry.status,
                    entry.created_at,
                    entry.finished_at,
                    json.dumps(entry.result) if entry.result is not None else None,
                    entry.error,
                    entry.fingerprint,
                ),
            )

    def mark_interrupted(self) -> int:
        with self._write() as conn:
            return conn.execute(
                "UPDATE archive SET status=?, finished_at=?, error=? WHERE status=?",
                (INTERRUPTED, utc_now(), "the server stopped while the query ran", RUNNING),
            ).rowcount


# -- helpers -----------------------------------------------------------------------------
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


def _filtered(sql: str, **filters: str | None) -> tuple[str, tuple[Any, ...]]:
    clauses = [f"{column}=?" for column, value in filters.items() if value is not None]
    params = tuple(value for value in filters.values() if value is not None)
    return (sql + (" WHERE " + " AND ".join(clauses) if clauses else ""), params)


def _units_or_none(amount: PrivacyAmount | None) -> tuple[int | None, int | None]:
    return (None, None) if amount is None else (amount.eps_units, amount.delta_units)


def _amount_or_none(eps: int | None, delta: int | None) -> PrivacyAmount | None:
    return None if eps is None else PrivacyAmount(eps, delta or 0)


def _user(row: sqlite3.Row) -> UserRecord:
    return UserRecord(
        row["name"],
        bool(row["is_admin"]),
        bool(row["may_query"]),
        row["created_at"],
        row["token_hash"],
    )


def _dataset(row: sqlite3.Row) -> DatasetRecord:
    return DatasetRecord(
        name=row["name"],
        source=json.loads(row["source"]),
        metadata=json.loads(row["metadata"]),
        max_query=_amount_or_none(row["max_query_eps"], row["max_query_delta"]),
        cap=_amount_or_none(row["cap_eps"], row["cap_delta"]),
        created_at=row["created_at"],
        accounting=row["accounting"],
        conversion_delta=row["conversion_delta"],
    )


def _grant(row: sqlite3.Row) -> GrantRecord:
    return GrantRecord(
        row["user"], row["dataset"], PrivacyAmount(row["eps_units"], row["delta_units"])
    )


def _archive(row: sqlite3.Row) -> ArchiveEntry:
    return ArchiveEntry(
        query_id=row["query_id"],
        user=row["user"],
        dataset=row["dataset"],
        engine=row["engine"],
        request=json.loads(row["request"]),
        cost=PrivacyAmount(row["eps_units"], row["delta_units"]),
        status=row["status"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error=row["error"],
        fingerprint=row["fingerprint"],
    )
