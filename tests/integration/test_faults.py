"""Standing fault tests against real servers: each fault is produced for real, nothing is mocked.

a. SIGKILL of the server while several queries run (both engines), then restarts on the same
   store (tests/integration/test_restart.py kills one query; this extends it).
b. The MongoDB-wire store (FerretDB) unreachable mid-life: stopped between queries, checked on
   every endpoint (tests/integration/test_mongo_deployment.py covers one query and the budget); killed
   while a query runs after its reservation (the paid release must still reach the analyst);
   and the network to it cut inside a reservation by a TCP proxy that reads the wire
   protocol's length-prefixed messages. A MongoDB reservation is two writes without a
   transaction, the 'running' archive entry and then the ledger entry; the proxy cuts just
   before the ledger insert reaches the database, or lets the database do and acknowledge it
   and swallows the acknowledgement. The server then cannot know whether it spent: its 503
   must not claim that nothing was spent, and its next start must settle the entry, as
   'interrupted' (the spend stays) or 'failed' at no cost, so that every spend has an entry.
c. The SQLite store's file system full (a tmpfs of a few MB filled to the last byte) at the
   reservation and while a query runs, and the store unwritable (an ext4 loop mount whose
   store files are made immutable with ``chattr +i``, which refuses writes even to root and
   through files already open), each also with store connections first opened while the
   fault lasts (one per request thread). These need ``mount``, i.e. root with CAP_SYS_ADMIN
   (CI and the dev machines run as root); elsewhere they are skipped, never mocked.

Every property is a plain test: a 503 store_unavailable JSON error (no 500, no traceback),
no lost, double or unexplained spend, a paid release never hidden, no corruption, service
back when the fault ends. Scenarios run once per module fixture and several tests read what
they left behind.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from lomas_server.accounting import PrivacyAmount
from lomas_server.service.admin import AdminService
from lomas_server.store import open_store
from lomas_server.store.mongo import MongoStore
from tests.conftest import seed_datasets
from tests.integration.test_restart import BIG_META as RESTART_META
from tests.servers import Api, FerretDB, ServerProcess

# The big dataset is streamed from its Parquet file at each query (nothing kept loaded), so a
# query runs for a second or more after its reservation: time to strike.
SCANNING = ("--LomasServerApp.scan_parquet_above_bytes=0",)
BIG_ROWS = 6_000_000
# The restart test's big dataset, declared with its size (these tests skip the add-time check).
BIG_META = {**RESTART_META, "rows": 10_000_000}
SLOW_SQL = "SELECT g, AVG(x) AS m FROM df GROUP BY g"
SLOW_OPENDP = {"group_by": ["g"], "aggregates": [{"op": "count"}, {"op": "mean", "column": "x"}]}
COUNT = "SELECT COUNT(*) AS n FROM df"


@pytest.fixture(scope="module")
def big_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.parquet"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"g": rng.choice(["a", "b", "c"], BIG_ROWS), "x": rng.uniform(0, 100, BIG_ROWS)}
    )
    frame.to_parquet(path, index=False)
    return path


# -- helpers ----------------------------------------------------------------------------------
def _seed(store_url: str, data_dir: Path, big: Path | None) -> str:
    """PENGUIN, TITANIC (and BIG) with one analyst holding budgets on them; returns the token."""
    store = open_store(store_url)
    try:
        admin = AdminService(store)
        seed_datasets(admin, data_dir)
        token = admin.add_user("analyst")
        admin.grant("analyst", "PENGUIN", 50.0, 1e-4)
        admin.grant("analyst", "TITANIC", 50.0, 1e-4)
        if big is not None:
            admin.add_dataset("BIG", big, BIG_META, check_data=False)
            admin.grant("analyst", "BIG", 50.0, 1e-4)
    finally:
        store.close()
    return token


def _charged(reply_body: dict[str, Any]) -> PrivacyAmount:
    """A reply's stated cost, back in the ledger's exact units."""
    return PrivacyAmount.cost(reply_body["cost"]["epsilon"], reply_body["cost"]["delta"])


def _total(amounts: Any) -> PrivacyAmount:
    total = PrivacyAmount.zero()
    for amount in amounts:
        total = total + amount
    return total


def _sqlite_rows(path: Path, sql: str) -> list[tuple]:
    """Read the store with a connection of our own, read-only (never the server's)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _sqlite_ledger(path: Path) -> list[tuple]:
    return _sqlite_rows(
        path, "SELECT seq, user, dataset, query_id, eps_units, delta_units FROM ledger ORDER BY seq"
    )


def _sqlite_archive(path: Path) -> dict[str, tuple]:
    rows = _sqlite_rows(
        path, "SELECT query_id, status, eps_units, delta_units, result, request FROM archive"
    )
    return {row[0]: row[1:] for row in rows}


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Background:
    """A request in a thread; ``reply`` is the response, or the exception it raised."""

    def __init__(self, call: Callable[[], requests.Response]) -> None:
        self.reply: Any = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], requests.Response]) -> None:
        try:
            self.reply = call()
        except Exception as err:
            self.reply = err

    def join(self, timeout: float = 120) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the request never ended (a hang)"
        return self.reply


def _opendp(api: Api, dataset: str, query: dict, epsilon: float, **extra: Any) -> Any:
    return api.post(f"/datasets/{dataset}/opendp", {"query": query, "epsilon": epsilon, **extra})


def _sql_cost(api: Api, dataset: str, query: str, epsilon: float) -> PrivacyAmount:
    reply = api.post(
        f"/datasets/{dataset}/smartnoise-sql/cost", {"query": query, "epsilon": epsilon}
    )
    assert reply.status_code == 200, reply.text
    return _charged(reply.json())


