"""How engines read a dataset's rows without knowing the classes of its sources.

Each source (datasets/) says how its rows are read with ``reads_as``; each engine picks its
reader by that name (engines/). Neither layer imports the other: both see these protocols.
"""

from __future__ import annotations

from typing import Any, Protocol

from lomas_server.metadata import DatasetMetadata

ARROW = "arrow"  # an Arrow table of the metadata's schema, in memory (the default)
PARQUET_SCAN = "parquet_scan"  # a Parquet file streamed at each query
POSTGRES = "postgres"  # a PostgreSQL table, queried where it is
SPARK = "spark"  # Parquet files read by Spark where they are


def reads_as(rows: Any) -> str:
    """How ``rows`` are read: an Arrow table, or what its source says."""
    return str(getattr(rows, "reads_as", ARROW))


class ScannedFile(Protocol):
    """A Parquet file read in streaming, under a view shaped like the metadata."""

    reads_as: str

    def register_in(self, connection: Any, name: str) -> None: ...

    def lazy_frame(self) -> Any: ...


class PostgresTable(Protocol):
    """A PostgreSQL table, read through a view shaped like the metadata."""

    reads_as: str

    def connect(self) -> Any: ...

    def rows_sql(self, metadata: DatasetMetadata) -> Any: ...


class SparkFiles(Protocol):
    """Parquet files (a file or a folder) that Spark reads where they are."""

    reads_as: str
    path: str
