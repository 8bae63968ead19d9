"""One column of the admin's metadata: its type, bounds, categories and flags, validated.

Every bound and category an engine uses comes from here, so validation is strict: finite
bounds of the column's type, categories of the column's type, public keys only where the
public values are declared.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from lomas_server.errors import InvalidMetadata

COLUMN_TYPES = ("int", "float", "string", "boolean", "datetime")
KEY_TYPES = ("string", "int", "boolean")  # what may be declared public keys
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_BOUND = 1e15  # bounds larger than this would let sums of many rows overflow
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
    # releases every declared category (the full grid), without thresholding.
    public_keys: bool = False

    @property
    def is_numeric(self) -> bool:
        return self.type in ("int", "float")

    @property
    def is_bounded(self) -> bool:
        return self.lower is not None and self.upper is not None

    def numeric_bounds(self) -> tuple[float, float]:
        """The bounds of a bounded numeric column, as floats."""
        lower, upper = self.lower, self.upper
        if (
            not self.is_numeric
            or not isinstance(lower, (int, float))
            or not isinstance(upper, (int, float))
        ):
            raise ValueError(f"column {self.name!r} has no numeric bounds")
        return float(lower), float(upper)

    @property
    def public_values(self) -> tuple[Any, ...] | None:
        """The values the admin declared public for grouping, in their declared order."""
        if not self.public_keys:
            return None
        if self.categories is not None:
            return self.categories
        return (True, False) if self.type == "boolean" else None


def parse_column(name: Any, spec: Any, reserved: tuple[str, ...] = ()) -> ColumnSpec:
    """A column's declaration, validated; ``reserved``: names it may not take (the table's
    options)."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise InvalidMetadata(
            f"column name {name!r} must be a plain identifier (letters, digits, underscore)"
        )
    if name.lower() in reserved:
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
        categories = _categories(name, ctype, categories)
    nullable = spec.get("nullable", True)
    private_id = spec.get("private_id", False)
    public_keys = spec.get("public_keys", False)
    if not all(isinstance(flag, bool) for flag in (nullable, private_id, public_keys)):
        raise InvalidMetadata(
            f"column {name!r}: 'nullable', 'private_id' and 'public_keys' must be true or false"
        )
    if public_keys and ctype not in KEY_TYPES:
        raise InvalidMetadata(
            f"column {name!r}: only string, int and boolean columns can have 'public_keys'"
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
        if abs(bound) > MAX_BOUND:
            raise InvalidMetadata(
                f"column {name!r}: bounds are at most {MAX_BOUND:g} in magnitude (a sum of many "
                "larger values could overflow)"
            )
    if ctype == "int" and (lower != int(lower) or upper != int(upper)):
        raise InvalidMetadata(f"column {name!r}: an int column needs whole-number bounds")
    if lower > upper:
        raise InvalidMetadata(f"column {name!r}: 'lower' is above 'upper'")
    if ctype == "int":
        return int(lower), int(upper)
    return float(lower), float(upper)


def _categories(name: str, ctype: str, categories: Any) -> tuple[Any, ...]:
    """The declared values, each of the column's type: a category that the data could never
    hold as written (``'1'`` in an int column) would never match a row."""
    if not isinstance(categories, list) or not categories:
        raise InvalidMetadata(f"column {name!r}: 'categories' must be a non-empty list")
    accepted = {
        "string": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "datetime": lambda v: isinstance(v, (str, date, datetime)),
    }[ctype]
    wrong = [v for v in categories if not accepted(v)]
    if wrong:
        raise InvalidMetadata(
            f"column {name!r}: categories must be {ctype} values like the column "
            f"(found {wrong[0]!r})"
        )
    if len(set(map(repr, categories))) != len(categories):
        raise InvalidMetadata(f"column {name!r}: a category is listed twice")
    return tuple(categories)


def safe_missing_value(spec: ColumnSpec, source: dict[str, Any]) -> int | float | None:
    """The column's ``missing_value`` if it is safe to hand to SmartNoise-SQL, else None.

    SmartNoise-SQL writes it into the SQL as is (``COALESCE(col, value)``): text would be read
    as a column name, and a value of another type would be converted only on rows with a NULL.
    """
    value = source.get("missing_value")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not spec.is_numeric or not spec.is_bounded or not math.isfinite(value):
        return None
    if spec.type == "int" and value != int(value):
        return None
    if not spec.lower <= value <= spec.upper:  # type: ignore[operator]
        return None
    return int(value) if spec.type == "int" else float(value)


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
