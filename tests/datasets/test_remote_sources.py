"""S3 (a real S3-compatible server, moto) and HTTP sources, and how each of them fails."""

from __future__ import annotations

import io
import uuid

import pandas as pd
import pytest

from lomas_server.datasets import (
    HttpSource,
    S3Source,
    conform_to_metadata,
    conformed_table,
    source_from_location,
)
from lomas_server.errors import DatasetUnavailable, InvalidMetadata
from lomas_server.metadata import DatasetMetadata
from tests.conftest import SAMPLE_DATA, sample_metadata
from tests.servers import MotoS3, free_port

PENGUIN = DatasetMetadata.from_dict(sample_metadata("penguin"))
CSV = (SAMPLE_DATA / "penguin.csv").read_bytes()


@pytest.fixture
def bucket(s3):
    name = f"b-{uuid.uuid4().hex[:10]}"
    s3.client().create_bucket(Bucket=name)
    return name


def test_s3_csv_and_parquet_load_like_the_local_file(s3, bucket):
    client = s3.client()
    client.put_object(Bucket=bucket, Key="p.csv", Body=CSV)
    parquet = io.BytesIO()
    pd.read_csv(io.BytesIO(CSV)).to_parquet(parquet)
    client.put_object(Bucket=bucket, Key="dir/p.parquet", Body=parquet.getvalue())
    local = conformed_table(source_from_location(SAMPLE_DATA / "penguin.csv").load(), PENGUIN)
    for key in ("p.csv", "dir/p.parquet"):
        source = source_from_location(f"s3://{bucket}/{key}", **s3.options())
        assert conformed_table(source.load(), PENGUIN).equals(local)


def test_s3_version_follows_the_etag(s3, bucket):
    client = s3.client()
    client.put_object(Bucket=bucket, Key="p.csv", Body=CSV)
    source = S3Source(bucket, "p.csv", **s3.options())
    first = source.version()
    assert source.version() == first
    client.put_object(Bucket=bucket, Key="p.csv", Body=CSV[: len(CSV) // 2].rsplit(b"\n", 1)[0])
    assert source.version() != first


def test_s3_failures_say_what_is_wrong(s3, bucket, tmp_path):
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        S3Source(bucket, "missing.csv", **s3.options()).version()
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        S3Source("no-such-bucket-here", "x.csv", **s3.options()).version()
    down = S3Source(
        bucket,
        "p.csv",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id="k",
        secret_access_key="s",
    )
    with pytest.raises(DatasetUnavailable, match="cannot be reached"):
        down.version()
    strict = MotoS3(tmp_path / "strict", enforce_auth=True).start()
    try:
        with pytest.raises(DatasetUnavailable, match="denied"):
            S3Source("any", "x.csv", **strict.options()).version()
    finally:
        strict.stop()


def test_http_download_with_etag(file_server):
    file_server.files["/data/p.csv"] = CSV
    source = source_from_location(f"{file_server.url}/data/p.csv")
    assert isinstance(source, HttpSource)
    version = source.version()
    assert version.startswith('"') and source.version() == version
    assert conform_to_metadata(source.load(), PENGUIN).shape == (344, 7)
    file_server.files["/data/p.csv"] = CSV + b"\n"
    assert source.version() != version


def test_http_failures_say_what_is_wrong(file_server):
    file_server.files["/data/p.csv"] = CSV
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        HttpSource(f"{file_server.url}/data/missing.csv").version()
    with pytest.raises(DatasetUnavailable, match="denied"):
        HttpSource(f"{file_server.url}/forbidden/p.csv").version()
    with pytest.raises(DatasetUnavailable, match="cannot be reached"):
        HttpSource(f"http://127.0.0.1:{free_port()}/p.csv").version()
    with pytest.raises(DatasetUnavailable, match="interrupted"):
        HttpSource(f"{file_server.url}/cut/data/p.csv").load()


def test_descriptions_keep_secrets_out_of_public_view(s3):
    source = source_from_location("s3://b/k.csv", **s3.options())
    assert source.describe()["secret_access_key"] == s3.SECRET  # stored for the server
    public = source.public_description()
    assert s3.SECRET not in str(public) and s3.KEY_ID not in str(public)
    assert s3.SECRET not in source.where()
    http = source_from_location(
        "https://example.org/x.parquet", headers={"Authorization": "Bearer zzz"}
    )
    assert "zzz" not in str(http.public_description()) and http.format == "parquet"


def test_bad_locations_are_refused():
    with pytest.raises(InvalidMetadata, match="s3://BUCKET/KEY"):
        source_from_location("s3://only-bucket")
    with pytest.raises(InvalidMetadata, match="format"):
        source_from_location("s3://b/data.json")
    with pytest.raises(InvalidMetadata, match="only apply"):
        source_from_location("/tmp/x.csv", endpoint_url="http://x")
