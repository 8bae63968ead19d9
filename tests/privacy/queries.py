"""Queries generated from the allow-list itself, over the neighbouring datasets' metadata.

Every aggregate, filter operator, literal type and format, and GROUP BY shape the SQL guard and
the OpenDP query language accept, combined at random (seeded), plus values in formats they must
refuse: a refusal has to be the same on both datasets of a pair. Each query says which groups
its release may show: the declared grid, groups above a threshold, or one row.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from tests.privacy.neighbours import METADATA

# A group only the added person holds passes its threshold with probability delta, which the
# tester reports as a leak; over the thousands of runs a full tester makes, delta 1e-5 made
# that a real chance (one seen). At 1e-10 it is not, and the threshold only grows with
# log(1/delta), so the check is not weaker.
THRESHOLD_DELTA = 1e-10

SQL_AGGREGATES = [
    "COUNT(*) AS n",
    "COUNT(score) AS n_score",
    "COUNT(DISTINCT note) AS notes",
    "SUM(age) AS s_age",
    "SUM(income) AS s_income",
    "AVG(income) AS m_income",
    "AVG(age) AS m_age",
    "VAR(age) AS v_age",
    "STDDEV(income) AS sd_income",
    "AVG(age) * 2 + 1 AS expr",
    "ROUND(SUM(income) / 1000, 2) AS k_income",
    "AVG(flag) AS share_flag",
    "SUM(flag) AS n_flag",
]
SQL_CONDITIONS = [
    "age >= 30",
    "age BETWEEN 20 AND 60",
    "age IN (18, 40, 1000)",
    "age < -1000000000000000",
    "income > 500.5",
    "income <= 0",
    "income BETWEEN 0.0001 AND 999999999999999",
    "kind = 'a'",
    "kind <> 'zz'",
    "kind IN ('a', 'c', 'zz', '')",
    "flag",
    "NOT flag",
    "flag = FALSE",
    "flag IS NULL",
    "born >= '2000-01-01'",
    "born < '1970-06-15 12:30:00'",
    "born = '9999-12-31 23:59:59.999999'",
    "born BETWEEN '0001-01-01' AND '2000-02-29 00:00:00.5'",
    "note = 'x'",
    "note <> 'only-me'",
    "note IN ('x', 'é😀', 'only-me')",
    "score IS NULL",
    "score IS NOT NULL",
    "score > -1000000000000000",
    "region = 'north'",
    "age > income",
    "income >= score",
    "level = 2",
    "level IN (1, 3)",
    "age > 20 AND (kind = 'b' OR flag)",
    "NOT (income < 100) AND born IS NOT NULL",
]
# Values the guard must refuse, whatever the data: a pair must agree on the refusal.
SQL_REFUSED_CONDITIONS = [
    "born > '2000/01/01'",
    "born > '2000-01-01T10:00:00'",
    "born > '2001-02-29'",
    "age > 40.5",
    "income > 0.00001",
    "note = 'a\\b'",
    "age = 'ten'",
    "flag = 1",
    "age = NULL",
    "age / (age - 40) > 1",
]
# columns -> (declared grid or None when thresholded)
GROUPS: list[tuple[str, ...]] = [
    (),
    ("kind",),
    ("flag",),
    ("level",),
    ("kind", "flag"),
    ("region",),
    ("note",),
    ("kind", "region"),
]


@dataclass(frozen=True)
class Case:
    """One request, and what its release may show."""

    engine: str  # "sql" or "opendp"
    body: dict[str, Any]
    group_columns: tuple[str, ...] = ()
    grid: tuple[tuple[Any, ...], ...] | None = None  # the keys it must show, in order
    thresholded: bool = False
    expect_refusal: bool = False
    text: str = field(default="", compare=False)


def declared_grid(kind: str, columns: tuple[str, ...]) -> tuple[tuple[Any, ...], ...] | None:
    specs = [METADATA[kind]["columns"][c] for c in columns]
    if not columns or not all(s.get("public_keys") for s in specs):
        return None
    values = [s["categories"] if "categories" in s else [True, False] for s in specs]
    return tuple(itertools.product(*values))


def sql_cases(kind: str, count: int, seed: int = 11) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        group = GROUPS[index % len(GROUPS)]
        aggregates = rng.sample(SQL_AGGREGATES, rng.choice([1, 1, 2, 3]))
        conditions = rng.sample(SQL_CONDITIONS, rng.choice([0, 1, 1, 2]))
        refused = index % 9 == 4
        if refused:
            conditions.append(rng.choice(SQL_REFUSED_CONDITIONS))
        select = ", ".join([*group, *aggregates])
        sql = f"SELECT {select} FROM df"
        if conditions:
            sql += " WHERE " + " AND ".join(f"({c})" for c in conditions)
        if group:
            sql += " GROUP BY " + ", ".join(group)
            if rng.random() < 0.3:
                alias = aggregates[0].rsplit(" AS ", 1)[-1]
                sql += f" ORDER BY {alias} DESC"
        if rng.random() < 0.15:
            sql += " LIMIT 2"
        grid = declared_grid(kind, group)
        thresholded = bool(group) and grid is None
        # a thresholded query without delta is refused alike on both datasets
        delta = THRESHOLD_DELTA if thresholded and index % 5 else 0.0
        cases.append(
            Case(
                "sql",
                {"query": sql, "epsilon": 1.0, "delta": delta},
                group,
                grid if "LIMIT" not in sql else None,
                thresholded,
                refused or (thresholded and delta == 0.0),
                sql,
            )
        )
    return cases


OPENDP_AGGREGATES = [
    {"op": "count"},
    {"op": "count", "column": "score"},
    {"op": "sum", "column": "age"},
    {"op": "sum", "column": "income"},
    {"op": "mean", "column": "income"},
    {"op": "variance", "column": "age"},
    {"op": "quantile", "column": "age", "q": 0.3},
    {"op": "median", "column": "income"},
    {"op": "mean", "column": "flag"},
    {"op": "sum", "column": "flag"},
]
OPENDP_FILTERS = [
    {"column": "age", "op": ">=", "value": 30},
    {"column": "age", "op": "in", "value": [18, 40, 1000]},
    {"column": "income", "op": ">", "value": 500.5},
    {"column": "kind", "op": "in", "value": ["a", "zz", ""]},
    {"column": "kind", "op": "!=", "value": "c"},
    {"column": "flag", "op": "==", "value": True},
    {"column": "born", "op": "<", "value": "2000-01-01"},
    {"column": "born", "op": ">=", "value": "0001-01-01 00:00:00.000001"},
    {"column": "note", "op": "!=", "value": "only-me"},
    {"column": "score", "op": "is_null"},
    {"column": "score", "op": "is_not_null"},
    {"column": "level", "op": "==", "value": 3},
]
OPENDP_REFUSED_FILTERS = [
    {"column": "born", "op": ">", "value": "2000/01/01"},
    {"column": "age", "op": "==", "value": 2.5},
    {"column": "note", "op": "==", "value": "a\\b"},
    {"column": "flag", "op": "==", "value": 1},
]
OPENDP_GROUPS: list[tuple[str, ...]] = [(), ("kind",), ("level",), ("flag", "kind"), ("region",)]


def opendp_cases(kind: str, count: int, seed: int = 13) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        refused = index % 7 == 3
        histogram = index % 6 == 5
        if histogram:
            column = rng.choice(["kind", "level", "flag", "region"])
            group: tuple[str, ...] = (column,)
            aggregates: list[dict[str, Any]] = [{"op": "histogram", "column": column}]
        else:
            group = OPENDP_GROUPS[index % len(OPENDP_GROUPS)]
            aggregates = rng.sample(OPENDP_AGGREGATES, rng.choice([1, 2, 2, 3]))
        filters = rng.sample(OPENDP_FILTERS, rng.choice([0, 1, 1, 2]))
        if refused:
            filters.append(rng.choice(OPENDP_REFUSED_FILTERS))
        query = {
            "filters": filters,
            "group_by": [] if histogram else list(group),
            "aggregates": aggregates,
        }
        grid = declared_grid(kind, group)
        thresholded = bool(group) and grid is None
        body: dict[str, Any] = {"query": query}
        if index % 3 == 2:
            body.update(mechanism="gaussian", rho=0.5)
        else:
            body.update(epsilon=1.0)
        if thresholded and index % 4:
            body["delta"] = THRESHOLD_DELTA
        elif thresholded and index % 8 == 0:
            body["delta"] = 0.0  # a threshold without delta: refused alike on both datasets
        # else left out: the server chooses a delta (limits.DEFAULT_DELTA), answered alike
        cases.append(
            Case(
                "opendp",
                body,
                group,
                grid,
                thresholded,
                refused or (thresholded and body.get("delta") == 0.0),
                str(query),
            )
        )
    return cases
