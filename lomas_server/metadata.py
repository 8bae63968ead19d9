"""The admin's description of a dataset: columns, types, bounds and contribution limits.

This is lomas's metadata format (a SmartNoise-SQL table description with its columns under a
``columns`` key). It is the only source of bounds, categories and contribution limits: nothing
in a request can change them. Validation here is strict because every DP guarantee downstream
rests on it.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from lomas_server.errors import InvalidMetadata

COLUMN_TYPES = ("int", "float", "string", "boolean", "datetime")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Table-level options understood by SmartNoise-SQL; they cannot double as column names.
TABLE_OPTIONS = (
    "max_ids",
    "row_privacy",
    "censor_dims",
    "rows",
    "rows_exact",
    "sample_max_ids",
    "clamp_counts",
    "clamp_columns",
    "use_dpsu",
)
_BOOL_OPTIONS = (
    "row_privacy",
    "censor_dims",
    "sample_max_ids",
    "clamp_counts",
    "clamp_columns",
    "use_dpsu",
)
_COLUMN_KEYS = (
    "type",
    "lower",
    "upper",
    "nullable",
    "cardinality",
    "categories",
    "precision",
    "private_id",
    "missing_value",
    "sensitivity",
    "public_keys",
)


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str
    lower: float | int | str | None = None
    upper: float | int | str | None = None
    nullable: bool = True
    categories: tuple[Any, ...] | None = None
    private_id: bool = False
    # The admin declares that which values occur in this column is public: grouping by it
    # then releases every category without thresholding (OpenDP path).
    public_keys: bool = False
    cardinality: int | None = None  # how many distinct values at most (public)

    @property
    def distinct_values(self) -> int | None:
        """An upper bound on the number of distinct values, when the metadata gives one."""
        if self.type == "boolean":
            return 2
        if self.categories is not None:
            return len(self.categories)
        return self.cardinality

    @property
    def is_numeric(self) -> bool:
        return self.type in ("int", "float")

    @property
    def is_bounded(self) -> bool:
        return self.lower is not None and self.upper is not None


@dataclass(frozen=True)
class DatasetMetadata:
    """Validated metadata plus the original document (kept verbatim for the public view)."""

    columns: dict[str, ColumnSpec]
    max_ids: int
    row_privacy: bool
    censor_dims: bool
    rows: int | None
    document: dict[str, Any] = field(repr=False)

    @classmethod
    def from_dict(cls, document: Any) -> DatasetMetadata:
        if not isinstance(document, dict):
            raise InvalidMetadata("metadata must be a mapping with a 'columns' section")
        unknown = set(document) - set(TABLE_OPTIONS) - {"columns"}
        if unknown:
            raise InvalidMetadata(f"unknown metadata keys: {', '.join(sorted(map(str, unknown)))}")
        columns_doc = document.get("columns")
        if not isinstance(columns_doc, dict) or not columns_doc:
            raise InvalidMetadata("metadata needs a non-empty 'columns' mapping")
        columns = {name: _parse_column(name, spec) for name, spec in columns_doc.items()}
        lowered = [name.lower() for name in columns]
        if len(set(lowered)) != len(lowered):
            raise InvalidMetadata("column names must differ in more than letter case")
        for option in _BOOL_OPTIONS:
            if option in document and not isinstance(document[option], bool):
                raise InvalidMetadata(f"'{option}' must be true or false")
        max_ids = document.get("max_ids", 1)
        if isinstance(max_ids, bool) or not isinstance(max_ids, int) or max_ids < 1:
            raise InvalidMetadata("'max_ids' must be a positive integer")
        rows = document.get("rows")
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
            raise InvalidMetadata("'rows' must be a non-negative integer")
        row_privacy = bool(document.get("row_privacy", False))
        if not row_privacy and not any(c.private_id for c in columns.values()):
            raise InvalidMetadata(
                "metadata must either set 'row_privacy: true' or mark a column 'private_id: true'"
            )
        return cls(
            columns=columns,
            max_ids=max_ids,
            row_privacy=row_privacy,
            censor_dims=bool(document.get("censor_dims", True)),
            rows=rows,
            document=_jsonable(document),
        )

    def column(self, name: str) -> ColumnSpec | None:
        """Look a column up the way SQL does for unquoted names: ignoring letter case."""
        found = self.columns.get(name)
        if found is not None:
            return found
        lowered = name.lower()
        for column in self.columns.values():
            if column.name.lower() == lowered:
                return column
        return None

    def public_view(self) -> dict[str, Any]:
        """What analysts may see: the admin's document, which holds no data values."""
        return copy.deepcopy(self.document)

    def smartnoise_table(self) -> dict[str, Any]:
        """The table description in SmartNoise-SQL's own layout (options and columns side by side)."""
        table: dict[str, Any] = {
            key: self.document[key] for key in TABLE_OPTIONS if key in self.document
        }
        table["max_ids"] = self.max_ids
        table["row_privacy"] = self.row_privacy
        table["censor_dims"] = self.censor_dims
        for name, spec in self.columns.items():
            column: dict[str, Any] = {"type": spec.type, "nullable": spec.nullable}
            if spec.is_numeric and spec.lower is not None:
                column["lower"] = spec.lower
            if spec.is_numeric and spec.upper is not None:
                column["upper"] = spec.upper
            if spec.private_id:
                column["private_id"] = True
            source = self.document["columns"][name]
            for key in ("cardinality", "missing_value", "sensitivity"):
                if key in source:
                    column[key] = source[key]
            table[name] = column
        return table


