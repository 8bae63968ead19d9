"""Spent budget and the archive survive a stop, and a SIGKILL in the middle of a query."""

from __future__ import annotations

import sqlite3
import time

import numpy as np
import pandas as pd
import pytest

from lomas_server.service.admin import AdminService
from lomas_server.store.sqlite import SqliteStore
from tests.conftest import seed_datasets
from tests.servers import Api, ServerProcess

BIG_META = {
    "max_ids": 1,
    "row_privacy": True,
    "columns": {
        "g": {
            "type": "string",
            "categories": ["a", "b", "c"],
            "nullable": False,
            "public_keys": True,
        },
        "x": {"type": "float", "lower": 0.0, "upper": 100.0},
    },
}


@pytest.fixture
def own_store(tmp_path):
    """A store of this test's own, with a user holding budgets; returns (path, token)."""
    path = tmp_path / "admin.sqlite"
    store = SqliteStore(path)
    admin = AdminService(store)
    seed_datasets(admin, tmp_path / "data")
    rng = np.random.default_rng(0)
    # Big enough that reading it takes a while: the server scans it at each query (see
    # SCANNING), so the query runs long after its budget is reserved: time to kill the server.
    rows = 6_000_000
    big = pd.DataFrame({"g": rng.choice(["a", "b", "c"], rows), "x": rng.uniform(0, 100, rows)})
    big.to_parquet(tmp_path / "data" / "big.parquet", index=False)
    admin.add_dataset("BIG", tmp_path / "data" / "big.parquet", BIG_META)
    token = admin.add_user("restarter")
    admin.grant("restarter", "PENGUIN", 5.0, 0.0)
    admin.grant("restarter", "BIG", 5.0, 0.0)
    store.close()
    return path, token


def test_budget_and_archive_survive_a_clean_restart(own_store, tmp_path):
    path, token = own_store
    server = ServerProcess(path, tmp_path).start()
    api = Api(server.api, token)
    assert api.sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", 0.4).status_code == 200
    server.stop()
    again = ServerProcess(path, tmp_path).start()
    try:
        api = Api(again.api, token)
        assert api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.4
        archive = api.get("/queries").json()["queries"]
        assert [q["status"] for q in archive] == ["done"]
    finally:
        again.stop()


def _wait_for_running_entry(path, timeout=60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = sqlite3.connect(path)
        row = conn.execute("SELECT query_id FROM archive WHERE status='running'").fetchone()
        conn.close()
        if row:
            return row[0]
        time.sleep(0.005)
    raise AssertionError("the query never started running")


SCANNING = ("--LomasServerApp.scan_parquet_above_bytes=0",)


def test_sigkill_during_a_query_keeps_the_spend_and_marks_it_interrupted(own_store, tmp_path):
    path, token = own_store
    server = ServerProcess(path, tmp_path, extra_args=SCANNING).start()
    api = Api(server.api, token)
    import threading

    replies = []
    worker = threading.Thread(
        target=lambda: replies.append(
            _safe_call(lambda: api.sql("BIG", "SELECT g, AVG(x) AS m FROM df GROUP BY g", 0.5))
        )
    )
    worker.start()
    query_id = _wait_for_running_entry(path)
    server.kill()  # SIGKILL: no chance to clean up
    worker.join(30)
    assert replies and replies[0] is None  # the client saw the connection drop

    again = ServerProcess(path, tmp_path).start()
    try:
        api = Api(again.api, token)
        spent = api.get("/datasets/BIG/budget").json()["spent"]
        assert spent == {"epsilon": 1.0, "delta": 0.0}  # AVG: noisy SUM + noisy COUNT at 0.5
        archive = api.get("/queries", params={"dataset": "BIG"}).json()["queries"]
        assert [(q["query_id"], q["status"]) for q in archive] == [(query_id, "interrupted")]
        # the store is healthy and usable after the crash
        assert api.sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", 0.1).status_code == 200
    finally:
        again.stop()


def _safe_call(fn):
    try:
        return fn()
    except Exception:
        return None
