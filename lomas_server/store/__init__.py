"""Admin store backends behind one interface, chosen by URL."""

from __future__ import annotations

from pathlib import Path

from lomas_server.errors import InvalidRequest
from lomas_server.store.base import AdminStore


def open_store(url: str) -> AdminStore:
    """Open the admin store named by ``url``.

    ``sqlite:///relative/path.sqlite`` or ``sqlite:////absolute/path.sqlite`` (SQLAlchemy's
    spelling), or a bare file path, select the embedded SQLite store; ``mongodb://...`` selects
    the MongoDB store.
    """
    if url.startswith("sqlite:///"):
        from lomas_server.store.sqlite import SqliteStore

        return SqliteStore(Path(url[len("sqlite:///") :]))
    if "://" not in url:
        from lomas_server.store.sqlite import SqliteStore

        return SqliteStore(Path(url))
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from lomas_server.store.mongo import MongoStore

        return MongoStore(url)
    scheme = url.split("://", 1)[0]
    raise InvalidRequest(
        f"unsupported admin store URL scheme {scheme!r}; use sqlite:///PATH or mongodb://HOST:PORT/DB"
    )


__all__ = ["AdminStore", "open_store"]
