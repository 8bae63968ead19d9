"""The OpenDP query language: a small JSON description, checked against the metadata.

This is all a client can say to the OpenDP engine. It is data, never code: there is no way to
send a serialized pipeline, a Polars plan, a function or a bound. The server builds the
OpenDP measurement itself from this description and the admin's metadata
(engines/opendp_engine.py).

    {"filters":    [{"column": "island", "op": "==", "value": "Dream"}],
     "group_by":   ["species"],
     "aggregates": [{"op": "count"},
                    {"op": "mean", "column": "bill_length_mm", "as": "bill"},
                    {"op": "quantile", "column": "body_mass_g", "q": 0.9}]}

Aggregates: count (rows, or non-null values of a column), sum, mean, variance,
quantile (q in (0, 1)), median, histogram (counts per value of one column).
Filters: ==, !=, <, <=, >, >= against a value of the column's type (in the one format
literals.py accepts for it; dates as 'YYYY-MM-DD'), "in" a list of values, "is_null",
"is_not_null"; all filters must hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lomas_server.errors import InvalidQuery
from lomas_server.literals import datetime_text, typed_value
from lomas_server.metadata import ColumnSpec, DatasetMetadata

NEEDS_BOUNDS = ("sum", "mean", "variance", "quantile", "median")
SUMS = ("sum", "mean", "variance")  # what a boolean's number (DatasetMetadata.summed) may feed
GROUPABLE = ("string", "int", "boolean")
MAX_IN_VALUES = 1000
MAX_NAME = 64


@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class Aggregate:
    op: str
    column: str | None
    name: str
    q: float | None = None


@dataclass(frozen=True)
class OpenDPQuery:
    filters: tuple[Filter, ...]
    group_by: tuple[str, ...]
    aggregates: tuple[Aggregate, ...]

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The columns whose values key the released rows: the group_by, or a histogram's."""
        first = self.aggregates[0]
        if first.op == "histogram" and first.column is not None:
            return (first.column,)
        return self.group_by

    def describe(self) -> str:
        """A one-line reading of the query, for archives and histories."""
        parts = []
        for a in self.aggregates:
            inner = a.column or "*"
            parts.append(f"{a.op}({inner}{', q=' + format(a.q, 'g') if a.q is not None else ''})")
        text = ", ".join(parts)
        if self.group_by:
            text += " by " + ", ".join(self.group_by)
        if self.filters:
            text += " where " + " and ".join(_describe_filter(f) for f in self.filters)
        return text

    def as_dict(self) -> dict[str, Any]:
        """The canonical form: the same query always gives the same document."""
        return {
            "filters": [
                {
                    "column": f.column,
                    "op": f.op,
                    **(
                        {"value": _json_value(f.value)}
                        if f.op not in ("is_null", "is_not_null")
                        else {}
                    ),
                }
                for f in self.filters
            ],
            "group_by": list(self.group_by),
            "aggregates": [
                {
                    "op": a.op,
                    **({"column": a.column} if a.column else {}),
                    "as": a.name,
                    **({"q": a.q} if a.q is not None else {}),
                }
                for a in self.aggregates
            ],
        }


def parse_opendp_query(document: dict[str, Any], metadata: DatasetMetadata) -> OpenDPQuery:
    """The query, checked against the metadata. Its shape (fields, operators, list sizes,
    output names) was checked against the API contract (api.yaml, ``OpenDPQuery``) first."""
    filters = tuple(_filter(item, metadata) for item in document.get("filters", []))
    group_by = tuple(_group_column(item, metadata) for item in document.get("group_by", []))
    if len(set(group_by)) != len(group_by):
        raise InvalidQuery("a column appears twice in 'group_by'")
    aggregates = tuple(_aggregate(item, metadata) for item in document["aggregates"])
    if any(a.op == "histogram" for a in aggregates) and (len(aggregates) > 1 or group_by):
        raise InvalidQuery(
            "a histogram is a query of its own: no other aggregates and no 'group_by'"
        )
    names = [a.name for a in aggregates] + list(group_by)
    names += [a.column for a in aggregates if a.op == "histogram" and a.column is not None]
    if len(set(names)) != len(names):
        raise InvalidQuery(
            "two outputs have the same name; give one of them another name with 'as'"
        )
    return OpenDPQuery(filters, group_by, aggregates)


