"""Time limits over HTTP: a query past its limit is stopped, stays paid and is archived as
'stopped'; planning past its limit costs nothing; other users are served meanwhile; SIGTERM
stops the server within seconds whatever runs."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pandas as pd
import pytest

from lomas_server.service.admin import AdminService
from lomas_server.store.sqlite import SqliteStore
from tests.conftest import seed_datasets
from tests.servers import Api, ServerProcess

# 400 x 250 declared public groups: releasing every one of them (noise on 100,000 values)
# keeps an engine busy for tens of seconds, far past the limits set below.
GRID_QUERY = "SELECT a, b, COUNT(*) AS n FROM df GROUP BY a, b"
SMALL_QUERY = "SELECT COUNT(*) AS n FROM df"


def _grid_dataset(admin: AdminService, folder) -> None:
    a = [f"a{i}" for i in range(400)]
    b = [f"b{i}" for i in range(250)]
    rng = np.random.default_rng(7)
    path = folder / "grid.csv"
    pd.DataFrame({"id": range(1000), "a": rng.choice(a, 1000), "b": rng.choice(b, 1000)}).to_csv(
        path, index=False
    )
    metadata = {
        "max_ids": 1,
        "rows": 1000,
        "columns": {
            "id": {"type": "int", "private_id": True},
            "a": {"type": "string", "categories": a, "public_keys": True},
            "b": {"type": "string", "categories": b, "public_keys": True},
        },
    }
    admin.add_dataset("GRID", path, metadata)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("limits")
    path = folder / "admin.sqlite"
    sqlite = SqliteStore(path)
    admin = AdminService(sqlite)
    seed_datasets(admin, folder / "data")
    _grid_dataset(admin, folder)
    sqlite.close()
    return path


@pytest.fixture(scope="module")
def admin(store):
    sqlite = SqliteStore(store)
    yield AdminService(sqlite)
    sqlite.close()


@pytest.fixture(scope="module")
def limited(store, tmp_path_factory):
    server = ServerProcess(
        store,
        tmp_path_factory.mktemp("limited"),
        extra_args=(
            "--LomasServerApp.plan_time_limit=1",
            "--LomasServerApp.query_time_limit=1.5",
        ),
    ).start()
    yield server
    server.stop()


def _user(admin: AdminService, server: ServerProcess) -> tuple[str, Api]:
    name = f"user-{uuid.uuid4().hex[:8]}"
    token = admin.add_user(name)
    for dataset in ("GRID", "PENGUIN"):
        admin.grant(name, dataset, 10.0, 1e-4)
    return name, Api(server.api, token)


def test_a_query_past_its_limit_is_stopped_stays_paid_and_is_archived(limited, admin):
    _, api = _user(admin, limited)
    _, other = _user(admin, limited)
    # Runs in the background while another analyst queries.
    replies: list = []
    slow = threading.Thread(target=lambda: replies.append(api.sql("GRID", GRID_QUERY, 1.0)))
    slow.start()
    time.sleep(0.3)
    small = other.sql("PENGUIN", SMALL_QUERY, 0.5)
    slow.join(60)
    assert small.status_code == 200, small.text
    reply = replies[0]
    assert reply.status_code == 503, reply.text
    body = reply.json()
    assert body["error"] == "time_limit_exceeded"
    assert "limit of 1.5 s" in body["message"] and "budget stays spent" in body["message"]
    spent = api.get("/datasets/GRID/budget").json()["spent"]
    assert spent["epsilon"] == pytest.approx(1.0)
    (entry,) = api.get("/queries").json()["queries"]
    assert entry["status"] == "stopped"
    assert entry["query_id"] in body["message"]
    assert entry["result"] is None
    # The same request again is not a replay of a stopped query: it runs (and pays) again,
    # or, while the first is still ending inside native code, is refused before paying.
    again = api.sql("GRID", GRID_QUERY, 1.0)
    assert again.status_code == 503
    paid_again = again.json()["error"] == "time_limit_exceeded"
    if not paid_again:
        assert again.json()["error"] == "engine_busy"
        assert "your earlier query" in again.json()["message"]
    spent = api.get("/datasets/GRID/budget").json()["spent"]["epsilon"]
    assert spent == pytest.approx(2.0 if paid_again else 1.0)


def test_planning_past_its_limit_costs_nothing(limited, admin):
    _, api = _user(admin, limited)
    # A target accuracy for means by group: an OpenDP search of many plans (seconds).
    body = {
        "query": {
            "group_by": ["species"],
            "aggregates": [{"op": "mean", "column": "body_mass_g"}, {"op": "count"}],
        },
        "accuracy": {"half_width": 5000},
    }
    for path in ("/datasets/PENGUIN/opendp/cost", "/datasets/PENGUIN/opendp"):
        reply = api.post(path, body)
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"] == "time_limit_exceeded"
        assert "nothing was spent" in reply.json()["message"]
    assert api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.0
    assert api.get("/queries").json()["queries"] == []
    assert api.sql("PENGUIN", SMALL_QUERY, 0.5).status_code == 200


def test_sigterm_stops_the_server_within_seconds_while_a_query_runs(store, admin, tmp_path):
    server = ServerProcess(
        store, tmp_path, extra_args=("--LomasServerApp.query_time_limit=600",)
    ).start()
    name, api = _user(admin, server)
    threading.Thread(target=lambda: api.sql("GRID", GRID_QUERY, 1.0), daemon=True).start()
    deadline = time.monotonic() + 60
    while not any(e.status == "running" for e in admin.store.archive(name)):
        assert time.monotonic() < deadline, "the query never started"
        time.sleep(0.1)
    time.sleep(0.5)  # well inside the engine's tens of seconds of work
    server.stop(timeout=10)
    assert server.process.returncode == 0, server.log()
    # The cut-off query is filed as interrupted (at the stop, or else at the next start);
    # its spend stays.
    restarted = ServerProcess(store, tmp_path).start()
    try:
        (entry,) = admin.store.archive(name)
        assert entry.status == "interrupted"
        assert admin.store.spent(name, "GRID").epsilon == pytest.approx(1.0)
    finally:
        restarted.stop()


# A target accuracy for means by group: an OpenDP search of many plans, stopped at the limit.
SLOW_ESTIMATE = {
    "query": {
        "group_by": ["species"],
        "aggregates": [{"op": "mean", "column": "body_mass_g"}, {"op": "count"}],
    },
    "accuracy": {"half_width": 5000},
}


def _timed(api: Api, path: str, body: dict | None, finished: list) -> None:
    reply = api.post(path, body) if body is not None else api.get(path)
    finished.append((time.monotonic(), reply))


def _slow_estimates(api: Api, count: int, finished: list) -> list[threading.Thread]:
    """``count`` slow estimates sent at once, each different (no plan is remembered)."""
    threads = [
        threading.Thread(
            target=_timed,
            args=(
                api,
                "/datasets/PENGUIN/opendp/cost",
                {**SLOW_ESTIMATE, "delta": i * 1e-9},
                finished,
            ),
        )
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    return threads


def test_one_analyst_cannot_make_another_wait_for_all_their_requests(limited, admin):
    _, alice = _user(admin, limited)
    _, bob = _user(admin, limited)
    hers: list = []
    threads = _slow_estimates(alice, 4, hers)
    time.sleep(0.3)  # hers are queued on the engine
    his: list = []
    _timed(
        bob, "/datasets/PENGUIN/smartnoise-sql/cost", {"query": SMALL_QUERY, "epsilon": 0.1}, his
    )
    for thread in threads:
        thread.join(60)
    assert his[0][1].status_code == 200, his[0][1].text
    assert [reply.status_code for _, reply in hers] == [503] * 4
    # Taking turns: his estimate ran after at most one of hers, not after all four.
    before_his = [done for done, _ in hers if done < his[0][0]]
    assert len(before_his) <= 1, (len(before_his), "of alice's requests finished first")


def test_an_analyst_gets_429_past_their_share_of_requests(limited, admin):
    _, alice = _user(admin, limited)
    replies: list = []
    threads = _slow_estimates(alice, 7, replies)
    for thread in threads:
        thread.join(60)
    statuses = sorted(reply.status_code for _, reply in replies)
    assert statuses.count(429) >= 3, statuses  # at most 4 at once (max_requests_per_user)
    refused = next(reply for _, reply in replies if reply.status_code == 429)
    assert refused.json()["error"] == "too_many_requests"
    assert "wait for one to finish" in refused.json()["message"]
    assert alice.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.0


def test_reads_and_health_are_served_while_engine_work_waits(limited, admin):
    analysts = [_user(admin, limited)[1] for _ in range(2)]
    slow: list = []
    threads = [thread for api in analysts for thread in _slow_estimates(api, 4, slow)]
    time.sleep(0.5)  # every engine-work thread is taken or waiting on the engine
    reads: list = []
    _, reader = _user(admin, limited)
    for path in ("/datasets", "/datasets/PENGUIN/budget", "/queries"):
        _timed(reader, path, None, reads)
    _timed(Api(limited.api), "/health", None, reads)
    for thread in threads:
        thread.join(60)
    assert [reply.status_code for _, reply in reads] == [200] * 4
    # The reads did not wait for the engine's queue: they were done before most of it.
    last_read = max(done for done, _ in reads)
    assert sum(done < last_read for done, _ in slow) <= 2
