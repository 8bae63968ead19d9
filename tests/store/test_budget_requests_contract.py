"""The admin store contract for budget requests, on both backends (SQLite file, FerretDB)."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from lomas_server.accounting import PrivacyAmount
from lomas_server.errors import Conflict, NotFound
from lomas_server.store import open_store
from lomas_server.store.base import APPROVED, DENIED, PENDING, BudgetRequestRecord, utc_now
from tests.store.test_contract import _dataset, store, store_url  # noqa: F401 - fixtures

TWO = PrivacyAmount.budget(2, 0)


def _request(user="u", dataset="D", *, state=PENDING, created_at=None, **decision):
    return BudgetRequestRecord(
        id=uuid.uuid4().hex,
        user=user,
        dataset=dataset,
        requested=TWO,
        reason="a second look at the bills\nand the flippers",
        state=state,
        created_at=created_at or utc_now(),
        **decision,
    )


@pytest.fixture
def filled(store):  # noqa: F811 - the fixture imported above
    for user in ("u", "v"):
        store.add_user(user, f"sha256:{user}")
    _dataset(store)
    _dataset(store, "E")
    return store


def test_a_request_is_filed_pending_and_read_back(filled):
    record = _request()
    assert filled.add_budget_request(record) == record
    assert filled.get_budget_request(record.id) == record
    assert filled.get_budget_request(uuid.uuid4().hex) is None
    assert filled.budget_requests() == [record]
    assert filled.budget_requests(state=PENDING, user="u", dataset="D") == [record]
    assert filled.budget_requests(state=APPROVED) == []
    assert filled.budget_requests(user="v") == filled.budget_requests(dataset="E") == []


def test_a_request_needs_its_user_and_dataset(filled):
    with pytest.raises(NotFound, match="no user"):
        filled.add_budget_request(_request(user="nobody"))
    with pytest.raises(NotFound, match="no dataset"):
        filled.add_budget_request(_request(dataset="NOPE"))
    assert filled.budget_requests() == []


def test_one_pending_request_per_user_and_dataset(filled):
    first = filled.add_budget_request(_request())
    with pytest.raises(Conflict, match="pending"):
        filled.add_budget_request(_request())
    with pytest.raises(Conflict, match="already exists"):
        filled.add_budget_request(first)
    # other users and other datasets are apart
    filled.add_budget_request(_request(user="v"))
    filled.add_budget_request(_request(dataset="E"))
    filled.decide_budget_request(first.id, state=DENIED, decided_by="root", note="no", granted=None)
    again = filled.add_budget_request(_request())
    assert [r.id for r in filled.budget_requests(user="u", dataset="D")] == [first.id, again.id]


def test_deciding_is_final_and_kept(filled):
    record = filled.add_budget_request(_request())
    granted = PrivacyAmount.budget(1.5, 1e-6)
    approved = filled.decide_budget_request(
        record.id, state=APPROVED, decided_by="root", note=None, granted=granted
    )
    assert approved.state == APPROVED and approved.granted == granted
    assert approved.decided_by == "root" and approved.decided_at and approved.note is None
    assert filled.get_budget_request(record.id) == approved
    for state in (APPROVED, DENIED):
        with pytest.raises(Conflict, match="already approved"):
            filled.decide_budget_request(
                record.id, state=state, decided_by="other", note="x", granted=granted
            )
    assert filled.get_budget_request(record.id) == approved
    with pytest.raises(NotFound):
        filled.decide_budget_request(
            uuid.uuid4().hex, state=DENIED, decided_by="root", note="x", granted=None
        )


def test_a_denial_grants_nothing_and_keeps_its_note(filled):
    record = filled.add_budget_request(_request())
    denied = filled.decide_budget_request(
        record.id,
        state=DENIED,
        decided_by="root",
        note="ask after the audit",
        granted=TWO,
        decided_at="2024-02-02T00:00:00",
    )
    assert (denied.state, denied.granted, denied.note) == (DENIED, None, "ask after the audit")
    assert filled.get_budget_request(record.id).decided_at == "2024-02-02T00:00:00"
    assert filled.budget_requests(state=DENIED) == [denied]
    assert filled.budget_requests(state=PENDING) == []


def test_requests_are_listed_oldest_first(filled):
    late = filled.add_budget_request(_request(user="v", created_at="2024-03-01T00:00:00"))
    early = filled.add_budget_request(_request(created_at="2024-01-01T00:00:00"))
    middle = filled.add_budget_request(_request(dataset="E", created_at="2024-02-01T00:00:00"))
    assert [r.id for r in filled.budget_requests()] == [early.id, middle.id, late.id]
    assert [r.id for r in filled.budget_requests(user="u")] == [early.id, middle.id]


def test_restored_requests_come_back_as_they_were(filled):
    decided = _request(
        created_at="2024-01-01T00:00:00",
        state=APPROVED,
        decided_at="2024-01-02T00:00:00",
        decided_by="root",
        note="fine",
        granted=PrivacyAmount.budget(1, 0),
    )
    pending = _request()
    filled.restore_budget_request(decided)
    filled.restore_budget_request(pending)
    assert filled.budget_requests() == [decided, pending]
    with pytest.raises(Conflict):
        filled.restore_budget_request(_request(state=DENIED, decided_by="root", note="n"))


def test_concurrent_asks_file_one_request(filled):
    def ask(_):
        try:
            return filled.add_budget_request(_request())
        except Conflict:
            return None

    with ThreadPoolExecutor(8) as pool:
        filed = [r for r in pool.map(ask, range(16)) if r is not None]
    assert len(filed) == 1
    assert filled.budget_requests() == filed


def test_concurrent_decisions_decide_once(filled):
    """Eight admins decide the same requests at once: each request is decided exactly once,
    and the winner's decision is the one stored."""
    records = [filled.add_budget_request(_request(user=u, dataset=d)) for u in "uv" for d in "DE"]
    start = threading.Barrier(8)

    def decide(admin: int):
        start.wait()
        won = []
        for record in records:
            try:
                won.append(
                    filled.decide_budget_request(
                        record.id,
                        state=APPROVED if admin % 2 else DENIED,
                        decided_by=f"admin-{admin}",
                        note=f"by {admin}",
                        granted=PrivacyAmount.budget(admin, 0),
                    )
                )
            except Conflict:
                pass
        return won

    with ThreadPoolExecutor(8) as pool:
        winners = [decision for won in pool.map(decide, range(8)) for decision in won]
    assert sorted(w.id for w in winners) == sorted(r.id for r in records)
    for winner in winners:
        assert filled.get_budget_request(winner.id) == winner


def test_requests_survive_reopening(store_url):  # noqa: F811 - the fixture imported above
    first = open_store(store_url)
    first.add_user("u", "sha256:u")
    _dataset(first)
    record = first.add_budget_request(_request())
    first.close()
    again = open_store(store_url)
    assert again.get_budget_request(record.id) == record
    again.close()


def test_a_mongodb_store_of_schema_version_1_is_upgraded(ferretdb):
    """A database written before budget requests keeps its data and takes them."""
    from pymongo import MongoClient

    name = f"v1_{uuid.uuid4().hex[:12]}"
    client = MongoClient(ferretdb.database_url(name))
    client[name].store_info.insert_one({"_id": "schema", "version": 1, "created_at": "then"})
    client[name].users.insert_one(
        {
            "_id": "u",
            "token_hash": "sha256:u",
            "is_admin": False,
            "may_query": True,
            "created_at": "then",
        }
    )
    client.close()
    upgraded = open_store(ferretdb.database_url(name))
    _dataset(upgraded)
    assert upgraded.get_user("u").created_at == "then"
    record = upgraded.add_budget_request(_request())
    assert upgraded.schema_version() == 2
    assert upgraded.budget_requests(state=PENDING) == [record]
    upgraded.close()
