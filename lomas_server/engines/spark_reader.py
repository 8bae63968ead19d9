"""A SmartNoise-SQL reader that runs the exact-aggregation SQL on Apache Spark.

For datasets past one machine: Spark reads the Parquet where it lives and computes the exact
aggregates (clamping and reservoir sampling included, in SmartNoise-SQL's Spark dialect); only
those few rows come back, and the noise is added here as for every other engine. The Spark
session is made once per process, local by default (``LOMAS_SPARK_MASTER``, e.g.
``spark://host:7077``, points it at a cluster).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from typing import Any

from lomas_server.engines.duckdb_reader import TABLE
from lomas_server.engines.engine_thread import interruptible
from lomas_server.engines.snsql_adapter import Engine, Identifier, SqlReader, Table
from lomas_server.metadata import DatasetMetadata
from lomas_server.readable import SparkFiles
from lomas_server.spark_session import spark_session

_view_numbers = itertools.count(1)


class SparkTableReader(SqlReader):
    ENGINE = Engine.SPARK

    def __init__(self, source: SparkFiles, metadata: DatasetMetadata) -> None:
        super().__init__(self.ENGINE)
        self.source = source
        # One view per reader: closing a reader must not drop a view another reader uses.
        self.view = (
            f"lomas_{next(_view_numbers)}_{hashlib.sha256(source.path.encode()).hexdigest()[:8]}"
        )
        rows_as_described(
            spark_session().read.parquet(source.path), metadata
        ).createOrReplaceTempView(self.view)

    def execute(self, query: str, *ignore: Any, accuracy: bool = False) -> list[tuple[Any, ...]]:
        session = spark_session()
        frame = session.sql(query)
        with interruptible(session.sparkContext.cancelAllJobs):
            rows = frame.collect()
        return [tuple(frame.columns), *[tuple(row) for row in rows]]

    def _execute_ast(self, query: Any, *ignore: Any, accuracy: bool = False) -> Any:
        query = copy.deepcopy(query)
        for table in query.find_nodes(Table):
            if str(table.name).lower() == TABLE:
                table.name = Identifier(self.view)
                if table.alias is None:
                    # Spark's parser reads ``view WHERE (flag)`` as the view aliased WHERE with
                    # a column list: an explicit alias leaves WHERE a keyword.
                    table.alias = Identifier(TABLE)
        return super()._execute_ast(query, accuracy=accuracy)

    def close(self) -> None:
        spark_session().catalog.dropTempView(self.view)


def rows_as_described(frame: Any, metadata: DatasetMetadata) -> Any:
    """The Parquet rows as their metadata describes them, as on every engine: the metadata's
    columns by name (Spark resolves names without regard to case), NaN as missing, rows
    without a person id or a required value left out; booleans also as numbers
    (``DatasetMetadata.booleans_as_numbers``)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, FloatType

    stored = {field.name.lower(): field for field in frame.schema.fields}
    selected = []
    for name, spec in metadata.columns.items():
        field = stored[name.lower()]
        column = F.col(f"`{field.name}`")
        if spec.type == "float" and isinstance(field.dataType, (DoubleType, FloatType)):
            column = F.when(F.isnan(column), F.lit(None)).otherwise(column)
        selected.append(column.alias(name))
    frame = frame.select(*selected)
    for name in metadata.required_columns:
        frame = frame.filter(F.col(f"`{name}`").isNotNull())
    for boolean, number in metadata.booleans_as_numbers.items():
        frame = frame.withColumn(number.name, F.col(f"`{boolean}`").cast("int"))
    return frame
