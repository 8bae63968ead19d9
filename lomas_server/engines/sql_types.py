"""The type of each operand the guard compares: a column's by its metadata, a literal's by
its value (with a bound on the size of numbers)."""

from __future__ import annotations

import math

from lomas_server.engines.snsql_adapter import Literal
from lomas_server.errors import InvalidQuery
from lomas_server.metadata import ColumnSpec

NUMERIC, STRING, BOOLEAN, DATETIME, NULL = "numeric", "string", "boolean", "datetime", "null"
MAX_LITERAL = 1e15  # magnitude of any numeric literal


def spec_type(spec: ColumnSpec) -> str:
    return {"int": NUMERIC, "float": NUMERIC, "string": STRING, "boolean": BOOLEAN}.get(
        spec.type, DATETIME
    )


def literal_type(node: Literal) -> str:
    value = node.value
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, (int, float)):
        # Compare before any conversion: a long integer literal does not fit a float.
        if abs(value) > MAX_LITERAL or not math.isfinite(value):
            raise InvalidQuery(f"number {node.text} is out of range (at most {MAX_LITERAL:g})")
        return NUMERIC
    if isinstance(value, str):
        return STRING
    raise InvalidQuery(f"literal {node.text} is not supported")