def _opendp_cost(api: Api, dataset: str, query: dict, epsilon: float) -> PrivacyAmount:
    reply = api.post(f"/datasets/{dataset}/opendp/cost", {"query": query, "epsilon": epsilon})
    assert reply.status_code == 200, reply.text
    return _charged(reply.json())


def _assert_clean_json_error(reply: requests.Response, status: int, code: str) -> None:
    assert reply.status_code == status, (reply.status_code, reply.text)
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"error", "message"}, body
    assert body["error"] == code, body
    assert "Traceback" not in reply.text


# -- mounts (c) ------------------------------------------------------------------------------
def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True)


@contextmanager
def _mounted(target: Path, *mount_args: str) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    done = _run("mount", *mount_args, str(target))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a file system here (needs root): {done.stderr.strip()}")
    try:
        yield target
    finally:
        if _run("umount", str(target)).returncode != 0:
            _run("umount", "-l", str(target))


@contextmanager
def tiny_tmpfs(target: Path, size: str = "8m") -> Iterator[Path]:
    with _mounted(target, "-t", "tmpfs", "-o", f"size={size}", "tmpfs") as folder:
        yield folder


@contextmanager
def ext4_loop(target: Path, image: Path, size: str = "32M") -> Iterator[Path]:
    """A real ext4 file system in an image file, loop-mounted (supports ``chattr +i``)."""
    for command in (("truncate", "-s", size, str(image)), ("mkfs.ext4", "-q", str(image))):
        done = _run(*command)
        if done.returncode != 0:
            pytest.skip(f"cannot make an ext4 image: {done.stderr.strip()}")
    with _mounted(target, "-o", "loop", str(image)) as folder:
        yield folder


def fill_up(folder: Path) -> Path:
    """Write one file until the file system has not one byte left (ENOSPC)."""
    path = folder / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = 1 << 16
    try:
        while True:
            try:
                os.write(fd, b"\xff" * chunk)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                if chunk == 1:
                    break
                chunk //= 2
    finally:
        os.close(fd)
    return path


def _integrity(path: Path) -> str:
    return _sqlite_rows(path, "PRAGMA integrity_check")[0][0]


# == a. SIGKILL mid-query =====================================================================
def _running(path: Path) -> set[str]:
    return {
        row[0] for row in _sqlite_rows(path, "SELECT query_id FROM archive WHERE status='running'")
    }


def test_sigkill_with_queries_running_keeps_each_spend_once_and_marks_them_interrupted(
    tmp_path, big_parquet
):
    """Four releases (both engines) reserved and running or queued when the server is killed.

    tests/integration/test_restart.py kills one query; this one checks, across several and across two
    restarts, that each reservation is in the ledger exactly once at its estimated cost, that
    finished releases are untouched, that an interrupted release is never replayed, and that
    /budget agrees with the ledger."""
    path = tmp_path / "admin.sqlite"
    token = _seed(f"sqlite:///{path}", tmp_path / "data", big_parquet)
    server = ServerProcess(path, tmp_path, extra_args=SCANNING).start()
    api = Api(server.api, token)
    try:
        finished = api.sql("BIG", SLOW_SQL, 0.3)  # a release completed before the crash
        assert finished.status_code == 200, finished.text
        estimates = {
            ("sql", 0.5): _sql_cost(api, "BIG", SLOW_SQL, 0.5),
            ("sql", 0.6): _sql_cost(api, "BIG", SLOW_SQL, 0.6),
            ("opendp", 0.5): _opendp_cost(api, "BIG", SLOW_OPENDP, 0.5),
            ("opendp", 0.6): _opendp_cost(api, "BIG", SLOW_OPENDP, 0.6),
        }
        before = _sqlite_ledger(path)
        calls = [
            Background(lambda e=eps: Api(server.api, token).sql("BIG", SLOW_SQL, e))
            if engine == "sql"
            else Background(lambda e=eps: _opendp(Api(server.api, token), "BIG", SLOW_OPENDP, e))
            for engine, eps in estimates
        ]
        # all four reserved (their spend and 'running' entry written), at least one unfinished
        _wait(lambda: len(_sqlite_ledger(path)) == len(before) + 4, 60, "four reservations")
        server.kill()  # SIGKILL: no chance to clean up
    finally:
        server.kill()
    replies = [call.join() for call in calls]
    running = _running(path)
    assert running, "every query finished before the kill: make them slower"
    assert any(isinstance(r, requests.ConnectionError) for r in replies)
    crashed_ledger = _sqlite_ledger(path)
    new_entries = crashed_ledger[len(before) :]
    assert crashed_ledger[: len(before)] == before
    killed = {row[3] for row in new_entries}
    assert len(killed) == 4 and running <= killed
    assert _integrity(path) == "ok"

    def check_after_restart() -> None:
        # the ledger exactly as the crash left it: no spend lost, none added or doubled
        assert _sqlite_ledger(path) == crashed_ledger
        archive = _sqlite_archive(path)
        for query_id in killed:
            status = archive[query_id][0]
            assert status == ("interrupted" if query_id in running else "done"), status
        assert archive[finished.json()["query_id"]][0] == "done"
        assert json_result(archive[finished.json()["query_id"]]) == finished.json()["result"]

    again = ServerProcess(path, tmp_path, extra_args=SCANNING).start()
    try:
        check_after_restart()
        api = Api(again.api, token)
        units = sorted((row[4], row[5]) for row in new_entries)
        assert units == sorted((a.eps_units, a.delta_units) for a in estimates.values())
        spent = _total(PrivacyAmount(row[4], row[5]) for row in crashed_ledger)
        assert api.get("/datasets/BIG/budget").json()["spent"] == spent.as_dict()
        statuses = {q["query_id"]: q["status"] for q in api.get("/queries").json()["queries"]}
        assert {statuses[q] for q in running} == {"interrupted"}
        # the finished release still replays for free; an interrupted one is paid for anew
        replay = api.sql("BIG", SLOW_SQL, 0.3)
        assert replay.json()["replay_of"] == finished.json()["query_id"]
        assert _charged(replay.json()).is_zero()
        interrupted_request = next(json_request(_sqlite_archive(path)[q]) for q in sorted(running))
        anew = _resend(api, interrupted_request)
        assert anew.status_code == 200, anew.text
        assert anew.json()["replay_of"] is None
        assert _charged(anew.json()) in estimates.values()
        assert api.sql("PENGUIN", COUNT, 0.1).status_code == 200
        assert _opendp(api, "TITANIC", {"aggregates": [{"op": "count"}]}, 0.1).status_code == 200
        after_new = _sqlite_ledger(path)
        assert len(after_new) == len(crashed_ledger) + 3
    finally:
        again.stop()
    # a second start finds nothing more to interrupt and changes nothing that was settled
    third = ServerProcess(path, tmp_path).start()
    try:
        assert _sqlite_ledger(path) == after_new
        assert {q: _sqlite_archive(path)[q][0] for q in running} == dict.fromkeys(
            running, "interrupted"
        )
    finally:
        third.stop()


