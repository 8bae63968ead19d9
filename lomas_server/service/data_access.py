"""Where a query's rows are, made ready before anything is spent."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from lomas_server.datasets import DatasetCache, conformed_table
from lomas_server.datasets.parquet_scan import ScanPlans, scannable
from lomas_server.datasets.sources import DatasetSource
from lomas_server.errors import DatasetUnavailable
from lomas_server.service.context import DatasetContext
from lomas_server.store.base import DatasetRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reachable:
    """Where a query's rows are: in place at the source (``frame`` None), a ParquetScan, or
    the conformed Arrow table from the cache."""

    version: str
    source: DatasetSource
    frame: Any


class DataAccess:
    """The loaded tables (kept between queries) and the scan plans of large Parquet files."""

    def __init__(self, cache: DatasetCache) -> None:
        self.cache = cache
        self.scans = ScanPlans()

    def reachable(self, ctx: DatasetContext, *, in_place: bool) -> Reachable:
        """The rows a query will read, ready before anything is spent.

        A dataset that is missing, forbidden or offline, or whose data does not fit its
        metadata as a whole (a declared column missing, more rows than its ``rows``), costs
        the analyst nothing. Single rows never make it fail: they are shaped to the metadata
        on the way in (datasets/conform.py). Loading happens here, before the reservation,
        so that after it only the engine's own run is left.

        ``in_place``: the engine can run where the data lives (SQL on PostgreSQL or Spark).
        """
        record, metadata = ctx.record, ctx.metadata
        try:
            source = ctx.source
            if source.in_place:
                columns = {name: spec.type for name, spec in metadata.columns.items()}
                source.check_columns(columns)  # types that would need a cast mean no query
                if in_place:
                    source.check_engine()
            version = source.version()
            if in_place and source.in_place:
                return Reachable(version, source, None)
            if scannable(source):
                # The file's footer says whether it can be scanned and whether it fits the
                # metadata: a file that cannot serve the query costs nothing.
                scan = self.scans.get(record.name, _scan_key(record, version), source, metadata)
                if scan is not None and self.cache.should_scan(scan.nbytes):
                    # Too big to keep loaded: each query streams the file.
                    return Reachable(version, source, scan)
            cached = self.cache.get(
                record.name,
                source,
                # One columnar copy, kept between queries, read in place by DuckDB and Polars.
                lambda raw: conformed_table(raw, metadata),
                version=version,
                columns=list(metadata.columns),
            )
            return Reachable(cached.version, source, cached.frame)
        except DatasetUnavailable as err:
            log.warning("dataset %s is unavailable: %s", record.name, err.message)
            raise DatasetUnavailable(
                f"dataset {record.name!r} cannot be read right now; nothing was spent. "
                "The administrator can find the cause in the server log."
            ) from err


def _scan_key(record: DatasetRecord, version: str) -> str:
    """What a scan plan depends on: the file version, where it is and the metadata."""
    described = json.dumps([record.source, record.metadata], sort_keys=True, default=str)
    return f"{version}:{hashlib.sha256(described.encode()).hexdigest()}"
