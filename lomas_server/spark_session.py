"""The process's one Spark session, and Spark's view of a dataset's files.

Shared by the Spark source (which checks a dataset's columns and lists its files) and the
Spark reader (which runs SmartNoise-SQL's exact aggregates): neither imports the other.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_session: Any = None
_session_lock = threading.Lock()


def spark_session() -> Any:
    global _session
    with _session_lock:
        if _session is None:
            from pyspark.sql import SparkSession

            _session = (
                SparkSession.builder.master(os.environ.get("LOMAS_SPARK_MASTER", "local[*]"))
                .appName("lomas-jupyter")
                .config("spark.ui.enabled", "false")
                .config(
                    "spark.sql.shuffle.partitions", os.environ.get("LOMAS_SPARK_PARTITIONS", "8")
                )
                .config("spark.driver.bindAddress", "127.0.0.1")
                # No per-row failures: overflows and bad casts give NULL instead of an error,
                # and old dates are read as written (proleptic calendar) instead of refused.
                .config("spark.sql.ansi.enabled", "false")
                .config("spark.sql.parquet.datetimeRebaseModeInRead", "CORRECTED")
                .config("spark.sql.parquet.int96RebaseModeInRead", "CORRECTED")
                .getOrCreate()
            )
            _session.sparkContext.setLogLevel("ERROR")
        return _session


def file_listing(path: str) -> list[tuple[str, int, int]]:
    """Every data file under ``path`` as Spark's own file system sees it (HDFS, S3A, ...):
    (path, length, modification time), sorted. Names starting with ``_`` or ``.`` (markers,
    checksums) are skipped, as Spark skips them when reading."""
    session = spark_session()
    hadoop_path = session._jvm.org.apache.hadoop.fs.Path(path)
    filesystem = hadoop_path.getFileSystem(session._jsc.hadoopConfiguration())
    files = filesystem.listFiles(hadoop_path, True)
    found = []
    while files.hasNext():
        status = files.next()
        if status.getPath().getName().startswith(("_", ".")):
            continue
        found.append((status.getPath().toString(), status.getLen(), status.getModificationTime()))
    return sorted(found)
