"""Neighbouring datasets: a base dataset, and the same with one adversarial person added.

Two metadata shapes: people with a person id owning up to ``max_ids`` rows each (the base
gives nobody more than ``max_ids``, so only the added person's rows are ever sampled), and
row-level privacy (one row is one person, so each adversary is one row). Every adversary
holds values chosen to break something: NULL in every column including the id, NaN and
infinities, magnitudes far outside the bounds, values outside the declared categories, long
and odd unicode, dates at the edges of the calendar, many rows for one id, many rows with no
id, and a person alone in a declared group that the base leaves empty.

The same rows are written as CSV (read and cached by the server), Parquet (scanned in place,
or read by Spark) and a PostgreSQL table (queried in place).
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lomas_server.literals import datetime_text
from tests.engines.test_every_engine import POSTGRES_TYPES

COLUMNS: dict[str, dict[str, Any]] = {
    "kind": {"type": "string", "categories": ["a", "b", "c"], "public_keys": True},
    "flag": {"type": "boolean", "public_keys": True},
    "level": {
        "type": "int",
        "lower": 1,
        "upper": 3,
        "categories": [1, 2, 3],
        "public_keys": True,
        "nullable": False,
    },
    "region": {"type": "string", "categories": ["north", "south"]},  # declared, not public
    "age": {"type": "int", "lower": 0, "upper": 100},
    "income": {"type": "float", "lower": 0.0, "upper": 1000.0},
    "born": {"type": "datetime"},
    "note": {"type": "string"},  # free text
    "score": {"type": "float"},  # no bounds: counted, never summed
}
PEOPLE = {
    "max_ids": 2,
    "rows": 5000,
    "columns": {"pid": {"type": "int", "private_id": True}, **COLUMNS},
}
ROWS = {"max_ids": 1, "row_privacy": True, "rows": 5000, "columns": dict(COLUMNS)}
METADATA = {"people": PEOPLE, "rows": ROWS}

ODD_TEXT = (
    "\u202eevil\u202c 😀\u0301\u0301 'quoted' \"double\" \\back\\slash\nnew line\t"
    + "ẞ" * 2000
    + "\U0001f9d1\u200d\U0001f52c" * 500
)
EARLIEST = datetime(1, 1, 1)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999)
# Values that only an adversary holds: a released group key equal to one of them came from
# one person's row.
ADVERSARIAL_VALUES = {"zz", "east", "", ODD_TEXT, "'; DROP TABLE df; --", "only-me"}


@dataclass(frozen=True)
class RawBytes:
    """Text that is not UTF-8, as a file can hold it (Parquet does not check)."""

    data: bytes


@dataclass(frozen=True)
class FarDate:
    """A date past year 9999, as a Parquet date column can hold it (days since 1970)."""

    days: int


def _row(pid: Any = None, **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(["pid", *COLUMNS])
    row.update(pid=pid, **values)
    return row


def base_rows(seed: int = 7, people: int = 80) -> list[dict[str, Any]]:
    """The base dataset: nobody in kind 'c', nobody owns more than max_ids rows."""
    rng = random.Random(seed)
    rows = []
    for pid in range(1, people + 1):
        for _ in range(rng.randint(1, PEOPLE["max_ids"])):
            rows.append(
                _row(
                    pid,
                    kind=rng.choice(["a", "b"]),
                    flag=rng.choice([True, False, None]),
                    level=rng.randint(1, 3),
                    region=rng.choice(["north", "south", None]),
                    age=rng.randint(18, 90),
                    income=round(rng.uniform(0, 1000), 2),
                    born=datetime(rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28)),
                    note=rng.choice(["x", "y", "x y"]),
                    score=rng.choice([None, round(rng.uniform(-5, 5), 3)]),
                )
            )
    return rows


def adversaries(kind: str) -> dict[str, list[dict[str, Any]]]:
    """Name -> the rows of the one person added to the base."""
    single = {
        "all_missing": [_row()],
        "extremes": [
            _row(
                10**15,
                kind="zz",
                region="east",
                level=3,
                age=2**62,
                income=math.inf,
                born=LATEST,
                note=ODD_TEXT,
                score=math.nan,
            )
        ],
        "negatives": [
            _row(
                -1,
                kind="",
                region="",
                flag=False,
                level=1,
                age=-(2**62),
                income=-1e300,
                born=EARLIEST,
                note="'; DROP TABLE df; --",
                score=-math.inf,
            )
        ],
        "alone_in_an_empty_group": [
            _row(
                555,
                kind="c",
                flag=True,
                level=2,
                region="south",
                age=1000,
                income=1e12,
                born=datetime(2000, 2, 29),
                note="only-me",
                score=1.0,
            )
        ],
        "nan_everywhere": [_row(777, kind="b", level=2, income=math.nan, score=math.nan)],
        # values a file can hold that no reader takes as they are: a date past any timestamp
        # (the file's dates are then stored as dates, not timestamps), text that is not UTF-8
        "unreadable": [
            _row(
                888, kind="b", level=1, age=60, born=FarDate(2**31 - 10), note=RawBytes(b"\xff\xfe")
            )
        ],
    }
    if kind == "rows":
        return single
    heavy = _row(
        999_999,
        kind="c",
        flag=True,
        level=3,
        region="south",
        age=100,
        income=1000.0,
        born=datetime(2000, 1, 1),
        note="only-me",
        score=5.0,
    )
    no_id = {**heavy, "pid": None}
    return {
        **single,
        "many_rows": [dict(heavy) for _ in range(60)],
        "many_without_id": [dict(no_id) for _ in range(60)],
    }


@dataclass(frozen=True)
class Pair:
    kind: str  # "people" or "rows"
    adversary: str
    base: list[dict[str, Any]]
    neighbour: list[dict[str, Any]]


def pairs() -> list[Pair]:
    base = base_rows()
    out = []
    for kind in METADATA:
        rows = base if kind == "people" else [{**r, "pid": None} for r in base]
        for name, extra in adversaries(kind).items():
            out.append(Pair(kind, name, rows, rows + extra))
    return out


def columns_of(kind: str) -> list[str]:
    return list(METADATA[kind]["columns"])


# -- writers ----------------------------------------------------------------------------------
def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, RawBytes):
        return value.data.decode("utf-8", "surrogateescape")  # written back as the raw bytes
    if isinstance(value, FarDate):
        return "0000-01-01"  # the year before the calendar's first
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # nan, inf, -inf, 1e+300
    if isinstance(value, datetime):
        return datetime_text(value)
    return str(value)


def write_csv(rows: list[dict[str, Any]], kind: str, path: Path) -> None:
    names = columns_of(kind)
    with path.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in rows:
            writer.writerow([_text(row[name]) for name in names])


def arrow_table(rows: list[dict[str, Any]], kind: str) -> Any:
    import pyarrow as pa

    types = {
        "int": pa.int64(),
        "float": pa.float64(),
        "string": pa.string(),
        "boolean": pa.bool_(),
        "datetime": pa.timestamp("us"),
    }
    spec = METADATA[kind]["columns"]
    columns = {}
    for name in columns_of(kind):
        values = [row[name] for row in rows]
        if any(isinstance(v, FarDate) for v in values):
            epoch = datetime(1970, 1, 1)
            days = [
                v.days if isinstance(v, FarDate) else None if v is None else (v - epoch).days
                for v in values
            ]
            columns[name] = pa.array(days, type=pa.date32())
        elif any(isinstance(v, RawBytes) for v in values):
            raw = [
                v.data if isinstance(v, RawBytes) else None if v is None else v.encode()
                for v in values
            ]
            columns[name] = pa.array(raw, type=pa.binary()).view(pa.string())
        else:
            columns[name] = pa.array(values, type=types[spec[name]["type"]])
    return pa.table(columns)


def write_parquet(rows: list[dict[str, Any]], kind: str, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(arrow_table(rows, kind), path)


def write_postgres(rows: list[dict[str, Any]], kind: str, dsn: str, table: str) -> None:
    import psycopg

    spec = METADATA[kind]["columns"]
    names = columns_of(kind)
    declared = ", ".join(f"{name} {POSTGRES_TYPES[spec[name]['type']]}" for name in names)
    marks = ", ".join(["%s"] * len(names))
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {table} ({declared})")
        with connection.cursor() as cursor:
            # PostgreSQL holds neither: those values are missing there
            cursor.executemany(
                f"INSERT INTO {table} VALUES ({marks})",
                [
                    tuple(
                        None if isinstance(row[n], (RawBytes, FarDate)) else row[n] for n in names
                    )
                    for row in rows
                ],
            )


# -- datasets beside the pairs ---------------------------------------------------------------
def base_of(kind: str) -> list[dict[str, Any]]:
    """The base rows as ``pairs`` gives them for ``kind`` (no id under row privacy)."""
    return base_rows() if kind == "people" else [{**r, "pid": None} for r in base_rows()]


def alone(kind: str) -> dict[str, Any]:
    """The one row of the person alone in a declared group the base leaves empty."""
    (row,) = adversaries(kind)["alone_in_an_empty_group"]
    return dict(row)


def lacking(kind: str, columns: list[str]) -> list[dict[str, Any]]:
    """The base with ``columns`` missing in every row."""
    return [{**row, **dict.fromkeys(columns)} for row in base_of(kind)]


def small_datasets(kind: str) -> dict[str, list[dict[str, Any]]]:
    """No rows, one row, and the base with every row lacking what a model or synthesizer
    reads (the declared columns; or only ``level``, which a row cannot lack): nothing a
    request does may fail on one of them and not on the others."""
    return {
        "no_rows": [],
        "one_row": [alone(kind)],
        "every_row_lacking": lacking(kind, ["kind", "level", "region", "age", "income"]),
        "every_row_lacking_level": lacking(kind, ["level"]),
    }


def register(
    admin: Any,
    folder: Path,
    name: str,
    rows: list[dict[str, Any]],
    kind: str,
    source: str,
    grant_to: str,
    *,
    checked: bool = False,
    postgres_dsn: str | None = None,
) -> str:
    """``rows`` as a dataset read from ``source`` ("csv": read and cached by the server,
    "parquet", or "postgres": a table), with a large budget for ``grant_to``. Only a base
    passes add-dataset's strict check (``checked``); the others are the data changing after
    it was added, read at query time."""
    location: Any = folder / f"{name}.{source}"
    if source == "csv":
        write_csv(rows, kind, location)
    elif source == "parquet":
        write_parquet(rows, kind, location)
    else:
        assert postgres_dsn is not None
        write_postgres(rows, kind, postgres_dsn, name.lower())
        location = f"{postgres_dsn}?table={name.lower()}"
    admin.add_dataset(name, location, METADATA[kind], check_data=checked)
    admin.grant(grant_to, name, 1e6, 0.5)
    return name