def json_result(entry: tuple) -> Any:
    return None if entry[3] is None else json.loads(entry[3])


def json_request(entry: tuple) -> dict[str, Any]:
    return json.loads(entry[4])


def _resend(api: Api, archived: dict[str, Any]) -> requests.Response:
    """The same request again, as the archive recorded it."""
    if "opendp" in archived:
        return _opendp(api, "BIG", archived["opendp"], archived["epsilon"])
    return api.sql("BIG", archived["query"], archived["epsilon"], archived["delta"])


# == b. the MongoDB-wire store unreachable ====================================================
def _kill(database: FerretDB) -> None:
    if database.process is not None and database.process.poll() is None:
        database.process.kill()
        database.process.wait(10)


def _restarted(database: FerretDB) -> FerretDB:
    """The same FerretDB (same data, same port) started again."""
    again = FerretDB(database.workdir)
    again.port, again.url = database.port, database.url
    return again.start()


def _mongo_ledger(url: str) -> list[tuple]:
    store = MongoStore(url)
    try:
        return sorted(
            (e.query_id, e.user, e.dataset, e.amount.eps_units, e.amount.delta_units, e.kind)
            for e in store.ledger()
        )
    finally:
        store.close()


def _mongo_archive(url: str) -> dict[str, Any]:
    store = MongoStore(url)
    try:
        return {e.query_id: e for e in store.archive("analyst")}
    finally:
        store.close()


def _healthy(api: Api) -> bool:
    try:
        return api.get("/health").status_code == 200
    except requests.RequestException:
        return False


def test_store_outage_every_endpoint_answers_503_json_and_spends_nothing(tmp_path):
    """Every analyst endpoint, both engines, estimates and reads, a wrong token: 503 with a
    bare JSON error, quickly; /health says why; after the outage the ledger and the archive
    are exactly as before and service resumes (tests/integration/test_mongo_deployment.py checks one
    query and the budget)."""
    database = FerretDB(tmp_path / "db").start()
    url = database.database_url("outage")
    token = _seed(url, tmp_path / "data", None)
    server = ServerProcess(url, tmp_path).start()
    restarted = None
    try:
        api = Api(server.api, token)
        assert api.sql("PENGUIN", COUNT, 0.1).status_code == 200
        assert _opendp(api, "TITANIC", {"aggregates": [{"op": "count"}]}, 0.2).status_code == 200
        ledger, archive = _mongo_ledger(url), _mongo_archive(url)
        assert len(ledger) == 2

        database.stop()
        health = api.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy" and health.json()["reason"]
        count = {"aggregates": [{"op": "count"}]}
        calls = {
            "datasets": lambda: api.get("/datasets"),
            "metadata": lambda: api.get("/datasets/PENGUIN/metadata"),
            "budget": lambda: api.get("/datasets/PENGUIN/budget"),
            "queries": lambda: api.get("/queries"),
            "dummy": lambda: api.post("/datasets/PENGUIN/dummy", {"rows": 5}),
            "sql cost": lambda: api.post(
                "/datasets/PENGUIN/smartnoise-sql/cost", {"query": COUNT, "epsilon": 0.3}
            ),
            "sql": lambda: api.sql("PENGUIN", COUNT, 0.3),
            "sql fresh": lambda: api.sql("PENGUIN", COUNT, 0.1, fresh=True),
            "opendp cost": lambda: api.post(
                "/datasets/TITANIC/opendp/cost", {"query": count, "epsilon": 0.3}
            ),
            "opendp": lambda: _opendp(api, "TITANIC", count, 0.3),
            "opendp fresh": lambda: _opendp(api, "TITANIC", count, 0.2, fresh=True),
            "wrong token": lambda: Api(server.api, "lomas_not_a_token").get("/datasets"),
        }
        for what, call in calls.items():
            started = time.monotonic()
            reply = call()
            assert time.monotonic() - started < 15, f"{what} took too long"
            _assert_clean_json_error(reply, 503, "store_unavailable")
        assert server.process is not None and server.process.poll() is None

        restarted = _restarted(database)
        _wait(lambda: _healthy(api), 60, "the server to see its store again")
        assert _mongo_ledger(url) == ledger  # nothing spent during the outage
        assert set(_mongo_archive(url)) == set(archive)
        reply = api.sql("PENGUIN", COUNT, 0.3)
        assert reply.status_code == 200 and reply.json()["replay_of"] is None
        after = _mongo_ledger(url)
        assert len(after) == 3
        assert [e for e in after if e[0] == reply.json()["query_id"]][0][3:5] == (
            _charged(reply.json()).eps_units,
            _charged(reply.json()).delta_units,
        )
        spent = api.get("/datasets/PENGUIN/budget").json()["spent"]
        assert (
            spent == _total(PrivacyAmount(e[3], e[4]) for e in after if e[2] == "PENGUIN").as_dict()
        )
    finally:
        server.stop()
        database.stop()
        if restarted is not None:
            restarted.stop()


