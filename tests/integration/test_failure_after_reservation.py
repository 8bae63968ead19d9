"""A query that fails after its budget was reserved: one generic reply, the spend stays,
the cause goes to the server log only.

Everything the server can check without running the query (the data is reachable, has the
declared columns with the declared types, fits its metadata) is checked before the
reservation and costs nothing. So the fault here is one only running the query can meet, and
it is real: the admin's PostgreSQL "table" is a view whose values cannot be computed (a
division by zero in its definition), which only reading the rows reveals."""

from __future__ import annotations

import uuid

import psycopg

from tests.conftest import sample_metadata

QUERY = "SELECT AVG(bill_length_mm) AS m FROM df"


def test_failure_after_data_is_touched(admin, make_user, server, postgres_server):
    view = f"fragile_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres_server.dsn, autocommit=True) as connection:
        connection.execute(
            f"CREATE TABLE {view}_rows (species text, island text, "
            "bill_length_mm double precision, bill_depth_mm double precision, "
            "flipper_length_mm double precision, body_mass_g double precision, sex text)"
        )
        connection.execute(
            f"INSERT INTO {view}_rows VALUES ('Adelie', 'Dream', 40, 18, 190, 3500, 'MALE')"
        )
        connection.execute(
            f"CREATE VIEW {view} AS SELECT species, island, bill_length_mm / 0 AS "
            "bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g, sex "
            f"FROM {view}_rows"
        )
    name = f"FRAGILE{uuid.uuid4().hex[:4]}"
    admin.add_dataset(
        name, f"{postgres_server.dsn}?table={view}", sample_metadata("penguin"), check_data=False
    )
    user = make_user(**{name: (1.0, 0.0)})

    reply = user.api.sql(name, QUERY, 0.25)
    assert reply.status_code == 500, reply.text
    body = reply.json()
    assert body["error"] == "query_failed"
    archive = user.api.get("/queries", params={"dataset": name}).json()["queries"]
    assert len(archive) == 1 and archive[0]["status"] == "failed"
    query_id = archive[0]["query_id"]
    assert query_id in body["message"] and "stays spent" in body["message"]
    # the analyst learns nothing about the cause
    assert "division" not in body["message"] and "zero" not in body["message"]
    # AVG is a noisy SUM and a noisy COUNT at 0.25 each
    assert user.api.get(f"/datasets/{name}/budget").json()["spent"]["epsilon"] == 0.5
    # the administrator finds it in the log, under the query id
    log = server.log()
    assert query_id in log and "division by zero" in log

    # no silent retry: the next request is a new release with a new charge
    again = user.api.sql(name, QUERY, 0.25)
    assert again.status_code == 500
    assert user.api.get(f"/datasets/{name}/budget").json()["spent"]["epsilon"] == 1.0
