"""The SQLite store's file and connections: one connection per thread, write transactions
that take the lock up front, and every SQLite failure turned into StoreUnavailable.

A write that fails (full disk, read-only file, I/O error) records nothing and leaves no
connection behind that would stay broken once the fault has passed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lomas_server.errors import StoreUnavailable

log = logging.getLogger(__name__)


class SqliteConnections:
    def __init__(self, path: Path, *, busy_timeout_s: float) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._create_private_file()

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

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
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

    def _writable_connection(self) -> sqlite3.Connection:
        """This thread's connection, reopened if it was opened while the file could not be
        written (SQLite then opens it read-only, and it stays so after the fault passes)."""
        conn = self.connection()
        if getattr(self._local, "read_only", False):
            self._forget(conn)
            conn = self.connection()
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: takes the write lock up front, so reads inside it are current."""
        conn = self._writable_connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            self._forget(conn)
            raise StoreUnavailable("the admin store is busy or unavailable; try again") from err
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.OperationalError as err:
            # A full disk, a read-only file, an I/O error: SQLite may have rolled back already.
            _rollback(conn)
            # A connection opened while the file could not be written stays read-only for
            # good: this thread opens a fresh one next time, once the fault has passed.
            self._forget(conn)
            raise StoreUnavailable(
                "the admin store cannot be written (full, read-only or failing); "
                "nothing was recorded"
            ) from err
        except BaseException:
            _rollback(conn)
            raise

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self.connection()
        except sqlite3.OperationalError as err:
            raise StoreUnavailable("the admin store is busy or unavailable; try again") from err

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self.reading() as conn:
            return conn.execute(sql, params).fetchall()

    def _forget(self, conn: sqlite3.Connection) -> None:
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


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is left of a transaction (SQLite ends some on its own, e.g. when full)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rolling back a failed admin store transaction failed")


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
