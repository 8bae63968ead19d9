"""A PostgreSQL table, queried where it is."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any
from urllib.parse import urlparse

from lomas_server.datasets.sources.base import REDACTED, DatasetSource, RawRows
from lomas_server.errors import DatasetUnavailable, InvalidMetadata
from lomas_server.metadata import DatasetMetadata
from lomas_server.readable import POSTGRES


class PostgresSource(DatasetSource):
    reads_as = POSTGRES
    """A table in a PostgreSQL database: SQL queries run there, rows are not copied out.

    Only the OpenDP path reads the rows (into the cache). The table's column types must match
    the metadata's: a query may not cast, since a cast can fail on some rows and not others.
    """

    kind = "postgres"
    in_place = True
    TYPES = {
        "int": ("smallint", "integer", "bigint"),
        "float": ("real", "double precision", "numeric", "smallint", "integer", "bigint"),
        "string": ("text", "character varying", "character"),
        "boolean": ("boolean",),
        "datetime": ("timestamp without time zone", "timestamp with time zone", "date"),
    }

    def __init__(self, dsn: str, table: str, file_format: str | None = None) -> None:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$", table):
            raise InvalidMetadata(
                "a PostgreSQL table is NAME or SCHEMA.NAME (letters, digits, underscore)"
            )
        self.dsn, self.table = dsn, table
        self.format = "postgres"

    def where(self) -> str:
        return f"postgres table {self.table}"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "dsn": self.dsn, "table": self.table}

    def public_description(self) -> dict[str, Any]:
        """The DSN without its password (in the URL or as a password= parameter)."""
        parsed = urlparse(self.dsn)
        netloc = parsed.netloc
        if parsed.password is not None:
            netloc = netloc.replace(f":{parsed.password}@", f":{REDACTED}@", 1)
        query = re.sub(r"(^|&)password=[^&]*", rf"\1password={REDACTED}", parsed.query)
        return {
            "kind": self.kind,
            "dsn": parsed._replace(netloc=netloc, query=query).geturl(),
            "table": self.table,
        }

    def connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.dsn, connect_timeout=10, autocommit=True)
        except psycopg.Error as err:
            raise DatasetUnavailable(f"the database of {self.where()} cannot be reached") from err

    def column_types(self) -> dict[str, str]:
        # The table name is used unquoted in SQL, so PostgreSQL folds it to lower case.
        schema, _, name = self.table.lower().rpartition(".")
        with self.connect() as connection:
            rows = connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = %s AND table_schema = COALESCE(NULLIF(%s, ''), current_schema())",
                (name, schema),
            ).fetchall()
        if not rows:
            raise DatasetUnavailable(f"{self.where()} does not exist")
        return {column: kind for column, kind in rows}

    def resolve_columns(self, names: Collection[str]) -> dict[str, str]:
        """The table's column for each metadata name: the same spelling, else the one column
        spelled alike but for case (the metadata says ``Sex``, the table has ``sex``)."""
        found = self.column_types()
        return {name: self._column_for(name, found) for name in names}

    def _column_for(self, name: str, found: dict[str, str]) -> str:
        if name in found:
            return name
        alike = [column for column in found if column.lower() == name.lower()]
        if len(alike) == 1:
            return alike[0]
        if alike:
            raise DatasetUnavailable(
                f"{self.where()} has several columns spelled {name!r} but for case"
            )
        raise DatasetUnavailable(f"{self.where()} has no column {name!r} declared in the metadata")

    def check_columns(self, columns: dict[str, str]) -> None:
        """Every metadata column exists with a type that needs no cast (name -> metadata type)."""
        found = self.column_types()
        for name, kind in columns.items():
            column = self._column_for(name, found)
            if found[column] not in self.TYPES[kind]:
                raise DatasetUnavailable(
                    f"column {name!r} of {self.where()} is {found[column]}, not a type for {kind}"
                )

    def count_rows(self, required: list[str]) -> tuple[int, int]:
        """How many rows the table holds, and how many lack a value in ``required``."""
        from psycopg import sql

        found = self.column_types()
        lacking = sql.SQL(" OR ").join(
            sql.SQL("{} IS NULL").format(sql.Identifier(self._column_for(name, found)))
            for name in required
        )
        query = sql.SQL("SELECT COUNT(*), {} FROM {}").format(
            sql.SQL("COUNT(*) FILTER (WHERE {})").format(lacking) if required else sql.SQL("0"),
            sql.SQL(self.table),
        )
        with self.connect() as connection:
            total, missing = connection.execute(query).fetchone()
        return int(total), int(missing)

    def rows_sql(self, metadata: DatasetMetadata) -> Any:
        """The table as its metadata describes it, as a SELECT (a ``psycopg.sql`` object).

        Columns carry the metadata's names in lower case (PostgreSQL folds the unquoted names
        SmartNoise-SQL writes); NaN and infinite timestamps read as missing, as on every path;
        rows lacking a required value (the person's id, a not-nullable column) are left out.
        Nothing here can fail on a row: only stored float columns compare with 'NaN'.
        """
        from psycopg import sql

        found = self.column_types()
        selected, required = [], []
        for name, spec in metadata.columns.items():
            column = self._column_for(name, found)
            stored, stored_type = sql.Identifier(column), found[column]
            value: sql.Composable
            if spec.type == "float" and stored_type in ("real", "double precision", "numeric"):
                value = sql.SQL("NULLIF({}, 'NaN')").format(stored)
            elif spec.type == "datetime":
                value = sql.SQL("CASE WHEN isfinite({0}) THEN {0} END").format(stored)
            else:
                value = stored
            selected.append(sql.SQL("{} AS {}").format(value, sql.Identifier(name.lower())))
        for name in metadata.required_columns:
            required.append(sql.SQL("{} IS NOT NULL").format(sql.Identifier(name.lower())))
        inner = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(selected), sql.SQL(self.table)
        )
        if not required:
            return inner
        return sql.SQL("SELECT * FROM ({}) AS lomas_typed WHERE {}").format(
            inner, sql.SQL(" AND ").join(required)
        )

    def version(self) -> str:
        """Changes when rows are written: PostgreSQL's own count of inserts, updates, deletes."""
        with self.connect() as connection:
            try:
                row = connection.execute(
                    "SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables WHERE relid = %s::regclass",
                    (self.table,),
                ).fetchone()
            except Exception as err:  # the table is gone
                raise DatasetUnavailable(f"{self.where()} does not exist") from err
        return "postgres:" + ":".join(str(value) for value in (row or ("new",)))

    def read_bytes(self) -> bytes:
        raise DatasetUnavailable("a PostgreSQL table is read with SQL, not as a file")

    def stream(self, columns: Collection[str] | None = None, *, strict: bool = False) -> RawRows:
        return RawRows.whole(self.load(columns, strict=strict), self.where(), self.format)

    def load(self, columns: Collection[str] | None = None, *, strict: bool = False) -> Any:
        """The rows as text: the server's own rules convert them to the metadata's types (an
        infinite timestamp, which Python cannot hold, then reads as missing instead of failing
        the read). Casting any value to text cannot fail."""
        import pyarrow as pa
        from psycopg import sql

        found = self.column_types()
        names = list(found) if columns is None else [self._column_for(c, found) for c in columns]
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(n)) for n in names),
            sql.SQL(self.table),
        )
        with self.connect() as connection:
            rows = connection.execute(query).fetchall()
        return pa.table(
            {
                name: pa.array([row[i] for row in rows], type=pa.string())
                for i, name in enumerate(names)
            }
        )