def _parse_column(name: Any, spec: Any) -> ColumnSpec:
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise InvalidMetadata(
            f"column name {name!r} must be a plain identifier (letters, digits, underscore)"
        )
    if name.lower() in TABLE_OPTIONS:
        raise InvalidMetadata(f"column name {name!r} clashes with a table option")
    if not isinstance(spec, dict):
        raise InvalidMetadata(f"column {name!r} must be a mapping")
    unknown = set(spec) - set(_COLUMN_KEYS)
    if unknown:
        raise InvalidMetadata(
            f"column {name!r} has unknown keys: {', '.join(sorted(map(str, unknown)))}"
        )
    ctype = spec.get("type")
    if ctype not in COLUMN_TYPES:
        raise InvalidMetadata(
            f"column {name!r} has type {ctype!r}; expected one of {', '.join(COLUMN_TYPES)}"
        )
    lower, upper = spec.get("lower"), spec.get("upper")
    if ctype in ("int", "float"):
        lower, upper = _numeric_bounds(name, ctype, lower, upper)
    elif ctype == "datetime":
        lower, upper = _date_bounds(name, lower, upper)
    elif lower is not None or upper is not None:
        raise InvalidMetadata(f"column {name!r} of type {ctype} cannot have bounds")
    categories = spec.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or not categories:
            raise InvalidMetadata(f"column {name!r}: 'categories' must be a non-empty list")
        categories = tuple(categories)
    nullable = spec.get("nullable", True)
    private_id = spec.get("private_id", False)
    public_keys = spec.get("public_keys", False)
    if not all(isinstance(flag, bool) for flag in (nullable, private_id, public_keys)):
        raise InvalidMetadata(
            f"column {name!r}: 'nullable', 'private_id' and 'public_keys' must be true or false"
        )
    if public_keys and categories is None and ctype != "boolean":
        raise InvalidMetadata(
            f"column {name!r}: 'public_keys' needs the 'categories' that are public"
        )
    return ColumnSpec(name, ctype, lower, upper, nullable, categories, private_id, public_keys)


def _numeric_bounds(name: str, ctype: str, lower: Any, upper: Any) -> tuple[Any, Any]:
    if (lower is None) != (upper is None):
        raise InvalidMetadata(f"column {name!r} needs both 'lower' and 'upper', or neither")
    if lower is None:
        return None, None
    for bound in (lower, upper):
        if (
            isinstance(bound, bool)
            or not isinstance(bound, (int, float))
            or not math.isfinite(bound)
        ):
            raise InvalidMetadata(f"column {name!r}: bounds must be finite numbers")
    if ctype == "int" and (lower != int(lower) or upper != int(upper)):
        raise InvalidMetadata(f"column {name!r}: an int column needs whole-number bounds")
    if lower > upper:
        raise InvalidMetadata(f"column {name!r}: 'lower' is above 'upper'")
    if ctype == "int":
        return int(lower), int(upper)
    return float(lower), float(upper)


def _date_bounds(name: str, lower: Any, upper: Any) -> tuple[Any, Any]:
    def parse(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, (date, datetime)):
            return value.isoformat()
        try:
            return datetime.fromisoformat(str(value)).isoformat()
        except ValueError as err:
            raise InvalidMetadata(f"column {name!r}: bound {value!r} is not an ISO date") from err

    return parse(lower), parse(upper)


def _jsonable(value: Any) -> Any:
    """A deep copy that JSON can hold: YAML dates become ISO strings."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value
