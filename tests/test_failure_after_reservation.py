"""A query that fails after its budget was reserved: one generic reply, the spend stays,
the cause goes to the server log only. The fault is real: the admin's file is replaced by one
that no longer matches its metadata after the dataset was registered."""

from __future__ import annotations

import shutil

from tests.conftest import SAMPLE_DATA, sample_metadata

QUERY = "SELECT COUNT(*) AS n FROM df"


def test_failure_after_data_is_touched(admin, make_user, server, tmp_path):
    data = tmp_path / "penguin.csv"
    shutil.copyfile(SAMPLE_DATA / "penguin.csv", data)
    admin.add_dataset("FRAGILE", data, sample_metadata("penguin"))
    user = make_user(FRAGILE=(1.0, 0.0))
    # The file changes under the server: a column the metadata declares disappears.
    shutil.copyfile(SAMPLE_DATA / "titanic.csv", data)

    reply = user.api.sql("FRAGILE", QUERY, 0.25)
    assert reply.status_code == 500
    body = reply.json()
    assert body["error"] == "query_failed"
    archive = user.api.get("/queries", params={"dataset": "FRAGILE"}).json()["queries"]
    assert len(archive) == 1 and archive[0]["status"] == "failed"
    query_id = archive[0]["query_id"]
    assert query_id in body["message"] and "stays spent" in body["message"]
    # the analyst learns nothing about the cause
    assert "species" not in body["message"] and "column" not in body["message"]
    assert user.api.get("/datasets/FRAGILE/budget").json()["spent"]["epsilon"] == 0.25
    # the administrator finds it in the log, under the query id
    log = server.log()
    assert query_id in log and "species" in log

    # no silent retry: the next request is a new release with a new charge
    again = user.api.sql("FRAGILE", QUERY, 0.25)
    assert again.status_code == 500
    assert user.api.get("/datasets/FRAGILE/budget").json()["spent"]["epsilon"] == 0.5
