"""The SQLite store's tables, and the upgrades that bring an older store to this version.

Triggers make the ledger append-only, and budget requests undeletable and final once
decided, at the database level, whatever client writes to it.
"""

from __future__ import annotations

import sqlite3

from lomas_server.errors import StoreUnavailable
from lomas_server.store.base import utc_now
from lomas_server.store.rules import newer_schema
from lomas_server.store.sqlite_connections import SqliteConnections

SCHEMA_VERSION = 4

# Upgrades, in order: entry i takes a store from version i + 1 to i + 2. The base schema
# below is version 1; a new store is created at 1 and upgraded like any other.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
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
    # 4: analysts ask for more budget; admins approve (granting it) or deny.
    (
        """CREATE TABLE budget_requests (
            id TEXT PRIMARY KEY,
            user TEXT NOT NULL,
            dataset TEXT NOT NULL,
            eps_units INTEGER NOT NULL CHECK (eps_units >= 0),
            delta_units INTEGER NOT NULL CHECK (delta_units >= 0),
            reason TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied')),
            created_at TEXT NOT NULL,
            decided_at TEXT,
            decided_by TEXT,
            note TEXT,
            granted_eps INTEGER CHECK (granted_eps >= 0),
            granted_delta INTEGER CHECK (granted_delta >= 0)
        )""",
        # The one-pending rule, kept by the database itself: no check-then-insert race.
        "CREATE UNIQUE INDEX budget_requests_one_pending ON budget_requests (user, dataset) "
        "WHERE state = 'pending'",
        "CREATE INDEX budget_requests_by_user ON budget_requests (user, dataset, created_at)",
        "CREATE INDEX budget_requests_by_state ON budget_requests (state, created_at)",
        "CREATE TRIGGER budget_requests_no_delete BEFORE DELETE ON budget_requests "
        "BEGIN SELECT RAISE(ABORT, 'budget requests are never deleted'); END",
        "CREATE TRIGGER budget_requests_final BEFORE UPDATE ON budget_requests "
        "WHEN OLD.state <> 'pending' "
        "BEGIN SELECT RAISE(ABORT, 'a decided budget request is final'); END",
    ),
)

# Version 1.
SCHEMA = """
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


def create_schema(db: SqliteConnections) -> None:
    """Create the tables if the file has none, then upgrade them to SCHEMA_VERSION."""
    conn = db.connection()
    try:
        # One script, one transaction: concurrent first starts cannot half-create it.
        conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
    except sqlite3.Error as err:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise StoreUnavailable(f"cannot create the admin store at {db.path}: {err}") from err
    with db.write() as conn:
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
            raise newer_schema(f"the admin store {db.path}", version, SCHEMA_VERSION)
        for statements in MIGRATIONS[version - 1 :]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(
            "UPDATE store_info SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),)
        )


def schema_version(db: SqliteConnections) -> int:
    return int(db.read("SELECT value FROM store_info WHERE key='schema_version'")[0]["value"])
