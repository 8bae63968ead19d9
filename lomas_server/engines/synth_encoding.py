"""Columns as the synthesizers see them: codes over a domain written from the metadata alone.

A synthesizer models a table of small integers. Each modelled column becomes codes 0..n-1
whose meaning comes from the admin's metadata, never from the data:

- a boolean: false, true;
- a column with declared ``categories``: each category, in declared order;
- a bounded int whose range holds at most ``bins`` values: each value (values past a bound
  are clamped to it);
- another bounded number: ``bins`` equal-width bins between its bounds (values past a bound
  are clamped into the end bin); a synthetic value is drawn uniformly within its bin;
- and, for a nullable column, one more code for "missing".

So the domain every synthesizer works on is public, the same for a dataset and any
neighbour of it, and nothing is spent learning it. A value that is not in the domain (a
category the metadata does not list) reads as missing; a row missing a value its column
cannot lack is left out. Both are decided by that row alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lomas_server.errors import InvalidQuery
from lomas_server.metadata import ColumnSpec, DatasetMetadata

MAX_CODES = 1_000  # codes of one column: more would make every marginal too large to model


@dataclass(frozen=True)
class ColumnCodec:
    """One column's public domain: its values (or bins) in code order, then missing."""

    name: str
    type: str
    values: tuple[Any, ...] | None  # each code's value, for categories, booleans, small ints
    edges: tuple[float, ...] | None  # bin edges, for binned numbers
    nullable: bool
    clamp: tuple[int, int] | None = None  # a bounded int's range, for values past its bounds

    @property
    def size(self) -> int:
        known = len(self.values) if self.values is not None else len(self.edges or ()) - 1
        return known + (1 if self.nullable else 0)

    @property
    def missing_code(self) -> int | None:
        return self.size - 1 if self.nullable else None

    def describe(self) -> dict[str, Any]:
        if self.values is not None:
            return {"column": self.name, "values": len(self.values), "nullable": self.nullable}
        return {"column": self.name, "bins": self.size - self.nullable, "nullable": self.nullable}

    def encode(self, column: pd.Series) -> np.ndarray:
        """Each value's code; -1 where the value is missing and the column cannot lack it."""
        missing = -1 if self.missing_code is None else self.missing_code
        if self.values is not None:
            lookup = {value: code for code, value in enumerate(self.values)}
            found = [
                lookup.get(self._clamped(_plain(v)), missing) if _present(v) else missing
                for v in column
            ]
            return np.asarray(found, dtype=np.int64)
        assert self.edges is not None
        numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        present = np.isfinite(numbers)
        inner = np.asarray(self.edges[1:-1])
        binned = np.searchsorted(inner, np.where(present, numbers, 0.0), side="right")
        return np.where(present, binned, missing).astype(np.int64)

    def _clamped(self, value: Any) -> Any:
        if self.clamp is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return value
        return min(max(value, self.clamp[0]), self.clamp[1])

    def decode(self, codes: np.ndarray, rng: np.random.Generator) -> list[Any]:
        out: list[Any] = []
        for code in codes.tolist():
            if code == self.missing_code:
                out.append(None)
            elif self.values is not None:
                out.append(self.values[code])
            else:
                assert self.edges is not None
                low, high = self.edges[code], self.edges[code + 1]
                if self.type == "int":
                    # A bin holds its lower edge, not its upper one (encode's searchsorted);
                    # the last bin holds both.
                    last = code == len(self.edges) - 2
                    top = math.floor(high) if last else math.ceil(high) - 1
                    out.append(int(rng.integers(math.ceil(low), top, endpoint=True)))
                else:
                    out.append(float(rng.uniform(low, high)))
        return out


def codec_for(metadata: DatasetMetadata, name: str, bins: int) -> ColumnCodec:
    """The public domain of a column, or a refusal saying why it cannot be modelled."""
    spec = metadata.column(name)
    if spec is None:
        raise InvalidQuery(f"no column {name!r} in this dataset")
    if spec.name == metadata.id_column:
        raise InvalidQuery(
            f"column {spec.name!r} identifies people; it cannot be synthesized (leave it out)"
        )
    if spec.type == "datetime":
        raise InvalidQuery(
            f"column {spec.name!r} holds dates and times, which cannot be synthesized yet; "
            "leave it out"
        )
    values = _declared_values(spec, bins)
    edges = None
    if values is None:
        if not spec.is_numeric or not spec.is_bounded:
            raise InvalidQuery(
                f"column {spec.name!r} has neither declared categories nor numeric bounds, so "
                "its values would have to come from the data; leave it out, or the "
                "administrator can declare its 'categories'"
            )
        lower, upper = spec.numeric_bounds()
        edges = tuple(float(x) for x in np.linspace(lower, upper, bins + 1))
    clamp = None
    if values is not None and spec.type == "int" and spec.categories is None:
        clamp = (int(values[0]), int(values[-1]))  # a range from the bounds, not categories
    codec = ColumnCodec(spec.name, spec.type, values, edges, spec.nullable, clamp)
    if codec.size > MAX_CODES:
        raise InvalidQuery(
            f"column {spec.name!r} has {codec.size} values; at most {MAX_CODES} can be modelled"
        )
    return codec


def _declared_values(spec: ColumnSpec, bins: int) -> tuple[Any, ...] | None:
    if spec.type == "boolean":
        return (False, True)
    if spec.categories is not None:
        return tuple(spec.categories)
    if spec.type == "int" and spec.is_bounded:
        lower, upper = (int(x) for x in spec.numeric_bounds())
        if upper - lower + 1 <= bins:
            return tuple(range(lower, upper + 1))
    return None


def encode(frame: pd.DataFrame, codecs: list[ColumnCodec]) -> pd.DataFrame:
    """The rows as codes, leaving out each row that lacks a value its column needs."""
    codes = pd.DataFrame(
        {c.name: c.encode(frame[c.name]).astype(np.int64) for c in codecs}, index=frame.index
    )
    keep = (codes >= 0).all(axis=1)
    return codes[keep].reset_index(drop=True)


def decode(codes: pd.DataFrame, codecs: list[ColumnCodec], seed: int) -> pd.DataFrame:
    """The synthetic values, each as its column's type (Python objects: an int column with
    a missing value stays ints and None, not floats and NaN)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {c.name: c.decode(codes[c.name].to_numpy(dtype=np.int64), rng) for c in codecs},
        columns=[c.name for c in codecs],
        dtype=object,
    )


def _present(value: Any) -> bool:
    if value is None:
        return False
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):
        return True


def _plain(value: Any) -> Any:
    """A cell as the metadata writes its values (numpy scalars as Python ones)."""
    return value.item() if isinstance(value, np.generic) else value
