"""The admin store contract. Every backend must pass it (what only SQLite promises is in
test_sqlite.py)."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lomas_server.accounting import PrivacyAmount
from lomas_server.errors import BudgetExceeded, Conflict, NotFound
from lomas_server.store import open_store
from lomas_server.store.base import DONE, INTERRUPTED, RUNNING, DatasetRecord, Reservation

META = {
    "max_ids": 1,
    "row_privacy": True,
    "columns": {"x": {"type": "int", "lower": 0, "upper": 9}},
}


@pytest.fixture(params=["sqlite", "mongo"])
def store_url(request, tmp_path: Path) -> str:
    if request.param == "mongo":
        # A database of its own on the session's FerretDB, a real MongoDB-wire server.
        return request.getfixturevalue("ferretdb").database_url(f"t_{uuid.uuid4().hex[:12]}")
    return f"sqlite:///{tmp_path / 'admin.sqlite'}"


@pytest.fixture
def store(store_url):
    store = open_store(store_url)
    yield store
    store.close()


def _dataset(store, name="D", cap=None):
    return store.add_dataset(
        DatasetRecord(name, {"kind": "local", "path": "/x.csv", "format": "csv"}, META, cap=cap)
    )


def _reservation(
    user="u",
    dataset="D",
    eps=0.1,
    delta=0.0,
    query_id=None,
    cap=1.0,
    cap_delta=0.5,
    dataset_cap=None,
):
    """A reservation of (eps, delta) against a user cap of (cap, cap_delta) and an optional
    dataset cap of (dataset_cap, 0.5)."""
    return Reservation(
        query_id or uuid.uuid4().hex,
        user,
        dataset,
        "smartnoise_sql",
        {"query": "SELECT COUNT(*) FROM df"},
        PrivacyAmount.cost(eps, delta),
        PrivacyAmount.budget(cap, cap_delta),
        None if dataset_cap is None else PrivacyAmount.budget(dataset_cap, 0.5),
    )


def test_users_crud(store):
    created = store.add_user("alice", "sha256:a", is_admin=True)
    assert created.name == "alice" and created.is_admin and created.may_query
    assert store.get_user("alice") == created
    assert store.user_by_token_hash("sha256:a") == created
    assert store.user_by_token_hash("sha256:other") is None
    with pytest.raises(Conflict):
        store.add_user("alice", "sha256:b")
    store.set_token_hash("alice", "sha256:c")
    assert store.user_by_token_hash("sha256:a") is None
    assert store.user_by_token_hash("sha256:c").name == "alice"
    store.set_may_query("alice", False)
    assert store.get_user("alice").may_query is False
    store.add_user("bob", "sha256:b")
    assert [u.name for u in store.list_users()] == ["alice", "bob"]
    with pytest.raises(NotFound):
        store.set_token_hash("nobody", "sha256:x")


def test_datasets_crud_and_limits(store):
    record = _dataset(store)
    assert record.metadata == META and record.source["path"] == "/x.csv"
    assert record.max_query is None and record.cap is None
    with pytest.raises(Conflict):
        _dataset(store)
    store.set_dataset_limits(
        "D", max_query=PrivacyAmount.budget(1, 1e-5), cap=PrivacyAmount.budget(3, 0)
    )
    updated = store.get_dataset("D")
    assert updated.max_query == PrivacyAmount.budget(1, 1e-5)
    assert updated.cap == PrivacyAmount.budget(3, 0)
    assert [d.name for d in store.list_datasets()] == ["D"]
    assert store.get_dataset("E") is None


def test_grants(store):
    store.add_user("u", "sha256:u")
    _dataset(store)
    store.set_grant("u", "D", PrivacyAmount.budget(1, 1e-5))
    store.set_grant("u", "D", PrivacyAmount.budget(2, 1e-5))  # replaces
    assert store.get_grant("u", "D").initial == PrivacyAmount.budget(2, 1e-5)
    assert [g.dataset for g in store.grants_for_user("u")] == ["D"]
    with pytest.raises(NotFound):
        store.set_grant("nobody", "D", PrivacyAmount.budget(1, 0))
    with pytest.raises(NotFound):
        store.set_grant("u", "NOPE", PrivacyAmount.budget(1, 0))


def test_last_paid_is_the_latest_query_that_cost_something(store):
    store.add_user("u", "sha256:u")
    _dataset(store)
    _dataset(store, "E")
    store.set_grant("u", "D", PrivacyAmount.budget(1, 1e-5))
    store.set_grant("u", "E", PrivacyAmount.budget(1, 1e-5))
    assert store.last_paid("u", "D") is None
    store.reserve(_reservation(query_id="q1", eps=0.25))
    store.reserve(_reservation(query_id="q2", eps=0.1))
    store.reserve(_reservation(query_id="q3", dataset="E", eps=0.3))
    last = store.last_paid("u", "D")
    assert last is not None and last.query_id == "q2"
    assert last.cost == PrivacyAmount.cost(0.1, 0)
    assert store.last_paid("other", "D") is None


def test_reserve_records_spend_and_running_archive_entry(store):
    store.add_user("u", "sha256:u")
    _dataset(store)
    store.set_grant("u", "D", PrivacyAmount.budget(1, 1e-5))
    store.reserve(_reservation(query_id="q1", eps=0.25, delta=1e-6))
    assert store.spent("u", "D") == PrivacyAmount.cost(0.25, 1e-6)
    entry = store.archive_entry("q1")
    assert entry.status == RUNNING and entry.cost == PrivacyAmount.cost(0.25, 1e-6)
    store.finish("q1", DONE, result={"columns": ["n"], "data": [[3]]})
    entry = store.archive_entry("q1")
    assert entry.status == DONE and entry.result == {"columns": ["n"], "data": [[3]]}
    assert entry.finished_at >= entry.created_at
    assert [e.query_id for e in store.archive("u")] == ["q1"]
    assert store.archive("u", dataset="other") == []


def test_reserve_refuses_past_the_cap_and_records_nothing(store):
    store.add_user("u", "sha256:u")
    _dataset(store)
    for _ in range(3):
        store.reserve(_reservation(eps=0.1, cap=0.3))
    with pytest.raises(BudgetExceeded) as refused:
        store.reserve(_reservation(eps=0.1, query_id="refused", cap=0.3))
    assert refused.value.scope == "user"
    assert refused.value.remaining == PrivacyAmount.budget(0, 0.5)
    assert store.spent("u", "D") == PrivacyAmount.budget(0.3, 0)
    assert store.archive_entry("refused") is None
    # delta is capped on its own
    with pytest.raises(BudgetExceeded):
        store.reserve(_reservation(eps=0.0, delta=1e-9, cap=5.0, cap_delta=0.0))


def test_many_reservations_of_a_tenth_stop_exactly_at_the_cap(store, store_url):
    # 10,000 on SQLite. FerretDB's SQLite backend scans a collection for every sorted lookup
    # (real MongoDB uses the indexes), so each reservation there costs time in proportion to the
    # ledger: 500 spends, the same arithmetic.
    count = 10_000 if store_url.startswith("sqlite") else 500
    store.add_user("u", "sha256:u")
    _dataset(store)
    accepted = 0
    for _ in range(count + 1):
        try:
            store.reserve(_reservation(eps=0.1, cap=count // 10))
            accepted += 1
        except BudgetExceeded:
            pass
    assert accepted == count
    assert store.spent("u", "D") == PrivacyAmount.budget(count // 10, 0)
    assert store.spent("u", "D").epsilon == count / 10


def test_dataset_wide_cap_counts_every_user(store):
    _dataset(store)
    for name in ("a", "b"):
        store.add_user(name, f"sha256:{name}")
    store.reserve(_reservation("a", eps=0.3, dataset_cap=0.5))
    with pytest.raises(BudgetExceeded) as refused:
        store.reserve(_reservation("b", eps=0.3, dataset_cap=0.5))
    assert refused.value.scope == "dataset"
    store.reserve(_reservation("b", eps=0.2, dataset_cap=0.5))
    assert store.dataset_spent("D") == PrivacyAmount.budget(0.5, 0)


def test_concurrent_reservations_from_threads_never_overspend(store):
    store.add_user("u", "sha256:u")
    _dataset(store)
    barrier = threading.Barrier(50)

    def attempt(_):
        barrier.wait()
        try:
            store.reserve(_reservation(eps=0.1, cap=0.7))
            return True
        except BudgetExceeded:
            return False

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(attempt, range(50)))
    assert outcomes.count(True) == 7
    assert store.spent("u", "D") == PrivacyAmount.budget(0.7, 0)
    assert len(store.ledger(user="u", dataset="D")) == 7


def _reserve_in_process(url: str, count: int, start, results) -> None:
    store = open_store(url)
    start.wait()
    ok = 0
    for _ in range(count):
        try:
            store.reserve(_reservation(eps=0.1, cap=1.3))
            ok += 1
        except BudgetExceeded:
            pass
    results.put(ok)
    store.close()


def test_concurrent_reservations_from_two_processes_never_overspend(store, store_url):
    store.add_user("u", "sha256:u")
    _dataset(store)
    store.set_grant("u", "D", PrivacyAmount.budget(1.3, 0))
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=_reserve_in_process, args=(store_url, 25, start, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
    assert sum(results.get(timeout=5) for _ in workers) == 13
    assert store.spent("u", "D") == PrivacyAmount.budget(1.3, 0)


def test_record_spend_bypasses_caps_for_imports(store):
    store.add_user("u", "sha256:u")
    _dataset(store)
    store.set_grant("u", "D", PrivacyAmount.budget(1, 0))
    store.record_spend("u", "D", PrivacyAmount.cost(0.4, 0), kind="import")
    assert store.spent("u", "D") == PrivacyAmount.cost(0.4, 0)
    assert store.ledger(user="u")[0].kind == "import"


def test_mark_interrupted_closes_running_entries(store):
    store.add_user("u", "sha256:u")
    _dataset(store)
    store.set_grant("u", "D", PrivacyAmount.budget(1, 0))
    store.reserve(_reservation(query_id="left-running"))
    store.reserve(_reservation(query_id="finished"))
    store.finish("finished", DONE, result={"columns": [], "data": []})
    assert store.mark_interrupted() == 1
    assert store.archive_entry("left-running").status == INTERRUPTED
    assert store.archive_entry("finished").status == DONE
    assert store.spent("u", "D") == PrivacyAmount.cost(0.2, 0)  # the spend stays


def test_data_survives_reopening(store_url):
    first = open_store(store_url)
    first.add_user("u", "sha256:u")
    _dataset(first)
    first.set_grant("u", "D", PrivacyAmount.budget(1, 0))
    first.reserve(_reservation(eps=0.3, query_id="q"))
    first.close()
    second = open_store(store_url)
    assert second.spent("u", "D") == PrivacyAmount.cost(0.3, 0)
    assert second.archive_entry("q").status == RUNNING
    second.close()


def test_unknown_store_scheme_is_a_clear_error():
    from lomas_server.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="unsupported admin store URL"):
        open_store("postgres://x")


def test_find_release_returns_the_first_completed_one(store):
    store.add_user("u", "sha256:u")
    _dataset(store)
    store.set_grant("u", "D", PrivacyAmount.budget(1, 0))
    for query_id in ("a", "b", "c"):
        store.reserve(
            Reservation(
                query_id,
                "u",
                "D",
                "smartnoise_sql",
                {},
                PrivacyAmount.cost(0.1, 0),
                PrivacyAmount.budget(1, 0),
                None,
                "fp",
            )
        )
    store.finish("a", "failed", error="boom")
    store.finish("b", DONE, result={"columns": ["n"], "data": [[1]]})
    assert store.find_release("u", "D", "fp").query_id == "b"
    assert store.find_release("u", "D", "other") is None
    assert store.find_release("someone", "D", "fp") is None
