"""Parquet files (a file or a folder, local or on cluster storage) read by Spark where they are."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection
from typing import Any

from lomas_server.datasets.sources.base import DatasetSource, RawRows
from lomas_server.errors import DatasetUnavailable, InvalidMetadata
from lomas_server.readable import SPARK


class SparkSource(DatasetSource):
    reads_as = SPARK
    """A Parquet dataset that Apache Spark reads where it lives (a local path, or any URI the
    Spark cluster reaches, such as hdfs:// or s3a://): for data past one machine.

    SQL queries run on Spark; only the OpenDP path reads the rows (into the cache). Column
    types must match the metadata's, as for PostgreSQL.
    """

    kind = "spark"
    in_place = True
    TYPES = {
        "int": ("ByteType", "ShortType", "IntegerType", "LongType"),
        "float": ("FloatType", "DoubleType", "ByteType", "ShortType", "IntegerType", "LongType"),
        "string": ("StringType",),
        "boolean": ("BooleanType",),
        "datetime": ("TimestampType", "TimestampNTZType", "DateType"),
    }

    def __init__(self, path: str, file_format: str | None = None) -> None:
        self.path = str(path)
        self.format = file_format or "parquet"
        if self.format != "parquet":
            raise InvalidMetadata("Spark datasets are Parquet (a file or a folder of files)")

    @property
    def local(self) -> bool:
        return "://" not in self.path or self.path.startswith("file://")

    def where(self) -> str:
        return f"Spark dataset {self.path}"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "format": self.format}

    def column_types(self) -> dict[str, str]:
        """The file's column types, in Spark's names (read from the Parquet schema only)."""
        if self.local:
            import pyarrow.parquet as pq

            path = self.path.removeprefix("file://")
            if not os.path.exists(path):
                raise DatasetUnavailable(f"{self.where()} does not exist")
            try:
                schema = (
                    pq.read_schema(path) if os.path.isfile(path) else pq.ParquetDataset(path).schema
                )
            except (OSError, ValueError) as err:
                raise DatasetUnavailable(f"{self.where()} is not readable Parquet") from err
            return {field.name: _spark_type_name(field.type) for field in schema}
        from lomas_server.spark_session import spark_session

        try:
            frame = spark_session().read.parquet(self.path)
        except Exception as err:
            raise DatasetUnavailable(f"{self.where()} cannot be read by Spark") from err
        return {field.name: type(field.dataType).__name__ for field in frame.schema.fields}

    def check_columns(self, columns: dict[str, str]) -> None:
        # Spark SQL resolves names without regard to case, and so does this check.
        found = {name.lower(): kind for name, kind in self.column_types().items()}
        for name, kind in columns.items():
            if name.lower() not in found:
                raise DatasetUnavailable(
                    f"{self.where()} has no column {name!r} declared in the metadata"
                )
            if found[name.lower()] not in self.TYPES[kind]:
                raise DatasetUnavailable(
                    f"column {name!r} of {self.where()} is {found[name.lower()]}, not a type for {kind}"
                )

    def count_rows(self, required: list[str]) -> tuple[int, int]:
        """How many rows the files hold, and how many lack a value in ``required``."""
        from lomas_server.spark_session import spark_session

        try:
            frame = spark_session().read.parquet(self.path)
            stored = {field.name.lower(): field.name for field in frame.schema.fields}
            total = frame.count()
            missing = 0
            if required:
                condition = " OR ".join(f"`{stored[name.lower()]}` IS NULL" for name in required)
                missing = frame.filter(condition).count()
        except Exception as err:
            raise DatasetUnavailable(f"{self.where()} cannot be read by Spark") from err
        return int(total), int(missing)

    def check_engine(self) -> None:
        """Start Spark now, so that a server without Java or a cluster that is down refuses
        the query before its budget is reserved rather than failing after."""
        from lomas_server.spark_session import spark_session

        try:
            spark_session()
        except Exception as err:
            raise DatasetUnavailable(f"Spark cannot start for {self.where()}: {err}") from err

    def version(self) -> str:
        if not self.local:
            # Listed through Spark's own file system, so the version follows the files on
            # any storage the cluster reads (and readers and the cache are kept between queries).
            from lomas_server.spark_session import file_listing

            try:
                parts = file_listing(self.path)
            except Exception as err:
                raise DatasetUnavailable(f"{self.where()} cannot be listed by Spark") from err
            if not parts:
                raise DatasetUnavailable(f"{self.where()} holds no files")
            return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
        path = self.path.removeprefix("file://")
        try:
            if os.path.isfile(path):
                stat = os.stat(path)
                return f"{stat.st_mtime_ns}:{stat.st_size}"
            # A folder of part files: any file added, removed or rewritten is a new version.
            parts = sorted(
                (entry.path, entry.stat().st_mtime_ns, entry.stat().st_size)
                for entry in _walk_files(path)
            )
        except OSError as err:
            raise DatasetUnavailable(f"{self.where()} does not exist") from err
        if not parts:
            raise DatasetUnavailable(f"{self.where()} holds no files")
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]

    def read_bytes(self) -> bytes:
        raise DatasetUnavailable("a Spark dataset is read by Spark, not as a file")

    def stream(self, columns: Collection[str] | None = None, *, strict: bool = False) -> RawRows:
        return RawRows.whole(self.load(columns, strict=strict), self.where(), self.format)

    def load(self, columns: Collection[str] | None = None, *, strict: bool = False) -> Any:
        if self.local:
            import pyarrow.parquet as pq

            return pq.read_table(self.path.removeprefix("file://"))
        import pyarrow as pa

        from lomas_server.spark_session import spark_session

        return pa.Table.from_pandas(
            spark_session().read.parquet(self.path).toPandas(), preserve_index=False
        )


def _walk_files(folder: str) -> list[os.DirEntry[str]]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(folder)
    found: list[os.DirEntry[str]] = []
    for entry in os.scandir(folder):
        if entry.is_dir():
            found.extend(_walk_files(entry.path))
        elif entry.is_file() and not entry.name.startswith((".", "_")):
            found.append(entry)
    return found


def _spark_type_name(arrow_type: Any) -> str:
    """How Spark names an Arrow (Parquet) type."""
    import pyarrow as pa

    checks = [
        (pa.types.is_int8, "ByteType"),
        (pa.types.is_int16, "ShortType"),
        (pa.types.is_int32, "IntegerType"),
        (pa.types.is_int64, "LongType"),
        (pa.types.is_float32, "FloatType"),
        (pa.types.is_float64, "DoubleType"),
        (pa.types.is_boolean, "BooleanType"),
        (pa.types.is_date, "DateType"),
        (pa.types.is_timestamp, "TimestampType"),
        (
            lambda t: (
                pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)
            ),
            "StringType",
        ),
    ]
    return next((name for check, name in checks if check(arrow_type)), str(arrow_type))
