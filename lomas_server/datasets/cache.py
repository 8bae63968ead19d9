"""A bounded in-memory cache of loaded datasets, least recently used out first.

Entries are keyed by dataset name and tagged with the source's version token, so a changed
file is reloaded on the next query. One loader per dataset at a time: concurrent first
queries wait for one load instead of reading the file many times over.

Datasets whose rows would take more than ``scan_above_bytes`` are not meant to be loaded at
all when they can be scanned in place (Parquet, see ``parquet_scan``); the cache only states
that limit, the service decides per dataset.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from lomas_server.datasets.sources import DatasetSource


@dataclass(frozen=True)
class CachedFrame:
    version: str
    frame: Any  # what ``prepare`` made of the rows: an Arrow table in the server
    nbytes: int


class DatasetCache:
    def __init__(self, max_bytes: int, scan_above_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        # Half the cache by default: one big dataset must not push every other one out.
        self.scan_above_bytes = max_bytes // 2 if scan_above_bytes is None else scan_above_bytes
        self._entries: OrderedDict[str, CachedFrame] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.loads = 0  # how many times data was actually read (for tests and benchmarks)

    def get(
        self,
        name: str,
        source: DatasetSource,
        prepare: Callable[[Any], Any],
        *,
        version: str | None = None,
        columns: Collection[str] | None = None,
    ) -> CachedFrame:
        """The prepared rows of ``source``, read again only when its version has changed.

        ``prepare`` is given the rows as read a part at a time (``DatasetSource.stream``), so
        that it need not hold the whole raw file beside what it makes of it. ``version`` is
        the source's version if the caller already asked for it; ``columns`` the only ones
        ``prepare`` needs (others are not read).
        """
        version = version if version is not None else source.version()
        hit = self._lookup(name, version)
        if hit is not None:
            return hit
        with self._lock:
            key_lock = self._loading.setdefault(name, threading.Lock())
        with key_lock:
            hit = self._lookup(name, version)
            if hit is not None:
                return hit
            frame = prepare(source.stream(columns))
            self.loads += 1
            entry = CachedFrame(version, frame, _size(frame))
            self._store(name, entry)
            return entry

    def should_scan(self, nbytes: int) -> bool:
        """Whether rows of this decoded size are better read in place than kept loaded."""
        return nbytes > self.scan_above_bytes

    def invalidate(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(entry.nbytes for entry in self._entries.values())

    def _lookup(self, name: str, version: str) -> CachedFrame | None:
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry.version != version:
                return None
            self._entries.move_to_end(name)
            return entry

    def _store(self, name: str, entry: CachedFrame) -> None:
        with self._lock:
            self._entries[name] = entry
            self._entries.move_to_end(name)
            total = sum(e.nbytes for e in self._entries.values())
            # Keep at least the entry just loaded: a query needs it even if it alone is too big.
            while total > self.max_bytes and len(self._entries) > 1:
                _, evicted = self._entries.popitem(last=False)
                total -= evicted.nbytes


def _size(frame: Any) -> int:
    if hasattr(frame, "nbytes"):  # Arrow tables (and numpy-backed objects)
        return int(frame.nbytes)
    return int(frame.memory_usage(deep=True).sum())
