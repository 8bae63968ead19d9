"""Connectors: turn an admin's dataset description into rows.

A source reports a cheap ``version`` (changes whenever the underlying data changes: file
mtime and size, an S3 ETag, an HTTP ETag or Last-Modified) so that the cache tells a fresh copy
from a stale one without reading the data, and so that the service can check that a dataset is
reachable before it reserves any budget. Descriptions may hold credentials: they are kept in
the admin store and shown elsewhere only through ``public_description``.
"""

from __future__ import annotations

import abc
import hashlib
import importlib.util
import io
import logging
import os
import re
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd

from lomas_server.errors import DatasetUnavailable, InvalidMetadata
from lomas_server.metadata import DatasetMetadata
from lomas_server.readable import POSTGRES, SPARK

FORMATS = ("csv", "parquet")
log = logging.getLogger(__name__)
SECRET_FIELDS = ("secret_access_key", "access_key_id", "session_token", "headers")
REDACTED = "***"


class DatasetSource(abc.ABC):
    kind: str
    # True when SQL runs where the data lives (PostgreSQL, Spark) instead of on a cached copy.
    in_place = False

    def __init__(self, file_format: str | None, name_for_format: str) -> None:
        self.format = file_format or _format_from_suffix(name_for_format)
        if self.format not in FORMATS:
            raise InvalidMetadata(
                f"unsupported file format {self.format!r}; use one of {', '.join(FORMATS)} (--format)"
            )

    @abc.abstractmethod
    def version(self) -> str:
        """A token that changes whenever the data changes; raises DatasetUnavailable."""

    # Sources read in place (``in_place``) check these where the data lives; the others
    # are shaped to the metadata when loaded, and have nothing to check beforehand.
    def check_columns(self, columns: dict[str, str]) -> None:
        """Refuse (DatasetUnavailable) columns whose stored type would need a cast."""
        return None

    def count_rows(self, required: list[str]) -> tuple[int, int]:
        """(rows, rows lacking a required value): only for sources read in place."""
        raise NotImplementedError

    def check_engine(self) -> None:
        """Refuse (DatasetUnavailable) if the engine that reads it in place cannot start."""
        return None

    @abc.abstractmethod
    def read_bytes(self) -> bytes | Path:
        """The raw file (or its local path); raises DatasetUnavailable."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """The JSON description stored in the admin store (credentials included)."""

    @abc.abstractmethod
    def where(self) -> str:
        """Where the data lives, for messages and logs: never a credential."""

    def load(self, columns: Collection[str] | None = None, *, strict: bool = False) -> Any:
        """The rows: a DataFrame of text for CSV, an Arrow table for Parquet (typed already).

        ``columns``: only these (matched without regard to case), when the caller needs no
        others; a wide file then costs the memory of the declared columns only. ``strict``
        (when the admin adds the dataset) refuses a CSV line with the wrong number of fields,
        a quote left open, or bytes that are not UTF-8; otherwise such a line is left out and
        such bytes read as a replacement character, so that one row cannot make every query
        fail, nor take other rows with it (``whole_lines``).
        """
        raw = self.read_bytes()
        handle: Any = raw if isinstance(raw, Path) else io.BytesIO(raw)
        wanted = None if columns is None else {name.lower() for name in columns}
        try:
            if self.format == "csv":
                data = raw.read_bytes() if isinstance(raw, Path) else raw
                # Everything as text first: conform_to_metadata converts with the admin's types,
                # so pandas' guesses never decide what a column is.
                return pd.read_csv(
                    io.BytesIO(whole_lines(data, self.where(), strict=strict)),
                    dtype=str,
                    keep_default_na=True,
                    usecols=None if wanted is None else lambda name: str(name).lower() in wanted,
                    encoding_errors="strict" if strict else "replace",
                    on_bad_lines="error" if strict else "skip",
                )
            import pyarrow.parquet as pq

            if wanted is None:
                return pq.read_table(handle)
            names = pq.ParquetFile(handle).schema_arrow.names
            if not isinstance(handle, Path):
                handle.seek(0)
            return pq.read_table(handle, columns=[n for n in names if n.lower() in wanted])
        except (OSError, ValueError) as err:
            raise DatasetUnavailable(
                f"{self.where()} is not a readable {self.format} file: {_first_line(err)}"
            ) from err

    def public_description(self) -> dict[str, Any]:
        return {
            key: (REDACTED if key in SECRET_FIELDS else value)
            for key, value in self.describe().items()
        }


class LocalFileSource(DatasetSource):
    kind = "local"

    def __init__(self, path: str | Path, file_format: str | None = None) -> None:
        self.path = Path(path)
        super().__init__(file_format, self.path.name)

    def version(self) -> str:
        try:
            stat = self.path.stat()
        except OSError as err:
            raise DatasetUnavailable(f"dataset file {self.path} cannot be read") from err
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    def read_bytes(self) -> Path:
        if not self.path.is_file():
            raise DatasetUnavailable(f"dataset file {self.path} cannot be read")
        return self.path

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "format": self.format}

    def where(self) -> str:
        return str(self.path)


class S3Source(DatasetSource):
    """An object on S3 or an S3-compatible server; credentials from the record or the environment."""

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        key: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        file_format: str | None = None,
    ) -> None:
        self.bucket, self.key = bucket, key
        self.endpoint_url, self.region = endpoint_url, region
        self.access_key_id, self.secret_access_key = access_key_id, secret_access_key
        super().__init__(file_format, key)

    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}" + (
            f" at {self.endpoint_url}" if self.endpoint_url else ""
        )

    @property
    def identity(self) -> tuple[Any, ...]:
        """Who talks to which server: connections are shared per identity, never across."""
        return (self.endpoint_url, self.region, self.access_key_id, self.secret_access_key)

    @property
    def region_name(self) -> str:
        return self.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "bucket": self.bucket,
            "key": self.key,
            "format": self.format,
        }
        for name in ("endpoint_url", "region", "access_key_id", "secret_access_key"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out

    def version(self) -> str:
        head = self._call("head_object")
        return (
            f"{head.get('ETag', '')}:{head.get('LastModified', '')}:{head.get('ContentLength', '')}"
        )

    def read_bytes(self) -> bytes:
        response = self._call("get_object")
        try:
            return response["Body"].read()
        except Exception as err:  # the connection broke while streaming the body
            raise DatasetUnavailable(f"the download of {self.where()} was interrupted") from err

    def _call(self, operation: str) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return getattr(_s3_client(self), operation)(Bucket=self.bucket, Key=self.key)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
                raise DatasetUnavailable(f"{self.where()} does not exist") from err
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise DatasetUnavailable(f"access to {self.where()} was denied") from err
            raise DatasetUnavailable(f"S3 refused {operation} on {self.where()} ({code})") from err
        except NoCredentialsError as err:
            raise DatasetUnavailable(
                f"no S3 credentials for {self.where()}: store them with the dataset or give the "
                "server AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from err
        except BotoCoreError as err:
            raise DatasetUnavailable(f"the S3 server for {self.where()} cannot be reached") from err


_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def _s3_client(source: S3Source) -> Any:
    """One boto3 client per endpoint and identity (creating one costs tens of milliseconds)."""
    import boto3
    from botocore.config import Config

    key = source.identity
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=source.endpoint_url,
                region_name=source.region_name,
                aws_access_key_id=source.access_key_id,
                aws_secret_access_key=source.secret_access_key,
                config=Config(connect_timeout=10, read_timeout=300, retries={"max_attempts": 2}),
            )
            _clients[key] = client
        return client


class HttpSource(DatasetSource):
    """A file downloaded over HTTP(S); versioned by ETag or Last-Modified."""

    kind = "http"

    def __init__(
        self, url: str, *, file_format: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        super().__init__(file_format, urlparse(url).path)

    def where(self) -> str:
        parsed = urlparse(self.url)
        return f"{parsed.scheme}://{parsed.hostname}{':' + str(parsed.port) if parsed.port else ''}{parsed.path}"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "url": self.url, "format": self.format}
        if self.headers:
            out["headers"] = self.headers
        return out

    def version(self) -> str:
        import requests

        try:
            head = requests.head(self.url, headers=self.headers, timeout=10, allow_redirects=True)
        except requests.RequestException as err:
            raise DatasetUnavailable(f"{self.where()} cannot be reached") from err
        _check_status(head.status_code, self.where())
        validator = head.headers.get("ETag") or head.headers.get("Last-Modified")
        # Without a validator nothing tells a changed file from the same one: never reuse a copy.
        return validator or f"unversioned:{time.monotonic_ns()}"

    def read_bytes(self) -> bytes:
        import requests

        try:
            response = requests.get(self.url, headers=self.headers, timeout=(10, 300))
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as err:
            raise DatasetUnavailable(
                f"the download of {self.where()} failed or was interrupted"
            ) from err
        except requests.RequestException as err:
            raise DatasetUnavailable(f"{self.where()} cannot be downloaded") from err
        _check_status(response.status_code, self.where())
        return response.content


def _check_status(status: int, where: str) -> None:
    if status in (401, 403):
        raise DatasetUnavailable(f"access to {where} was denied (HTTP {status})")
    if status == 404:
        raise DatasetUnavailable(f"{where} does not exist (HTTP 404)")
    if status >= 400:
        raise DatasetUnavailable(f"{where} answered HTTP {status}")


def _format_from_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower().lstrip(".")
    return {"pq": "parquet", "txt": "csv"}.get(suffix, suffix)


def source_from_location(
    location: str | Path,
    file_format: str | None = None,
    *,
    engine: str | None = None,
    **options: Any,
) -> DatasetSource:
    """A source from what an admin types: a file path, ``s3://bucket/key`` or ``http(s)://...``.

    ``options`` are the S3 settings (endpoint_url, region, access_key_id, secret_access_key)
    or the HTTP ``headers``; left out, S3 credentials come from the server's environment.
    """
    text = str(location)
    parsed = urlparse(text)
    if engine == "spark":
        if options:
            raise InvalidMetadata("a Spark dataset takes its credentials from the Spark cluster")
        if importlib.util.find_spec("pyspark") is None:
            raise InvalidMetadata(
                "the Spark engine needs pyspark on the server: pip install 'lomas-jupyter[spark]'"
            )
        return SparkSource(text if "://" in text else str(Path(text).resolve()), file_format)
    if engine not in (None, "duckdb"):
        raise InvalidMetadata(f"unknown SQL engine {engine!r}; use duckdb (the default) or spark")
    if parsed.scheme in ("postgresql", "postgres"):
        # postgresql://user@host:port/db?table=schema.name
        query = dict(part.split("=", 1) for part in parsed.query.split("&") if "=" in part)
        table = query.pop("table", None)
        if not table:
            raise InvalidMetadata(
                "a PostgreSQL location names its table: postgresql://...?table=NAME"
            )
        rest = "&".join(f"{k}={v}" for k, v in query.items())
        return PostgresSource(parsed._replace(query=rest).geturl(), table)
    if parsed.scheme == "s3":
        if not parsed.netloc or not parsed.path.strip("/"):
            raise InvalidMetadata(f"an S3 location is s3://BUCKET/KEY, not {text!r}")
        return S3Source(parsed.netloc, parsed.path.lstrip("/"), file_format=file_format, **options)
    if parsed.scheme in ("http", "https"):
        return HttpSource(text, file_format=file_format, **options)
    if options:
        raise InvalidMetadata(
            f"options {', '.join(sorted(options))} only apply to S3 or HTTP locations"
        )
    return LocalFileSource(Path(text).resolve(), file_format)


def source_from_description(description: dict[str, Any]) -> DatasetSource:
    kind = description.get("kind")
    options = {k: v for k, v in description.items() if k not in ("kind", "format")}
    file_format = description.get("format")
    try:
        if kind == "local":
            return LocalFileSource(options["path"], file_format)
        if kind == "s3":
            return S3Source(
                options.pop("bucket"), options.pop("key"), file_format=file_format, **options
            )
        if kind == "http":
            return HttpSource(options.pop("url"), file_format=file_format, **options)
        if kind == "postgres":
            return PostgresSource(options["dsn"], options["table"])
        if kind == "spark":
            return SparkSource(options["path"], file_format)
    except (KeyError, TypeError) as err:
        raise InvalidMetadata(
            f"incomplete or unknown fields in a {kind} dataset source: {err}"
        ) from err
    raise InvalidMetadata(
        f"unknown dataset source kind {kind!r}; use local, s3, http, postgres or spark"
    )


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


class SparkSource(DatasetSource):
    reads_as = SPARK
    """A Parquet dataset that Apache Spark reads where it lives (a local path, or any URI the
    Spark cluster reaches, such as hdfs:// or s3a://): for data past one machine.

    SQL queries run on Spark; only the OpenDP path reads the rows (into the cache). Column
    types must match the metadata's, as for PostgreSQL.
    """

    kind = "spark"
    in_place = True
    TYPES = {
        "int": ("ByteType", "ShortType", "IntegerType", "LongType"),
        "float": ("FloatType", "DoubleType", "ByteType", "ShortType", "IntegerType", "LongType"),
        "string": ("StringType",),
        "boolean": ("BooleanType",),
        "datetime": ("TimestampType", "TimestampNTZType", "DateType"),
    }

    def __init__(self, path: str, file_format: str | None = None) -> None:
        self.path = str(path)
        self.format = file_format or "parquet"
        if self.format != "parquet":
            raise InvalidMetadata("Spark datasets are Parquet (a file or a folder of files)")

    @property
    def local(self) -> bool:
        return "://" not in self.path or self.path.startswith("file://")

    def where(self) -> str:
        return f"Spark dataset {self.path}"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "format": self.format}

    def column_types(self) -> dict[str, str]:
        """The file's column types, in Spark's names (read from the Parquet schema only)."""
        if self.local:
            import pyarrow.parquet as pq

            path = self.path.removeprefix("file://")
            if not os.path.exists(path):
                raise DatasetUnavailable(f"{self.where()} does not exist")
            try:
                schema = (
                    pq.read_schema(path) if os.path.isfile(path) else pq.ParquetDataset(path).schema
                )
            except (OSError, ValueError) as err:
                raise DatasetUnavailable(f"{self.where()} is not readable Parquet") from err
            return {field.name: _spark_type_name(field.type) for field in schema}
        from lomas_server.spark_session import spark_session

        try:
            frame = spark_session().read.parquet(self.path)
        except Exception as err:
            raise DatasetUnavailable(f"{self.where()} cannot be read by Spark") from err
        return {field.name: type(field.dataType).__name__ for field in frame.schema.fields}

    def check_columns(self, columns: dict[str, str]) -> None:
        # Spark SQL resolves names without regard to case, and so does this check.
        found = {name.lower(): kind for name, kind in self.column_types().items()}
        for name, kind in columns.items():
            if name.lower() not in found:
                raise DatasetUnavailable(
                    f"{self.where()} has no column {name!r} declared in the metadata"
                )
            if found[name.lower()] not in self.TYPES[kind]:
                raise DatasetUnavailable(
                    f"column {name!r} of {self.where()} is {found[name.lower()]}, not a type for {kind}"
                )

    def count_rows(self, required: list[str]) -> tuple[int, int]:
        """How many rows the files hold, and how many lack a value in ``required``."""
        from lomas_server.spark_session import spark_session

        try:
            frame = spark_session().read.parquet(self.path)
            stored = {field.name.lower(): field.name for field in frame.schema.fields}
            total = frame.count()
            missing = 0
            if required:
                condition = " OR ".join(f"`{stored[name.lower()]}` IS NULL" for name in required)
                missing = frame.filter(condition).count()
        except Exception as err:
            raise DatasetUnavailable(f"{self.where()} cannot be read by Spark") from err
        return int(total), int(missing)

    def check_engine(self) -> None:
        """Start Spark now, so that a server without Java or a cluster that is down refuses
        the query before its budget is reserved rather than failing after."""
        from lomas_server.spark_session import spark_session

        try:
            spark_session()
        except Exception as err:
            raise DatasetUnavailable(f"Spark cannot start for {self.where()}: {err}") from err

    def version(self) -> str:
        if not self.local:
            # Listed through Spark's own file system, so the version follows the files on
            # any storage the cluster reads (and readers and the cache are kept between queries).
            from lomas_server.spark_session import file_listing

            try:
                parts = file_listing(self.path)
            except Exception as err:
                raise DatasetUnavailable(f"{self.where()} cannot be listed by Spark") from err
            if not parts:
                raise DatasetUnavailable(f"{self.where()} holds no files")
            return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
        path = self.path.removeprefix("file://")
        try:
            if os.path.isfile(path):
                stat = os.stat(path)
                return f"{stat.st_mtime_ns}:{stat.st_size}"
            # A folder of part files: any file added, removed or rewritten is a new version.
            parts = sorted(
                (entry.path, entry.stat().st_mtime_ns, entry.stat().st_size)
                for entry in _walk_files(path)
            )
        except OSError as err:
            raise DatasetUnavailable(f"{self.where()} does not exist") from err
        if not parts:
            raise DatasetUnavailable(f"{self.where()} holds no files")
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]

    def read_bytes(self) -> bytes:
        raise DatasetUnavailable("a Spark dataset is read by Spark, not as a file")

    def load(self, columns: Collection[str] | None = None, *, strict: bool = False) -> Any:
        if self.local:
            import pyarrow.parquet as pq

            return pq.read_table(self.path.removeprefix("file://"))
        import pyarrow as pa

        from lomas_server.spark_session import spark_session

        return pa.Table.from_pandas(
            spark_session().read.parquet(self.path).toPandas(), preserve_index=False
        )


def whole_lines(data: bytes, where: str, *, strict: bool) -> bytes:
    """CSV bytes in which every line is a whole record: a line with an odd number of quotes
    would open a quoted field that runs into the next lines (one row could swallow other
    people's rows, or fail the whole file), so such lines are left out, or refused when
    ``strict``. Fields holding line breaks are therefore not supported."""
    import numpy as np

    if b'"' not in data:
        return data
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == ord("\n"))
    if len(ends) == 0 or ends[-1] != len(raw) - 1:
        ends = np.append(ends, len(raw) - 1)
    quotes = np.cumsum(raw == ord('"'))
    per_line = np.diff(np.concatenate(([0], quotes[ends])))
    odd = np.flatnonzero(per_line % 2)
    if len(odd) == 0:
        return data
    if strict or odd[0] == 0:
        # the header itself, or the admin adding the file: say which line
        raise DatasetUnavailable(
            f"{where}: line {int(odd[0]) + 1} leaves a quote open (fields holding line breaks "
            "are not supported; every record must be on one line)"
        )
    log.warning("%s: %d line(s) with a quote left open are left out", where, len(odd))
    starts = np.concatenate(([0], ends[:-1] + 1))
    keep = np.ones(len(ends), dtype=bool)
    keep[odd] = False
    return b"".join(data[starts[i] : ends[i] + 1] for i in np.flatnonzero(keep))


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _walk_files(folder: str) -> list[os.DirEntry[str]]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(folder)
    found: list[os.DirEntry[str]] = []
    for entry in os.scandir(folder):
        if entry.is_dir():
            found.extend(_walk_files(entry.path))
        elif entry.is_file() and not entry.name.startswith((".", "_")):
            found.append(entry)
    return found


def _spark_type_name(arrow_type: Any) -> str:
    """How Spark names an Arrow (Parquet) type."""
    import pyarrow as pa

    checks = [
        (pa.types.is_int8, "ByteType"),
        (pa.types.is_int16, "ShortType"),
        (pa.types.is_int32, "IntegerType"),
        (pa.types.is_int64, "LongType"),
        (pa.types.is_float32, "FloatType"),
        (pa.types.is_float64, "DoubleType"),
        (pa.types.is_boolean, "BooleanType"),
        (pa.types.is_date, "DateType"),
        (pa.types.is_timestamp, "TimestampType"),
        (
            lambda t: (
                pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)
            ),
            "StringType",
        ),
    ]
    return next((name for check, name in checks if check(arrow_type)), str(arrow_type))
