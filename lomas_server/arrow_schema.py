"""A dataset's rows as Arrow: the schema its metadata gives, read alike by every engine.

Sources shape rows to it (datasets/conform.py); engines plan against an empty table of it and
read tables of it (DuckDB in place, Polars after decoding dictionary text).
"""

from __future__ import annotations

from typing import Any

from lomas_server.metadata import DatasetMetadata


def arrow_type(kind: str) -> Any:
    """The Arrow type of a metadata column type."""
    import pyarrow as pa

    return {
        "int": pa.int64(),
        "float": pa.float64(),
        "string": pa.string(),
        "boolean": pa.bool_(),
        "datetime": pa.timestamp("us"),
    }[kind]


def arrow_schema(metadata: DatasetMetadata) -> Any:
    """The Arrow schema of a dataset, from its metadata (the engines' common ground)."""
    import pyarrow as pa

    return pa.schema(
        [pa.field(name, arrow_type(spec.type)) for name, spec in metadata.columns.items()]
    )


def empty_arrow(metadata: DatasetMetadata) -> Any:
    """No rows, the dataset's schema: what engines plan against."""
    return arrow_schema(metadata).empty_table()


def plain_strings(table: Any) -> Any:
    """The same table with dictionary columns decoded (Polars would make them Categorical,
    which is not the type the OpenDP path plans with)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for index, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            decoded = pc.cast(table.column(index), field.type.value_type)
            table = table.set_column(index, field.name, decoded)
    return table
