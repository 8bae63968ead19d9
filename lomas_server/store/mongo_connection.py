"""Reaching the MongoDB-wire admin database: the client, the set-up done by the first call
that reaches it (schema version, indexes), and database failures turned into StoreUnavailable.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

from lomas_server.errors import StoreUnavailable
from lomas_server.store.base import utc_now
from lomas_server.store.rules import newer_schema

# 2: budget requests and their decisions (two new collections; nothing earlier changes).
SCHEMA_VERSION = 2
F = TypeVar("F", bound=Callable[..., Any])


class MongoConnection:
    def __init__(self, url: str, *, timeout_ms: int) -> None:
        from pymongo import MongoClient

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

    def ensure_ready(self) -> None:
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
                raise newer_schema("the admin database", info["version"], SCHEMA_VERSION)
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
            self.db.budget_requests.create_index([("id", ASCENDING)], unique=True)
            self.db.budget_requests.create_index(
                [("user", ASCENDING), ("dataset", ASCENDING), ("number", DESCENDING)]
            )
            if info is not None and int(info["version"]) < SCHEMA_VERSION:
                # Earlier versions only lack collections, made above: mark the upgrade done
                # (never lowering a version a newer server set meanwhile).
                self.db.store_info.update_one(
                    {"_id": "schema", "version": {"$lt": SCHEMA_VERSION}},
                    {"$set": {"version": SCHEMA_VERSION}},
                )
            self._ready = True

    def schema_version(self) -> int:
        self.ensure_ready()
        info = self.db.store_info.find_one({"_id": "schema"})
        if info is None:
            raise StoreUnavailable("the admin database has no schema version")
        return int(info["version"])

    def ping(self) -> None:
        import pymongo

        with pymongo.timeout(1.0):  # a health check answers quickly, up or down
            self.client.admin.command("ping")

    def close(self) -> None:
        self.client.close()


class _Connected(Protocol):
    connection: MongoConnection


def unavailable_on_errors(method: F) -> F:
    """Set the database up on the first call, and make its failures StoreUnavailable (a 503)."""

    @functools.wraps(method)
    def wrapper(self: _Connected, *args: Any, **kwargs: Any) -> Any:
        from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

        try:
            self.connection.ensure_ready()
            return method(self, *args, **kwargs)
        except ConnectionFailure as err:
            raise StoreUnavailable("the admin database cannot be reached; try again later") from err
        except OperationFailure as err:
            raise StoreUnavailable(f"the admin database refused an operation ({err.code})") from err
        except PyMongoError as err:
            raise StoreUnavailable("the admin database failed; nothing was recorded") from err

    return wrapper  # type: ignore[return-value]