def _column(name: str, metadata: DatasetMetadata) -> ColumnSpec:
    spec = metadata.columns.get(name)
    if spec is None:
        raise InvalidQuery(f"unknown column {_short(name)!r}")
    return spec


def _group_column(name: str, metadata: DatasetMetadata) -> str:
    spec = _column(name, metadata)
    if spec.type not in GROUPABLE:
        raise InvalidQuery(
            f"cannot group by {spec.name!r}: only string, int and boolean columns group"
        )
    return spec.name


def _filter(item: dict[str, Any], metadata: DatasetMetadata) -> Filter:
    spec = _column(item["column"], metadata)
    op = item["op"]
    if op in ("is_null", "is_not_null"):
        if "value" in item:
            raise InvalidQuery(f"'{op}' takes no value")
        return Filter(spec.name, op)
    if "value" not in item:
        raise InvalidQuery(f"the filter on {spec.name!r} needs a 'value'")
    value = item["value"]
    if op == "in":
        if not isinstance(value, list) or not value or len(value) > MAX_IN_VALUES:
            raise InvalidQuery(f"'in' takes a list of 1 to {MAX_IN_VALUES} values")
        return Filter(spec.name, op, tuple(typed_value(v, spec) for v in value))
    if op in ("<", "<=", ">", ">=") and spec.type not in ("int", "float", "datetime"):
        raise InvalidQuery(f"'{op}' compares numbers or dates; {spec.name!r} is {spec.type}")
    return Filter(spec.name, op, typed_value(value, spec))


def _aggregate(item: dict[str, Any], metadata: DatasetMetadata) -> Aggregate:
    op = item["op"]
    column = item.get("column")
    if column is None and op != "count":
        raise InvalidQuery(f"'{op}' needs a 'column'")
    spec = _column(column, metadata) if column is not None else None
    if spec is not None and op in SUMS:
        # A boolean adds up as true 1, false 0: its mean is a share (a survival rate).
        if not metadata.summed(spec).is_numeric:
            raise InvalidQuery(
                f"'{op}' needs a numeric or boolean column; {spec.name!r} is {spec.type}"
            )
    elif spec is not None and op in NEEDS_BOUNDS and not spec.is_numeric:
        raise InvalidQuery(f"'{op}' needs a numeric column; {spec.name!r} is {spec.type}")
    if spec is not None and op in NEEDS_BOUNDS:
        if not metadata.summed(spec).is_bounded:
            raise InvalidQuery(
                f"column {spec.name!r} has no bounds in the metadata: it can be counted but not used in '{op}'"
            )
    if op == "histogram" and spec is not None and spec.type not in GROUPABLE:
        raise InvalidQuery(
            f"a histogram needs a string, int or boolean column; {spec.name!r} is {spec.type}"
        )
    q = item.get("q")
    if op == "quantile":
        if q is None:
            raise InvalidQuery("'quantile' needs 'q' between 0 and 1 (exclusive)")
        q = float(q)
    elif q is not None:
        raise InvalidQuery(f"'q' only applies to 'quantile', not '{op}'")
    name = item.get("as") or _default_name(op, spec.name if spec else None, q)
    if "__" in name or len(name) > MAX_NAME:
        # Names with "__" are the server's (a statistic's noisy parts are NAME__n, ...).
        raise InvalidQuery(
            f"the output name {_short(name)!r} is not allowed (it holds '__' or is longer than "
            f"{MAX_NAME} characters); give the aggregate another name with 'as'"
        )
    return Aggregate(op, spec.name if spec else None, name, q)


def _default_name(op: str, column: str | None, q: float | None) -> str:
    if op == "histogram":
        return "count"
    if column is None:
        return op
    if op == "quantile":
        return f"quantile_{format(q, 'g').replace('.', '_')}_{column}"
    return f"{op}_{column}"


def _describe_filter(f: Filter) -> str:
    if f.op in ("is_null", "is_not_null"):
        return f"{f.column} {f.op.replace('_', ' ')}"
    return f"{f.column} {f.op} {_json_value(f.value)!r}"


def _json_value(value: Any) -> Any:
    """A typed filter value as JSON holds it: timestamps in their canonical text."""
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, datetime):
        return datetime_text(value)
    return value


def _short(text: str) -> str:
    """What the request said, cut short: a message quotes it, never at any length."""
    return text if len(text) <= 60 else text[:57] + "..."
