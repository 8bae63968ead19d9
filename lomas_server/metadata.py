"""The admin's description of a dataset: columns, types, bounds and contribution limits.

This is lomas's metadata format (a SmartNoise-SQL table description with its columns under a
``columns`` key). It is the only source of bounds, categories and contribution limits: nothing
in a request can change them. Validation here is strict because every DP guarantee downstream
rests on it.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Any

from lomas_server.column_spec import ColumnSpec, parse_column, safe_missing_value
from lomas_server.errors import InvalidMetadata, InvalidQuery

__all__ = ["MAX_GRID", "TABLE_OPTIONS", "WEAKENING_TABLE_OPTIONS", "ColumnSpec", "DatasetMetadata"]

MAX_GRID = 100_000  # declared groups one release may show

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
# Table options SmartNoise-SQL understands that would weaken the guarantee unless they have
# their safe value: (the safe value, why another one is refused). The engines always use the
# safe value; add-dataset refuses another; import-lomas removes it.
WEAKENING_TABLE_OPTIONS = {
    "censor_dims": (
        True,
        "would release group keys read from the data; remove it and declare the public "
        "values of a column with 'categories' and 'public_keys: true' (other groups are shown "
        "only above a DP threshold)",
    ),
    "clamp_columns": (
        True,
        "would let values outside a column's bounds into sums; remove it (values are always "
        "clamped to their bounds)",
    ),
    "sample_max_ids": (
        True,
        "would let one person contribute more than 'max_ids' rows; remove it",
    ),
    "use_dpsu": (False, "is not supported; remove it"),
}


@dataclass(frozen=True)
class DatasetMetadata:
    """Validated metadata plus the original document (kept verbatim for the public view)."""

    columns: dict[str, ColumnSpec]
    max_ids: int
    row_privacy: bool
    rows: int | None
    document: dict[str, Any] = field(repr=False)

    @property
    def id_column(self) -> str | None:
        """The column naming each row's person; None when each row is a person (row privacy)."""
        if self.row_privacy:
            return None
        return next((c.name for c in self.columns.values() if c.private_id), None)

    @property
    def required_columns(self) -> list[str]:
        """Columns a row cannot lack: the person's id, and those declared not nullable.

        A row without one does not fit the metadata; every engine leaves it out (a filter on
        each row, which changes no one else's contribution) rather than fail on it.
        """
        person = self.id_column
        return [c.name for c in self.columns.values() if c.name == person or not c.nullable]

    def key_grid(self, columns: list[str]) -> list[tuple[Any, ...]] | None:
        """Every combination of the declared public values of ``columns``, in declared order;
        None when one of them has no public values (its groups are then thresholded)."""
        values = [self.columns[name].public_values for name in columns]
        grid = [v for v in values if v is not None]
        if not columns or len(grid) < len(values):
            return None
        size = math.prod(len(v) for v in grid)
        if size > MAX_GRID:
            raise InvalidQuery(
                f"grouping by {', '.join(columns)} would show {size} declared groups; "
                f"at most {MAX_GRID} can be released at once"
            )
        return list(itertools.product(*grid))

    def threshold_needs_delta(self, columns: list[str]) -> InvalidQuery:
        """The refusal of a grouped query without delta whose keys are not all public (the
        rule of docs/SECURITY.md, worded once for both engines)."""
        hidden = [c for c in columns if self.columns[c].public_values is None]
        return InvalidQuery(
            f"the values of {', '.join(map(repr, hidden))} are not declared public, so groups "
            "are shown only when their noisy count passes a threshold, which needs 'delta' "
            "above 0: leave 'delta' out and the server chooses one, or give one (e.g. 1e-6); "
            "or the administrator can declare the column's 'categories' with "
            "'public_keys: true'"
        )

    def weakening_options(self) -> list[str]:
        """Options that would weaken the guarantee, each with what to do instead.

        The engines never use them (``smartnoise_table`` writes the safe value), so metadata
        stored before they were refused still works; adding or importing a dataset refuses
        them so that the admin's document says what really happens.
        """
        doc = self.document
        found = [
            f"'{option}: {str(doc[option]).lower()}' {why}"
            for option, (safe, why) in WEAKENING_TABLE_OPTIONS.items()
            if option in doc and doc[option] is not safe
        ]
        ids = [c.name for c in self.columns.values() if c.private_id]
        if len(ids) > 1:
            found.append(f"only one column can be 'private_id' (found {', '.join(ids)})")
        if ids and self.row_privacy:
            found.append(
                f"'row_privacy: true' counts each row as a person, but column {ids[0]!r} is "
                "marked 'private_id': keep one of the two"
            )
        for name, source in doc["columns"].items():
            if "sensitivity" in source:
                found.append(
                    f"column {name!r}: 'sensitivity' would replace what its bounds imply; remove "
                    "it (the bounds decide)"
                )
            if "missing_value" in source and safe_missing_value(self.columns[name], source) is None:
                found.append(
                    f"column {name!r}: 'missing_value' must be a number within the column's "
                    "bounds, on a numeric column"
                )
        return found

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
        columns = {
            name: parse_column(name, spec, TABLE_OPTIONS) for name, spec in columns_doc.items()
        }
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
            rows=rows,
            document=_jsonable(document),
        )

    @cached_property
    def booleans_as_numbers(self) -> dict[str, ColumnSpec]:
        """Each boolean column read as a number, keyed by the boolean's name: true 1, false 0,
        missing stays missing, bounds 0 and 1, under a name no column has.

        This is what a SUM or AVG of a boolean adds up (a survival rate is the AVG of
        ``Survived``). Engines present these columns beside the admin's; an analyst never
        writes their names, which the guard puts in place of the boolean's inside aggregates.
        """
        # Short, so that no engine cuts them (PostgreSQL keeps 63 characters of a name), and
        # unlike any column's name, even cut there, in any letter case.
        taken = {name.lower()[:63] for name in self.columns}
        numbers = {}
        for index, spec in enumerate(c for c in self.columns.values() if c.type == "boolean"):
            name = f"lomas_number_{index}"
            while name.lower() in taken:
                name += "_"
            taken.add(name.lower())
            numbers[spec.name] = ColumnSpec(name, "int", 0, 1, nullable=spec.nullable)
        return numbers

    def summed(self, spec: ColumnSpec) -> ColumnSpec:
        """The column a SUM or mean of ``spec`` adds up: a boolean's number, else itself."""
        return self.booleans_as_numbers.get(spec.name, spec)

    def summed_column(self, name: str) -> ColumnSpec | None:
        """A bounded number column by name (as ``column``), a boolean's number included."""
        found = self.column(name)
        if found is None:
            lowered = name.lower()
            numbers = self.booleans_as_numbers.values()
            found = next((n for n in numbers if n.name.lower() == lowered), None)
        if found is None or not found.is_numeric or not found.is_bounded:
            return None
        return found

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

    def smartnoise_table(self, *, censor_dims: bool = False) -> dict[str, Any]:
        """The table description in SmartNoise-SQL's own layout (options and columns side by side).

        Written from the validated model with every protection on, whatever the document says:
        values clamped to their bounds, at most ``max_ids`` rows per person, no column
        sensitivity but the bounds'. Whether rare groups are censored is decided per query
        (``censor_dims``): groups whose keys are public are released in full instead.
        """
        person = self.id_column
        table: dict[str, Any] = {
            "max_ids": self.max_ids,
            "row_privacy": person is None,
            "censor_dims": censor_dims,
            "sample_max_ids": True,
            "clamp_columns": True,
            "clamp_counts": bool(self.document.get("clamp_counts", False)),
            "use_dpsu": False,
        }
        for name, spec in self.columns.items():
            is_id = name == person
            column: dict[str, Any] = {"type": spec.type, "nullable": spec.nullable and not is_id}
            if spec.is_numeric and spec.lower is not None:
                column["lower"] = spec.lower
            if spec.is_numeric and spec.upper is not None:
                column["upper"] = spec.upper
            if is_id:
                column["private_id"] = True
            source = self.document["columns"][name]
            if "cardinality" in source:
                column["cardinality"] = source["cardinality"]
            missing = safe_missing_value(spec, source)
            if missing is not None:
                column["missing_value"] = missing
            table[name] = column
        for number in self.booleans_as_numbers.values():
            table[number.name] = {
                "type": "int",
                "nullable": number.nullable,
                "lower": number.lower,
                "upper": number.upper,
            }
        return table


def _jsonable(value: Any) -> Any:
    """A deep copy that JSON can hold: YAML dates become ISO strings."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value
