"""Connectors: turn an admin's dataset description into rows, one module per kind of place."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lomas_server.datasets.sources.base import (
    FORMATS,
    REDACTED,
    SECRET_FIELDS,
    DatasetSource,
    whole_lines,
)
from lomas_server.datasets.sources.files import HttpSource, LocalFileSource, S3Source
from lomas_server.datasets.sources.postgres import PostgresSource
from lomas_server.datasets.sources.spark import SparkSource
from lomas_server.errors import InvalidMetadata

__all__ = [
    "FORMATS",
    "REDACTED",
    "SECRET_FIELDS",
    "DatasetSource",
    "HttpSource",
    "LocalFileSource",
    "PostgresSource",
    "S3Source",
    "SparkSource",
    "source_from_description",
    "source_from_location",
    "whole_lines",
]


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
