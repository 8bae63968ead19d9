"""The server on the MongoDB admin store (FerretDB, a real MongoDB-wire server): two server
processes sharing one database, and an outage of the database."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from lomas_server.accounting import PrivacyAmount
from lomas_server.service.admin import AdminService
from lomas_server.store.mongo import MongoStore
from tests.conftest import MANY_AT_ONCE, SAMPLE_DATA, sample_metadata
from tests.servers import Api, FerretDB, ServerProcess

QUERY = "SELECT COUNT(*) AS n FROM df"


def _seed(url: str) -> str:
    store = MongoStore(url)
    admin = AdminService(store)
    admin.add_dataset("PENGUIN", SAMPLE_DATA / "penguin.csv", sample_metadata("penguin"))
    token = admin.add_user("analyst")
    admin.grant("analyst", "PENGUIN", 0.75, 0.0)
    store.close()
    return token


def test_two_servers_on_one_database_never_overspend(ferretdb, tmp_path):
    url = ferretdb.database_url(f"two_{uuid.uuid4().hex[:8]}")
    token = _seed(url)
    servers = [ServerProcess(url, tmp_path, extra_args=MANY_AT_ONCE).start() for _ in range(2)]
    try:
        apis = [Api(server.api, token) for server in servers]
        barrier = threading.Barrier(50)

        def fire(i: int):
            barrier.wait()
            return apis[i % 2].sql("PENGUIN", QUERY, 0.1, fresh=True)

        with ThreadPoolExecutor(50) as pool:
            replies = list(pool.map(fire, range(50)))
        assert sorted(r.status_code for r in replies).count(200) == 7
        assert {r.status_code for r in replies} == {200, 403}
        store = MongoStore(url)
        assert store.spent("analyst", "PENGUIN") == PrivacyAmount.budget(0.7, 0)
        assert len(store.ledger(user="analyst")) == 7
        store.close()
    finally:
        for server in servers:
            server.stop()


def test_database_outage_is_unhealthy_and_503_and_spends_nothing(tmp_path):
    database = FerretDB(tmp_path / "db").start()
    url = database.database_url("outage")
    token = _seed(url)
    server = ServerProcess(url, tmp_path).start()
    try:
        api = Api(server.api, token)
        assert api.sql("PENGUIN", QUERY, 0.1).status_code == 200
        database.stop()
        health = api.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"
        reply = api.sql("PENGUIN", QUERY, 0.2)
        assert reply.status_code == 503 and reply.json()["error"] == "store_unavailable"
        # the same database comes back on the same port and data: nothing was spent meanwhile
        again = FerretDB(tmp_path / "db")
        again.port, again.url = database.port, database.url
        again.start()
        try:
            assert api.get("/health").status_code == 200
            assert api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.1
            assert api.sql("PENGUIN", QUERY, 0.2).status_code == 200
        finally:
            again.stop()
    finally:
        server.stop()
        database.stop()


def test_server_starts_while_the_database_is_down(tmp_path):
    port_holder = FerretDB(tmp_path / "never")  # only for a free port: never started
    url = f"mongodb://127.0.0.1:{port_holder.port}/lomas"
    server = ServerProcess(url, tmp_path)
    server.start()
    try:
        assert Api(server.api).get("/health").status_code == 503
        reply = Api(server.api, "lomas_whatever").get("/datasets")
        assert reply.status_code == 503
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["Dr. Antartica", "a$b.c"])
def test_user_names_with_dots_and_dollars(ferretdb, name):
    store = MongoStore(ferretdb.database_url(f"n_{uuid.uuid4().hex[:8]}"))
    admin = AdminService(store)
    admin.add_dataset("PENGUIN", SAMPLE_DATA / "penguin.csv", sample_metadata("penguin"))
    admin.add_user(name)
    admin.grant(name, "PENGUIN", 1.0, 0.0)
    assert admin.budgets(name)[0]["remaining"]["epsilon"] == 1.0
    store.close()