@dataclass
class Struck:
    """What a fault that struck while a query ran left behind."""

    reply: Any = None
    query_id: str = ""
    estimate: PrivacyAmount = field(default_factory=PrivacyAmount.zero)
    ledger_before: list = field(default_factory=list)
    ledger_after: list = field(default_factory=list)
    status_while_up: str = ""
    status_after_restart: str = ""
    budget_spent: Any = None
    later_reply: Any = None
    server_log: str = ""


@pytest.fixture(scope="module")
def outage_during_query(tmp_path_factory, big_parquet) -> Struck:
    """FerretDB stopped while a release runs (after its reservation), then started again."""
    tmp_path = tmp_path_factory.mktemp("outage-running")
    database = FerretDB(tmp_path / "db").start()
    url = database.database_url("running")
    token = _seed(url, tmp_path / "data", big_parquet)
    server = ServerProcess(url, tmp_path, extra_args=SCANNING).start()
    seen = Struck()
    restarted = None
    try:
        api = Api(server.api, token)
        seen.estimate = _opendp_cost(api, "BIG", SLOW_OPENDP, 0.5)
        seen.ledger_before = _mongo_ledger(url)
        raw = MongoStore(url)

        def reserved() -> str | None:
            # both writes of the reservation: the 'running' archive entry, then the spend
            entry = raw.db.archive.find_one({"status": "running"})
            if entry is None or raw.db.ledger.find_one({"query_id": entry["_id"]}) is None:
                return None
            return entry["_id"]

        call = Background(lambda: _opendp(Api(server.api, token), "BIG", SLOW_OPENDP, 0.5))
        seen.query_id = _wait(reserved, 60, "the reservation")
        raw.close()
        _kill(database)  # at once: the OpenDP run takes seconds, a graceful stop may not
        seen.reply = call.join()
        restarted = _restarted(database)
        _wait(lambda: _healthy(api), 60, "the server to see its store again")
        seen.ledger_after = _mongo_ledger(url)
        seen.status_while_up = _mongo_archive(url)[seen.query_id].status
        seen.budget_spent = api.get("/datasets/BIG/budget").json()["spent"]
        seen.server_log = server.log()
        server.stop()
        server = ServerProcess(url, tmp_path).start()
        seen.status_after_restart = _mongo_archive(url)[seen.query_id].status
        seen.later_reply = Api(server.api, token).sql("PENGUIN", COUNT, 0.1)
    finally:
        server.stop()
        database.stop()
        if restarted is not None:
            restarted.stop()
    return seen


def test_outage_while_a_query_runs_keeps_its_spend_exactly_once(outage_during_query):
    seen = outage_during_query
    new = [e for e in seen.ledger_after if e not in seen.ledger_before]
    assert [e[0] for e in new] == [seen.query_id]  # spent, once
    assert PrivacyAmount(new[0][3], new[0][4]) == seen.estimate
    assert seen.budget_spent == seen.estimate.as_dict()
    # the outcome could not be filed: 'running' while that server lives, then 'interrupted'
    assert seen.status_while_up == "running"
    assert seen.status_after_restart == "interrupted"
    assert f"could not record the outcome of query {seen.query_id}" in seen.server_log
    assert seen.later_reply.status_code == 200


def test_outage_while_a_query_runs_does_not_hide_the_paid_release(outage_during_query):
    """The store is gone when the release is ready: it cannot be filed, nor the budget read
    again, yet the analyst gets it, with its cost and the budget as read at the reservation
    plus that cost."""
    seen = outage_during_query
    reply = seen.reply
    assert isinstance(reply, requests.Response)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["query_id"] == seen.query_id and body["replay_of"] is None
    assert body["result"]["data"]
    assert _charged(body) == seen.estimate
    assert body["budget"]["spent"] == seen.budget_spent == seen.estimate.as_dict()


