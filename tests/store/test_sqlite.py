"""What the SQLite store promises beyond the contract: its file, its schema and upgrades."""

from __future__ import annotations

import sqlite3

import pytest

from lomas_server.accounting import PrivacyAmount
from lomas_server.errors import StoreUnavailable
from lomas_server.store.base import APPROVED
from lomas_server.store.sqlite import SqliteStore
from lomas_server.store.sqlite_schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION
from tests.store.test_budget_requests_contract import _request
from tests.store.test_contract import _dataset, _reservation


def test_sqlite_ledger_is_append_only_in_the_database(tmp_path):
    store = SqliteStore(tmp_path / "a.sqlite")
    store.add_user("u", "sha256:u")
    _dataset(store)
    store.set_grant("u", "D", PrivacyAmount.budget(1, 0))
    store.reserve(_reservation())
    raw = sqlite3.connect(tmp_path / "a.sqlite")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE ledger SET eps_units = 0")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("DELETE FROM ledger")
    raw.close()
    store.close()


def test_sqlite_is_created_with_wal_and_schema_version(tmp_path):
    path = tmp_path / "new" / "store.sqlite"
    store = SqliteStore(path)
    assert path.exists() and store.schema_version() == SCHEMA_VERSION
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()


def test_sqlite_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "s.sqlite"
    SqliteStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE store_info SET value='99' WHERE key='schema_version'")
    raw.commit()
    raw.close()
    with pytest.raises(StoreUnavailable, match="newer"):
        SqliteStore(path)


def test_unreachable_sqlite_path_is_store_unavailable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        SqliteStore(blocker / "sub" / "store.sqlite")


def test_sqlite_store_of_schema_version_1_is_upgraded(tmp_path):
    path = tmp_path / "old.sqlite"
    raw = sqlite3.connect(path)
    raw.executescript(SCHEMA)
    raw.execute("INSERT INTO store_info VALUES ('schema_version', '1'), ('created_at', 'then')")
    raw.execute("INSERT INTO datasets VALUES ('OLD', '{}', '{}', NULL, NULL, NULL, NULL, 'then')")
    raw.execute(
        "INSERT INTO archive (query_id, user, dataset, engine, request, eps_units, delta_units, "
        "status, created_at) VALUES ('old', 'u', 'D', 'smartnoise_sql', '{}', 1, 0, 'done', 'then')"
    )
    raw.commit()
    raw.close()
    store = SqliteStore(path)
    assert store.schema_version() == SCHEMA_VERSION == 4
    assert store.archive_entry("old").status == "done"  # kept
    assert store.find_release("u", "D", "anything") is None
    assert store.get_dataset("OLD").accounting == "basic"  # datasets from before keep lomas's rule
    store.close()


def test_sqlite_store_of_schema_version_3_is_upgraded_to_budget_requests(tmp_path):
    """A store written by the release before budget requests keeps everything and takes them."""
    path = tmp_path / "v3.sqlite"
    raw = sqlite3.connect(path)
    raw.executescript(SCHEMA)
    for statements in MIGRATIONS[:2]:
        for statement in statements:
            raw.execute(statement)
    raw.execute("INSERT INTO store_info VALUES ('schema_version', '3'), ('created_at', 'then')")
    raw.execute("INSERT INTO users (name, token_hash, created_at) VALUES ('u', 'sha256:u', 'then')")
    raw.execute(
        "INSERT INTO datasets (name, source, metadata, created_at, accounting) "
        "VALUES ('D', '{}', '{}', 'then', 'zcdp')"
    )
    raw.execute("INSERT INTO grants VALUES ('u', 'D', 1000000000000, 0, 'then')")
    raw.commit()
    raw.close()
    store = SqliteStore(path)
    assert store.schema_version() == SCHEMA_VERSION == 4
    assert store.get_grant("u", "D").initial == PrivacyAmount.budget(1, 0)  # kept
    assert store.get_dataset("D").accounting == "zcdp"
    record = store.add_budget_request(_request())
    store.decide_budget_request(record.id, state=APPROVED, decided_by="a", note=None, granted=None)
    store.close()
    assert SqliteStore(path).get_budget_request(record.id).state == APPROVED


def test_sqlite_budget_requests_are_never_deleted_and_final_once_decided(tmp_path):
    store = SqliteStore(tmp_path / "r.sqlite")
    store.add_user("u", "sha256:u")
    _dataset(store)
    record = store.add_budget_request(_request())
    raw = sqlite3.connect(tmp_path / "r.sqlite", isolation_level=None)  # no lock held between
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        raw.execute("DELETE FROM budget_requests")
    # the database itself keeps one pending request per user and dataset
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        raw.execute(
            "INSERT INTO budget_requests (id, user, dataset, eps_units, delta_units, reason, "
            "state, created_at) VALUES ('x', 'u', 'D', 1, 0, 'r', 'pending', 'now')"
        )
    store.decide_budget_request(record.id, state=APPROVED, decided_by="a", note=None, granted=None)
    with pytest.raises(sqlite3.IntegrityError, match="final"):
        raw.execute("UPDATE budget_requests SET state='pending'")
    raw.close()
    store.close()
