"""Datasets on S3 and HTTP through the real server: queries, cache invalidation, failures,
and credentials that never show."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import SAMPLE_DATA, sample_metadata

CSV = (SAMPLE_DATA / "penguin.csv").read_bytes()
FEWER = b"\n".join(CSV.splitlines()[:101]) + b"\n"  # header and the first 100 penguins
COUNT = "SELECT COUNT(*) AS n FROM df"


def _name() -> str:
    return f"R{uuid.uuid4().hex[:8]}"


@pytest.fixture
def s3_dataset(s3, admin):
    bucket, name = f"b-{uuid.uuid4().hex[:10]}", _name()
    s3.client().create_bucket(Bucket=bucket)
    s3.client().put_object(Bucket=bucket, Key="penguin.csv", Body=CSV)
    admin.add_dataset(
        name, f"s3://{bucket}/penguin.csv", sample_metadata("penguin"), source_options=s3.options()
    )
    return name, bucket


def _spent(user, dataset):
    return user.api.get(f"/datasets/{dataset}/budget").json()["spent"]["epsilon"]


def test_s3_dataset_is_queried_and_reloaded_when_the_object_changes(s3, s3_dataset, make_user):
    name, bucket = s3_dataset
    user = make_user(**{name: (50.0, 0.0)})
    first = user.api.sql(name, COUNT, 10.0).json()["result"]["data"][0][0]
    assert abs(first - 344) < 10
    s3.client().put_object(Bucket=bucket, Key="penguin.csv", Body=FEWER)
    second = user.api.sql(name, COUNT, 9.0).json()["result"]["data"][0][0]
    assert abs(second - 100) < 10


def test_http_dataset_is_queried(file_server, admin, make_user):
    name = _name()
    file_server.files[f"/{name}.csv"] = CSV
    admin.add_dataset(name, f"{file_server.url}/{name}.csv", sample_metadata("penguin"))
    user = make_user(**{name: (5.0, 0.0)})
    reply = user.api.sql(name, COUNT, 5.0)
    assert reply.status_code == 200 and abs(reply.json()["result"]["data"][0][0] - 344) < 15


@pytest.mark.parametrize("fault", ["object removed", "server down", "access denied"])
def test_unreachable_data_is_503_and_spends_nothing(
    fault, s3, s3_dataset, file_server, admin, make_user
):
    name, bucket = s3_dataset
    if fault == "object removed":
        s3.client().delete_object(Bucket=bucket, Key="penguin.csv")
    elif fault == "server down":
        name = _name()
        admin.add_dataset(
            name,
            "s3://b/penguin.csv",
            sample_metadata("penguin"),
            check_data=False,
            source_options={
                "endpoint_url": "http://127.0.0.1:9",
                "access_key_id": "k",
                "secret_access_key": "s",
            },
        )
    else:
        name = _name()
        admin.add_dataset(
            name, f"{file_server.url}/forbidden/p.csv", sample_metadata("penguin"), check_data=False
        )
    user = make_user(**{name: (5.0, 0.0)})
    reply = user.api.sql(name, COUNT, 1.0)
    assert reply.status_code == 503
    body = reply.json()
    assert body["error"] == "dataset_unavailable" and "nothing was spent" in body["message"]
    assert bucket not in body["message"] and "127.0.0.1" not in body["message"]  # no detail leaks
    assert _spent(user, name) == 0.0
    assert user.api.get("/queries").json()["queries"] == []


def test_download_interrupted_is_found_before_the_reservation(file_server, admin, make_user):
    name = _name()
    file_server.files[f"/{name}.csv"] = CSV
    # HEAD succeeds (the data looks reachable), GET breaks halfway through the rows: the rows
    # are read before anything is reserved, so the broken download costs nothing.
    admin.add_dataset(
        name, f"{file_server.url}/cut/{name}.csv", sample_metadata("penguin"), check_data=False
    )
    user = make_user(**{name: (5.0, 0.0)})
    reply = user.api.sql(name, COUNT, 1.0)
    assert reply.status_code == 503 and reply.json()["error"] == "dataset_unavailable"
    assert "nothing was spent" in reply.json()["message"]
    assert _spent(user, name) == 0.0
    assert user.api.get("/queries").json()["queries"] == []


def test_credentials_never_show(s3, s3_dataset, make_user, admin, server):
    name, bucket = s3_dataset
    user = make_user(**{name: (5.0, 0.0)})
    replies = [
        user.api.get("/datasets"),
        user.api.get(f"/datasets/{name}/metadata"),
        user.api.sql(name, COUNT, 1.0),
        user.api.post(f"/datasets/{name}/smartnoise-sql/cost", {"query": COUNT, "epsilon": 1.0}),
        user.api.get("/queries"),
    ]
    s3.client().delete_object(Bucket=bucket, Key="penguin.csv")
    replies.append(user.api.sql(name, "SELECT COUNT(*) AS m FROM df", 1.0))  # a failure, logged
    for reply in replies:
        assert s3.SECRET not in reply.text and s3.KEY_ID not in reply.text
    assert s3.SECRET not in server.log() and s3.KEY_ID not in server.log()
    for entry in admin.archive(user.name):
        assert s3.SECRET not in str(entry) and s3.KEY_ID not in str(entry)
    listing = [admin.public_source(d) for d in admin.list_datasets()]
    assert s3.SECRET not in str(listing) and s3.KEY_ID not in str(listing)