class CuttingProxy:
    """A TCP proxy in front of a MongoDB-wire server that, once armed, cuts every connection
    and refuses new ones at the first client message matching its trigger: a real network
    outage at a chosen step of the protocol (messages are length-prefixed, so whole ones
    are inspected before they are forwarded). With ``forward`` the message reaches the
    database and the proxy waits for the database's reply, which it swallows, before it cuts:
    the write is done and acknowledged, the acknowledgement never reaches the client."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.trigger: Callable[[bytes], bool] | None = None
        self.forward = False
        self.down = threading.Event()
        self.cut_at: bytes = b""
        self.muted: set[socket.socket] = set()  # upstream sockets whose replies are dropped
        self.swallowed = threading.Event()  # a reply to the forwarded message was dropped
        self.closed = False
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            if self.down.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets |= {client, upstream}
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _exactly(sock: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                header = self._exactly(client, 16)
                message = header + self._exactly(client, int.from_bytes(header[:4], "little") - 16)
                trigger = self.trigger
                if trigger is not None and trigger(message):
                    self.cut_at = message
                    if self.forward:
                        # the database receives and does it; its acknowledgement is lost (the
                        # client waits for its reply before it sends on this connection, so
                        # nothing earlier is still in flight back to it)
                        self.muted.add(upstream)
                        upstream.sendall(message)
                        self.swallowed.wait(10)
                    self.down.set()
                    self._cut_all()
                    return
                upstream.sendall(message)
        except OSError:
            self._close(client, upstream)

    def _replies(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                if upstream in self.muted:
                    self.swallowed.set()
                    continue
                client.sendall(data)
        except OSError:
            pass
        self._close(client, upstream)

    def _close(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
            with self.lock:
                self.sockets.discard(sock)

    def _cut_all(self) -> None:
        with self.lock:
            sockets = list(self.sockets)
        self._close(*sockets)

    def arm(self, trigger: Callable[[bytes], bool], *, forward: bool = False) -> None:
        """Cut at the first message ``trigger`` matches: before it reaches the database, or
        (``forward``) once the database has answered it but before its reply gets back."""
        self.forward = forward
        self.swallowed.clear()
        self.trigger = trigger

    def heal(self) -> None:
        self.trigger = None
        self.muted.clear()
        self.down.clear()

    def stop(self) -> None:
        self.closed = True
        self._cut_all()
        self.listener.close()


def _inserts_into(collection: str) -> Callable[[bytes], bool]:
    """An OP_MSG whose command is {insert: <collection>, ...}."""
    key = b"\x02insert\x00"
    name = collection.encode() + b"\x00"

    def matches(message: bytes) -> bool:
        at = message.find(key)
        return at >= 0 and message[at + len(key) + 4 : at + len(key) + 4 + len(name)] == name

    return matches


@dataclass
class CutReservation:
    """What a network cut inside a MongoDB reservation left behind, before and after a restart
    of the server."""

    cut: str = ""
    reply: Any = None
    estimate: PrivacyAmount = field(default_factory=PrivacyAmount.zero)
    cut_at: bytes = b""
    acknowledged: bool = False  # the database answered the message the proxy cut at
    query_id: str = ""  # the archive entry the reservation wrote before the cut
    ledger_before: list = field(default_factory=list)
    archive_before: dict = field(default_factory=dict)
    ledger_after: list = field(default_factory=list)
    archive_after: dict = field(default_factory=dict)
    budget_spent: Any = None
    later_reply: Any = None
    later_ledger: list = field(default_factory=list)
    ledger_restarted: list = field(default_factory=list)
    archive_restarted: dict = field(default_factory=dict)
    budget_restarted: Any = None
    resent: Any = None
    resent_ledger: list = field(default_factory=list)


CUTS = {
    # the archive entry is written; the ledger insert never reaches the database
    "before-ledger-entry": False,
    # the ledger entry is written and acknowledged; the acknowledgement never reaches the server
    "ledger-ack-lost": True,
}


@pytest.fixture(scope="module", params=sorted(CUTS))
def cut_reservation(ferretdb, tmp_path_factory, request) -> Iterator[CutReservation]:
    """The MongoDB store reserves in two writes, no transaction: the 'running' archive entry,
    then the ledger entry. The network to the database goes down just before the ledger
    insert, or once the database has done and acknowledged it; it comes back, a release
    runs, then the server restarts (which settles 'running' entries) and the refused request
    is sent again."""
    tmp_path = tmp_path_factory.mktemp("cut-reservation")
    name = f"cut_{os.urandom(4).hex()}"
    url = ferretdb.database_url(name)  # direct, for reading what the server left behind
    token = _seed(url, tmp_path / "data", None)
    proxy = CuttingProxy(ferretdb.port)
    through_proxy = f"mongodb://127.0.0.1:{proxy.port}/{name}"
    server = ServerProcess(through_proxy, tmp_path).start()
    seen = CutReservation(cut=request.param)
    try:
        api = Api(server.api, token)
        assert api.sql("PENGUIN", COUNT, 0.1).status_code == 200  # through the proxy
        seen.estimate = _sql_cost(api, "PENGUIN", COUNT, 0.2)
        seen.ledger_before, seen.archive_before = _mongo_ledger(url), _mongo_archive(url)
        proxy.arm(_inserts_into("ledger"), forward=CUTS[request.param])
        seen.reply = api.sql("PENGUIN", COUNT, 0.2, fresh=True)
        seen.cut_at, seen.acknowledged = proxy.cut_at, proxy.swallowed.is_set()
        proxy.heal()
        _wait(lambda: _healthy(api), 60, "the server to see its store again")
        seen.ledger_after, seen.archive_after = _mongo_ledger(url), _mongo_archive(url)
        new_entries = set(seen.archive_after) - set(seen.archive_before)
        seen.query_id = new_entries.pop() if len(new_entries) == 1 else ""
        seen.budget_spent = api.get("/datasets/PENGUIN/budget").json()["spent"]
        seen.later_reply = api.sql("PENGUIN", COUNT, 0.3)
        seen.later_ledger = _mongo_ledger(url)
        server.stop()
        server = ServerProcess(through_proxy, tmp_path).start()
        api = Api(server.api, token)
        seen.ledger_restarted, seen.archive_restarted = _mongo_ledger(url), _mongo_archive(url)
        seen.budget_restarted = api.get("/datasets/PENGUIN/budget").json()["spent"]
        seen.resent = api.sql("PENGUIN", COUNT, 0.2)
        seen.resent_ledger = _mongo_ledger(url)
    finally:
        server.stop()
        proxy.stop()
    yield seen


def _spent_on(ledger: list[tuple], dataset: str = "PENGUIN") -> dict[str, float]:
    """What /budget must show as spent: the sum of the dataset's ledger entries."""
    return _total(PrivacyAmount(e[3], e[4]) for e in ledger if e[2] == dataset).as_dict()


