"""Which groups a SmartNoise-SQL release shows, enforced on the exact aggregates; and whole
numbers released as the nearest one.

SmartNoise-SQL reads the exact aggregates in one place (``PrivateReader._get_reader``); the
reader here reshapes them there to the plan's key rule, before any noise is added. Its
mechanisms are made in one place too (``_get_mechanisms``), where those of whole-number
aggregates are made to round (``NoisyWholeNumber``).
"""

from __future__ import annotations

import math
from typing import Any

from lomas_server.engines.snsql_adapter import Privacy, PrivateReader
from lomas_server.engines.sql_plan import SqlPlan


class KeyedPrivateReader(PrivateReader):
    """SmartNoise-SQL's reader, with the exact aggregates reshaped to the plan's key rule
    before any noise is added (the one place SmartNoise-SQL reads them: ``_get_reader``)."""

    def __init__(self, plan: SqlPlan, reader: Any, metadata: Any, privacy: Privacy) -> None:
        super().__init__(reader, metadata, privacy=privacy)
        self._plan = plan

    def _get_reader(self, query_ast: Any) -> Any:
        return _ReleasedKeys(super()._get_reader(query_ast), self._plan)

    def _get_mechanisms(self, subquery: Any) -> list[Any]:
        mechanisms = super()._get_mechanisms(subquery)
        for symbol, mechanism in zip(subquery._select_symbols, mechanisms, strict=True):
            if mechanism is None or getattr(mechanism, "_lomas_whole", False):
                continue
            if symbol.expression.type() == "int":
                mechanism.release = _whole_numbers(mechanism.release)
                mechanism._lomas_whole = True
        return mechanisms


class NoisyWholeNumber(float):
    """The noisy value of a whole-number aggregate (a count, a sum of integers or booleans).

    SmartNoise-SQL makes an integer output with ``int(float(str(value)))``, which cuts 1.97
    down to 1: counts came out half a unit low on average, and their stated half-widths held
    about half the time when small. Its text is the nearest whole number instead, so that is
    what an integer output becomes (post-processing, free). As a number it is the noisy value
    itself: means, other arithmetic and the threshold a hidden group must pass use it as
    drawn (rounding before the threshold would lower it, and the delta it was set for would
    not hold).
    """

    def __str__(self) -> str:
        return str(round(self)) if math.isfinite(self) else float.__repr__(self)


def _whole_numbers(release: Any) -> Any:
    def released(values: Any) -> list[Any]:
        return [NoisyWholeNumber(v) for v in release(values)]

    return released


class _ReleasedKeys:
    """Exact aggregates, one row per released group, in an order set by the keys alone.

    With a key grid: rows whose keys are not declared (including NULL) are dropped before the
    noise, and every declared group without rows gets one, its aggregates missing (SmartNoise
    adds noise to zero there, as to any empty group): which groups exist never shows. Rows
    come in the grid's order. Otherwise rows are sorted by key, so that the order of the
    released groups says nothing about how the engine stored the data.
    """

    def __init__(self, reader: Any, plan: SqlPlan) -> None:
        self._reader = reader
        self._plan = plan

    def _execute_ast(self, subquery: Any, *args: Any, **kwargs: Any) -> Any:
        rows = self._reader._execute_ast(subquery, *args, **kwargs)
        if not isinstance(rows, list):
            raise TypeError("the exact aggregates came back in an unexpected shape")
        header, body = rows[0], [list(row) for row in rows[1:]]
        symbols = subquery._select_symbols
        keys = [i for i, symbol in enumerate(symbols) if symbol.mechanism is None]
        if self._plan.key_grid is None:
            body.sort(key=lambda row: tuple(_sort_key(row[i]) for i in keys))
            return [header, *body]
        by_name = {name.lower(): n for n, name in enumerate(self._plan.group_columns)}
        order = [by_name[str(symbols[i].name).lower()] for i in keys]
        found: dict[tuple[Any, ...], list[Any]] = {}
        for row in body:
            key = tuple(_key_value(row[i]) for i in keys)
            found[key] = row
        released = []
        for declared in self._plan.key_grid:
            key = tuple(declared[n] for n in order)
            known = found.get(tuple(_key_value(v) for v in key))
            if known is None:
                known = [None] * len(symbols)  # a declared group without rows
                for position, value in zip(keys, key, strict=True):
                    known[position] = value
            released.append(known)
        return [header, *released]


def _key_value(value: Any) -> Any:
    """A key as a value that compares by type too (True is not 1 here)."""
    return (type(value).__name__ if isinstance(value, bool) else "", value)


def _sort_key(value: Any) -> tuple[Any, ...]:
    return (value is None, "" if value is None else str(type(value).__name__), value)
