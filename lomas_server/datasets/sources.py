"""Connectors: turn an admin's dataset description into rows.

A source reports a cheap ``version`` (changes whenever the underlying data changes) so the
cache can tell a fresh copy from a stale one without reading the data.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import pandas as pd

from lomas_server.errors import DatasetUnavailable, InvalidMetadata

FORMATS = ("csv", "parquet")


class DatasetSource(abc.ABC):
    @abc.abstractmethod
    def version(self) -> str:
        """A token that changes whenever the data changes."""

    @abc.abstractmethod
    def load(self) -> pd.DataFrame:
        """Read every row."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """The JSON description stored in the admin store."""


class LocalFileSource(DatasetSource):
    def __init__(self, path: str | Path, file_format: str | None = None) -> None:
        self.path = Path(path)
        self.format = file_format or _format_from_suffix(self.path)
        if self.format not in FORMATS:
            raise InvalidMetadata(
                f"unsupported file format {self.format!r}; use one of {', '.join(FORMATS)}"
            )

    def version(self) -> str:
        try:
            stat = self.path.stat()
        except OSError as err:
            raise DatasetUnavailable(f"dataset file {self.path} cannot be read") from err
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    def load(self) -> pd.DataFrame:
        try:
            if self.format == "csv":
                # Everything as text first: conform_to_metadata converts with the admin's types,
                # so pandas' guesses never decide what a column is.
                return pd.read_csv(self.path, dtype=str, keep_default_na=True)
            return pd.read_parquet(self.path)
        except (OSError, ValueError) as err:
            raise DatasetUnavailable(f"dataset file {self.path} cannot be read") from err

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "path": str(self.path), "format": self.format}


def _format_from_suffix(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"pq": "parquet", "txt": "csv"}.get(suffix, suffix)


def source_from_description(description: dict[str, Any]) -> DatasetSource:
    kind = description.get("kind")
    if kind == "local":
        return LocalFileSource(description["path"], description.get("format"))
    raise InvalidMetadata(f"unknown dataset source kind {kind!r}")