def test_cut_reservation_is_a_clean_503_that_claims_nothing_false(cut_reservation):
    seen = cut_reservation
    assert _inserts_into("ledger")(seen.cut_at), "the proxy never saw the ledger insert"
    assert seen.acknowledged == CUTS[seen.cut]  # the database did (or never saw) the insert
    _assert_clean_json_error(seen.reply, 503, "store_unavailable")
    message = seen.reply.json()["message"]
    # the server cannot know whether the spend was written: it must not say it was not, and
    # it names the archive entry that settles it
    assert "nothing was recorded" not in message and "nothing was spent" not in message
    assert seen.query_id, "the reservation left no (or more than one) archive entry"
    assert seen.query_id in message


def test_cut_reservation_archives_first_and_never_double_spends(cut_reservation):
    seen = cut_reservation
    # the 'running' archive entry reached the database before the cut, at the estimate
    entry = seen.archive_after[seen.query_id]
    assert (entry.status, entry.cost) == ("running", seen.estimate)
    new = [e for e in seen.ledger_after if e not in seen.ledger_before]
    if seen.cut == "ledger-ack-lost":
        # spent once (the lost acknowledgement is not retried into a second spend)
        assert [(e[0], PrivacyAmount(e[3], e[4])) for e in new] == [(seen.query_id, seen.estimate)]
    else:
        assert new == []  # the ledger insert never reached the database: nothing spent
    assert seen.budget_spent == _spent_on(seen.ledger_after)
    # service resumes once the network is back, and charges once
    assert seen.later_reply.status_code == 200, seen.later_reply.text
    later = [e for e in seen.later_ledger if e not in seen.ledger_after]
    assert [(e[0], PrivacyAmount(e[3], e[4])) for e in later] == [
        (seen.later_reply.json()["query_id"], _charged(seen.later_reply.json()))
    ]


def test_cut_reservation_is_settled_at_restart_with_every_spend_explained(cut_reservation):
    seen = cut_reservation
    entry = seen.archive_restarted[seen.query_id]
    if seen.cut == "ledger-ack-lost":
        # spent, never run: 'interrupted', its spend stays and the entry states it
        assert (entry.status, entry.cost) == ("interrupted", seen.estimate)
    else:
        # never spent: 'failed' at no cost, and it says so
        assert (entry.status, entry.cost) == ("failed", PrivacyAmount.zero())
        assert entry.error and "nothing was spent" in entry.error
    assert seen.ledger_restarted == seen.later_ledger  # the restart spends and refunds nothing
    # every spend has its archive entry, which states exactly that spend; nothing is 'running'
    spent_for: dict[str, PrivacyAmount] = {}
    for e in seen.ledger_restarted:
        spent_for[e[0]] = spent_for.get(e[0], PrivacyAmount.zero()) + PrivacyAmount(e[3], e[4])
    assert set(spent_for) <= set(seen.archive_restarted)
    for query_id, archived in seen.archive_restarted.items():
        assert archived.status != "running", query_id
        assert archived.cost == spent_for.get(query_id, PrivacyAmount.zero()), query_id
    assert seen.budget_restarted == _spent_on(seen.ledger_restarted)
    # the refused request is not replayed from its settled entry: it runs, paid once
    assert seen.resent.status_code == 200, seen.resent.text
    assert seen.resent.json()["replay_of"] is None
    assert _charged(seen.resent.json()) == seen.estimate
    assert len(seen.resent_ledger) == len(seen.ledger_restarted) + 1


# == c. the SQLite store's disk full, or read-only ============================================
@dataclass
class Refused:
    """What a store fault at the reservation left behind (SQLite)."""

    replies: dict[str, requests.Response] = field(default_factory=dict)
    ledger_before: list = field(default_factory=list)
    ledger_during: list = field(default_factory=list)
    ledger_after: list = field(default_factory=list)
    archive_before: dict = field(default_factory=dict)
    archive_after: dict = field(default_factory=dict)
    integrity: str = ""
    recovered: Any = None
    recovered_spent: Any = None
    recovered_ledger: list = field(default_factory=list)
    server_alive: bool = False
    server_log: str = ""


def _fault_at_reservation(
    tmp_path: Path, store_dir: Path, strike: Callable[[Path], None], heal: Callable[[Path], None]
) -> Refused:
    """A server on a store in ``store_dir``: two releases, then ``strike``, then every kind
    of request, then ``heal`` and a release again. It has one request thread, so every
    request uses the store connection opened before the fault; connections first opened
    while a fault lasts are _fault_on_every_worker's subject."""
    path = store_dir / "admin.sqlite"
    token = _seed(f"sqlite:///{path}", tmp_path / "data", None)
    server = ServerProcess(path, tmp_path, extra_args=("--LomasServerApp.worker_threads=1",))
    server.start()
    seen = Refused()
    try:
        api = Api(server.api, token)
        assert api.sql("PENGUIN", COUNT, 0.1).status_code == 200
        assert _opendp(api, "TITANIC", {"aggregates": [{"op": "count"}]}, 0.2).status_code == 200
        seen.ledger_before, seen.archive_before = _sqlite_ledger(path), _sqlite_archive(path)
        strike(store_dir)
        seen.replies = {
            "sql": api.sql(
                "PENGUIN", "SELECT species, COUNT(*) AS n FROM df GROUP BY species", 0.3
            ),
            "sql fresh": api.sql("PENGUIN", COUNT, 0.1, fresh=True),
            "opendp": _opendp(api, "TITANIC", {"aggregates": [{"op": "count"}]}, 0.3),
            "sql cost": api.post(
                "/datasets/PENGUIN/smartnoise-sql/cost", {"query": COUNT, "epsilon": 0.3}
            ),
            "budget": api.get("/datasets/PENGUIN/budget"),
        }
        seen.ledger_during = _sqlite_ledger(path)
        heal(store_dir)
        seen.integrity = _integrity(path)
        seen.ledger_after, seen.archive_after = _sqlite_ledger(path), _sqlite_archive(path)
        seen.recovered = api.sql("PENGUIN", COUNT, 0.4)
        seen.recovered_spent = api.get("/datasets/PENGUIN/budget").json()["spent"]
        seen.recovered_ledger = _sqlite_ledger(path)
        seen.server_alive = server.process is not None and server.process.poll() is None
        seen.server_log = server.log()
    finally:
        server.stop()
    return seen


