"""``lomas-admin add-dataset`` options for where the data lives and how it is accounted, as an
administrator types them: real subprocesses, a real store file, a real S3 server (moto)."""

from __future__ import annotations

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tests.cli.test_import_export import lomas_admin
from tests.conftest import SAMPLE_DATA

PENGUIN_META = str(SAMPLE_DATA / "penguin.yaml")


def test_s3_dataset_with_credentials_from_the_environment(s3, tmp_path):
    client = s3.client()
    if "cli-data" not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket="cli-data")
    client.put_object(
        Bucket="cli-data", Key="penguin.csv", Body=(SAMPLE_DATA / "penguin.csv").read_bytes()
    )
    url = f"sqlite:///{tmp_path / 'admin.sqlite'}"
    keys = {"LOMAS_S3_ACCESS_KEY_ID": s3.KEY_ID, "LOMAS_S3_SECRET_ACCESS_KEY": s3.SECRET}
    added = lomas_admin(
        url,
        "add-dataset",
        "PENGUIN",
        "--file",
        "s3://cli-data/penguin.csv",
        "--metadata",
        PENGUIN_META,
        "--s3-endpoint",
        s3.endpoint,
        "--s3-region",
        "eu-west-1",
        "--s3-credentials-from-env",
        "--accounting",
        "zcdp",
        env=keys,
    )
    assert added["dataset"] == "PENGUIN" and "species" in added["columns"]
    (listed,) = lomas_admin(url, "list-datasets")
    assert listed["source"]["endpoint_url"] == s3.endpoint
    assert listed["source"]["region"] == "eu-west-1"
    assert listed["accounting"]["mode"] == "zcdp"
    assert s3.SECRET not in repr(added) + repr(listed)


def test_missing_credentials_variable_is_named(tmp_path):
    url = f"sqlite:///{tmp_path / 'admin.sqlite'}"
    stderr = lomas_admin(
        url,
        "add-dataset",
        "X",
        "--file",
        "s3://bucket/x.csv",
        "--metadata",
        PENGUIN_META,
        "--s3-credentials-from-env",
        expect=2,
        env={"LOMAS_S3_ACCESS_KEY_ID": ""},
    )
    assert "LOMAS_S3_ACCESS_KEY_ID is not set" in stderr and "Traceback" not in stderr


def test_http_header_option_needs_header_and_variable(tmp_path):
    url = f"sqlite:///{tmp_path / 'admin.sqlite'}"
    stderr = lomas_admin(
        url,
        "add-dataset",
        "X",
        "--file",
        "https://data.example.org/x.csv",
        "--metadata",
        PENGUIN_META,
        "--http-header-from-env",
        "Authorization",
        expect=2,
    )
    assert "HEADER=ENVVAR" in stderr


def test_s3_options_on_a_local_file_are_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'admin.sqlite'}"
    stderr = lomas_admin(
        url,
        "add-dataset",
        "X",
        "--file",
        str(SAMPLE_DATA / "penguin.csv"),
        "--metadata",
        PENGUIN_META,
        "--s3-endpoint",
        "http://127.0.0.1:1",
        expect=2,
    )
    assert "only apply to S3 or HTTP" in stderr


def test_spark_engine_and_no_check(tmp_path):
    parquet = tmp_path / "penguin.parquet"
    pq.write_table(pacsv.read_csv(SAMPLE_DATA / "penguin.csv"), parquet)
    url = f"sqlite:///{tmp_path / 'admin.sqlite'}"
    lomas_admin(
        url,
        "add-dataset",
        "SP",
        "--file",
        str(parquet),
        "--metadata",
        PENGUIN_META,
        "--engine",
        "spark",
    )
    lomas_admin(
        url,
        "add-dataset",
        "LATER",
        "--file",
        str(tmp_path / "not-yet.csv"),
        "--metadata",
        PENGUIN_META,
        "--no-check",
    )
    kinds = {d["name"]: d["source"]["kind"] for d in lomas_admin(url, "list-datasets")}
    assert kinds == {"SP": "spark", "LATER": "local"}
