"""Files: on the server's disk, in S3 (or any S3-compatible store), or behind an HTTP URL."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lomas_server.datasets.sources.base import (
    DatasetSource,
)
from lomas_server.errors import DatasetUnavailable


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