def _fills_up(folder: Path) -> None:
    fill_up(folder)


def _frees(folder: Path) -> None:
    (folder / "filler").unlink()


@pytest.fixture(scope="module")
def disk_full(tmp_path_factory) -> Iterator[Refused]:
    tmp_path = tmp_path_factory.mktemp("disk-full")
    with tiny_tmpfs(tmp_path / "store") as folder:
        yield _fault_at_reservation(tmp_path, folder, _fills_up, _frees)


IMMUTABLE = ("admin.sqlite", "admin.sqlite-wal")


def _immutable(folder: Path) -> None:
    for name in IMMUTABLE:
        done = _run("chattr", "+i", str(folder / name))
        assert done.returncode == 0, done.stderr
    probe = folder / "admin.sqlite-wal"
    with pytest.raises(PermissionError):  # even root can no longer write to it
        with open(probe, "ab") as handle:
            handle.write(b"")


def _writable(folder: Path) -> None:
    for name in IMMUTABLE:
        _run("chattr", "-i", str(folder / name))


@pytest.fixture(scope="module")
def read_only(tmp_path_factory) -> Iterator[Refused]:
    tmp_path = tmp_path_factory.mktemp("read-only")
    with ext4_loop(tmp_path / "store", tmp_path / "ext4.img") as folder:
        try:
            yield _fault_at_reservation(tmp_path, folder, _immutable, _writable)
        finally:
            _writable(folder)


FAULTS = ["disk_full", "read_only"]


@pytest.mark.parametrize("fault", FAULTS)
def test_store_write_fault_spends_nothing_and_corrupts_nothing(fault, request):
    seen: Refused = request.getfixturevalue(fault)
    assert seen.server_alive
    for what in ("sql", "sql fresh", "opendp"):
        reply = seen.replies[what]
        assert reply.status_code >= 500, (what, reply.text)  # refused, as an error of the server
        assert set(reply.json()) == {"error", "message"} and "Traceback" not in reply.text
    # reading needs no writing: estimates and budgets still answer
    assert seen.replies["sql cost"].status_code == 200
    assert seen.replies["budget"].status_code == 200
    # nothing spent, nothing archived, while the fault lasted and after it
    assert seen.ledger_during == seen.ledger_before
    assert seen.ledger_after == seen.ledger_before
    assert seen.archive_after == seen.archive_before  # earlier entries intact, no new one
    assert seen.integrity == "ok"
    # service is back once the fault ends, and charges exactly once
    assert seen.recovered.status_code == 200, seen.recovered.text
    assert (
        seen.recovered_spent == (PrivacyAmount.cost(0.1, 0) + PrivacyAmount.cost(0.4, 0)).as_dict()
    )
    assert len(seen.ledger_after) + 1 == len(seen.recovered_ledger)


@pytest.mark.parametrize("fault", FAULTS)
def test_store_write_fault_answers_503_store_unavailable(fault, request):
    """SQLITE_FULL at the COMMIT (SQLite has already rolled back), 'attempt to write a
    readonly database' at the INSERT: both a 503 store_unavailable, no 500, no traceback."""
    seen: Refused = request.getfixturevalue(fault)
    for what in ("sql", "sql fresh", "opendp"):
        _assert_clean_json_error(seen.replies[what], 503, "store_unavailable")
    assert "Traceback" not in seen.server_log


WORKERS = 4


@dataclass
class EveryWorker:
    """What the requests after a store fault got, on a server with several request threads."""

    reads_during: list = field(default_factory=list)
    releases_after: list = field(default_factory=list)
    ledger_before: list = field(default_factory=list)
    ledger_after: list = field(default_factory=list)


def _fault_on_every_worker(
    tmp_path: Path, store_dir: Path, strike: Callable[[Path], None], heal: Callable[[Path], None]
) -> EveryWorker:
    """A server with WORKERS request threads, each opening its own store connection at its
    first request: ``strike`` right after the start, so that most of them first touch the
    store while the fault lasts (4 x WORKERS budget reads), then ``heal`` and 4 x WORKERS
    releases, which the pool hands out across its threads."""
    path = store_dir / "admin.sqlite"
    token = _seed(f"sqlite:///{path}", tmp_path / "data", None)
    server = ServerProcess(
        path, tmp_path, extra_args=(f"--LomasServerApp.worker_threads={WORKERS}",)
    ).start()
    seen = EveryWorker()
    try:
        api = Api(server.api, token)
        strike(store_dir)
        seen.reads_during = [
            api.get("/datasets/PENGUIN/budget").status_code for _ in range(4 * WORKERS)
        ]
        heal(store_dir)
        seen.ledger_before = _sqlite_ledger(path)
        seen.releases_after = [
            api.sql("PENGUIN", COUNT, 0.05, fresh=True) for _ in range(4 * WORKERS)
        ]
        seen.ledger_after = _sqlite_ledger(path)
    finally:
        server.stop()
    return seen


@pytest.fixture(scope="module")
def disk_full_every_worker(tmp_path_factory) -> Iterator[EveryWorker]:
    tmp_path = tmp_path_factory.mktemp("disk-full-workers")
    with tiny_tmpfs(tmp_path / "store") as folder:
        yield _fault_on_every_worker(tmp_path, folder, _fills_up, _frees)


@pytest.fixture(scope="module")
def read_only_every_worker(tmp_path_factory) -> Iterator[EveryWorker]:
    tmp_path = tmp_path_factory.mktemp("read-only-workers")
    with ext4_loop(tmp_path / "store", tmp_path / "ext4.img") as folder:
        try:
            yield _fault_on_every_worker(tmp_path, folder, _immutable, _writable)
        finally:
            _writable(folder)


@pytest.mark.parametrize("fault", [f"{fault}_every_worker" for fault in FAULTS])
def test_store_write_fault_ends_for_every_worker(fault, request):
    """Once the fault ends every request thread writes again, including those whose store
    connection was first opened while it lasted."""
    seen: EveryWorker = request.getfixturevalue(fault)
    assert seen.reads_during == [200] * len(seen.reads_during)  # reading needs no writing
    refused = [reply.text for reply in seen.releases_after if reply.status_code != 200]
    assert not refused, f"{len(refused)} of {len(seen.releases_after)} refused: {refused[0]}"
    assert len(seen.ledger_after) == len(seen.ledger_before) + len(seen.releases_after)


@dataclass
class FilledWhileRunning:
    reply: Any = None
    query_id: str = ""
    estimate: PrivacyAmount = field(default_factory=PrivacyAmount.zero)
    ledger_before: list = field(default_factory=list)
    ledger_after: list = field(default_factory=list)
    status_while_up: str = ""
    status_after_restart: str = ""
    integrity: str = ""
    later_reply: Any = None


@pytest.fixture(scope="module")
def disk_full_while_running(tmp_path_factory, big_parquet) -> Iterator[FilledWhileRunning]:
    """The store's file system fills up while a release runs (after its reservation)."""
    tmp_path = tmp_path_factory.mktemp("full-running")
    seen = FilledWhileRunning()
    with tiny_tmpfs(tmp_path / "store") as folder:
        path = folder / "admin.sqlite"
        token = _seed(f"sqlite:///{path}", tmp_path / "data", big_parquet)
        server = ServerProcess(path, tmp_path, extra_args=SCANNING).start()
        try:
            api = Api(server.api, token)
            seen.estimate = _opendp_cost(api, "BIG", SLOW_OPENDP, 0.5)
            seen.ledger_before = _sqlite_ledger(path)
            call = Background(lambda: _opendp(Api(server.api, token), "BIG", SLOW_OPENDP, 0.5))
            (seen.query_id,) = _wait(lambda: _running(path), 60, "the reservation")
            fill_up(folder)
            seen.reply = call.join()
            (folder / "filler").unlink()
            seen.ledger_after = _sqlite_ledger(path)
            seen.status_while_up = _sqlite_archive(path)[seen.query_id][0]
            seen.integrity = _integrity(path)
            server.stop()
            server = ServerProcess(path, tmp_path).start()
            seen.status_after_restart = _sqlite_archive(path)[seen.query_id][0]
            seen.later_reply = Api(server.api, token).sql("PENGUIN", COUNT, 0.1)
        finally:
            server.stop()
        yield seen


def test_disk_full_while_a_query_runs_keeps_its_spend_once(disk_full_while_running):
    seen = disk_full_while_running
    new = [e for e in seen.ledger_after if e not in seen.ledger_before]
    assert [e[3] for e in new] == [seen.query_id]
    assert PrivacyAmount(new[0][4], new[0][5]) == seen.estimate
    assert seen.integrity == "ok"
    # its outcome could not be filed: it stays 'running' until the next start interrupts it
    assert seen.status_while_up == "running"
    assert seen.status_after_restart == "interrupted"
    assert seen.later_reply.status_code == 200


def test_disk_full_while_a_query_runs_does_not_hide_the_paid_release(disk_full_while_running):
    """Its outcome cannot be filed (SQLITE_FULL), yet the paid release reaches the analyst."""
    seen = disk_full_while_running
    reply = seen.reply
    assert isinstance(reply, requests.Response)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["query_id"] == seen.query_id and body["replay_of"] is None
    assert body["result"]["data"]
    assert _charged(body) == seen.estimate
    assert body["budget"]["spent"] == seen.estimate.as_dict()


def test_mount_helpers_produce_real_faults(tmp_path):
    """The faults above are real: a full tmpfs refuses writes with ENOSPC, an immutable file
    on ext4 refuses them with EPERM, both to root."""
    with tiny_tmpfs(tmp_path / "t", size="1m") as folder:
        fill_up(folder)
        with pytest.raises(OSError) as caught:
            (folder / "more").write_bytes(b"x" * 8192)
        assert caught.value.errno == errno.ENOSPC
    with ext4_loop(tmp_path / "e", tmp_path / "img") as folder:
        target = folder / "f"
        target.write_bytes(b"x")
        fd = os.open(target, os.O_WRONLY)
        try:
            assert _run("chattr", "+i", str(target)).returncode == 0
            with pytest.raises(PermissionError):
                os.write(fd, b"y")
        finally:
            os.close(fd)
            _run("chattr", "-i", str(target))
