"""Budget requests (service/budget_requests.py) on real stores: hostile values from JSON
bodies, the one-pending rule, approvals that grow or create grants, denials, races."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from lomas_server.accounting import PrivacyAmount
from lomas_server.errors import Conflict, InvalidRequest, NotFound
from lomas_server.service.admin import AdminService
from lomas_server.service.budget_requests import BudgetRequests
from lomas_server.store import open_store
from lomas_server.store.base import BudgetRequestRecord, DatasetRecord, utc_now
from tests.store.test_contract import META, _dataset, store, store_url  # noqa: F401 - fixtures

REASON = "For the annual report on penguins"


@pytest.fixture
def sqlite_store(tmp_path):
    opened = open_store(f"sqlite:///{tmp_path / 'admin.sqlite'}")
    yield opened
    opened.close()


def _setup(opened):
    opened.add_user("ana", "sha256:ana")
    _dataset(opened)
    _dataset(opened, "E")
    AdminService(opened).grant("ana", "D", 1.0, 1e-6)
    return BudgetRequests(opened)


@pytest.fixture
def requests(sqlite_store):
    return _setup(sqlite_store)


def test_an_ask_is_a_pending_budget_request(requests):
    asked = requests.ask("ana", "D", 2, 1e-6, f"  {REASON}\n(second year)  ")
    assert len(asked["id"]) == 32 and int(asked["id"], 16) >= 0
    assert asked == {
        "id": asked["id"],
        "user": "ana",
        "dataset": "D",
        "requested": {"epsilon": 2.0, "delta": 1e-6},
        "reason": f"{REASON}\n(second year)",  # trimmed, lines kept
        "state": "pending",
        "created_at": asked["created_at"],
        "decided_at": None,
        "decided_by": None,
        "note": None,
        "granted": None,
    }
    assert requests.mine("ana") == [asked]
    assert requests.ask("ana", "E", 0.5, None, REASON)["requested"]["delta"] == 0.0


@pytest.mark.parametrize(
    ("epsilon", "delta", "reason", "mentions"),
    [
        (None, 0, REASON, "epsilon must be a finite number"),
        ("2", 0, REASON, "epsilon must be a finite number"),
        (True, 0, REASON, "epsilon must be a finite number"),
        (float("nan"), 0, REASON, "epsilon must be a finite number"),
        (float("inf"), 0, REASON, "epsilon must be a finite number"),
        (10**400, 0, REASON, "epsilon must be a finite number"),
        ([2], 0, REASON, "epsilon must be a finite number"),
        ({"epsilon": 2}, 0, REASON, "epsilon must be a finite number"),
        (0, 0, REASON, "epsilon must be greater than 0"),
        (-1, 0, REASON, "epsilon must be greater than 0"),
        (10**6 + 1, 0, REASON, "at most 1000000"),
        (1e-13, 0, REASON, "at least 1e-12"),
        (1, "0", REASON, "delta must be a finite number"),
        (1, False, REASON, "delta must be a finite number"),
        (1, float("nan"), REASON, "delta must be a finite number"),
        (1, -1e-9, REASON, "delta must be at least 0 and below 1"),
        (1, 1, REASON, "delta must be at least 0 and below 1"),
        (1, 10**400, REASON, "delta must be a finite number"),
        (1, 0, None, "reason must be text"),
        (1, 0, 42, "reason must be text"),
        (1, 0, ["why"], "reason must be text"),
        (1, 0, "", "reason must not be empty"),
        (1, 0, " \n\t ", "reason must not be empty"),
        (1, 0, "x" * 2001, "at most 2000 characters"),
        (1, 0, "bell\x07", "control characters (found U+0007)"),
        (1, 0, "tab\there", "control characters (found U+0009)"),
        (1, 0, "nul\x00", "control characters (found U+0000)"),
        (1, 0, "esc\x1b[31m red", "control characters (found U+001B)"),
        (1, 0, "del\x7f", "control characters (found U+007F)"),
        (1, 0, "c1\x9b", "control characters (found U+009B)"),
        (1, 0, "lone \ud800 surrogate", "control characters (found U+D800)"),
        (1, 0, "looks \u202eevil", "control characters (found U+202E)"),
    ],
)
def test_hostile_values_get_one_line_naming_the_field(requests, epsilon, delta, reason, mentions):
    with pytest.raises(InvalidRequest) as caught:
        requests.ask("ana", "D", epsilon, delta, reason)
    assert mentions in caught.value.message and "\n" not in caught.value.message
    assert requests.mine("ana") == []


def test_a_reason_may_be_long_and_wide(requests):
    text = "é🐧" * 1000  # 2000 characters, not bytes
    assert requests.ask("ana", "D", 1, 0, text)["reason"] == text
    assert requests.ask("ana", "E", 1, 0, "windows\r\nlines")["reason"] == "windows\r\nlines"


def test_unknown_dataset_or_user(requests):
    with pytest.raises(NotFound, match="no dataset 'NOPE'"):
        requests.ask("ana", "NOPE", 1, 0, REASON)
    with pytest.raises(NotFound, match="no user"):
        requests.ask("ghost", "D", 1, 0, REASON)
    with pytest.raises(InvalidRequest, match="dataset"):
        requests.ask("ana", None, 1, 0, REASON)


def test_one_pending_request_per_user_and_dataset(requests):
    first = requests.ask("ana", "D", 1, 0, REASON)
    with pytest.raises(Conflict, match="pending"):
        requests.ask("ana", "D", 3, 0, "another")
    requests.ask("ana", "E", 1, 0, REASON)  # another dataset is apart
    requests.deny(first["id"], "root", "not now")
    assert requests.ask("ana", "D", 3, 0, "another")["state"] == "pending"


def test_approve_grows_an_existing_grant(requests, sqlite_store):
    asked = requests.ask("ana", "D", 2, 1e-6, REASON)
    approved = requests.approve(asked["id"], "root", note="go ahead")
    assert approved["state"] == "approved" and approved["decided_by"] == "root"
    assert approved["granted"] == {"epsilon": 2.0, "delta": 1e-6} and approved["note"] == "go ahead"
    assert approved["decided_at"] >= asked["created_at"]
    assert sqlite_store.get_grant("ana", "D").initial == PrivacyAmount.budget(3, 2e-6)
    assert requests.mine("ana") == [approved]


def test_approve_creates_a_missing_grant(requests, sqlite_store):
    asked = requests.ask("ana", "E", 0.7, 0, REASON)
    requests.approve(asked["id"], "root")
    assert sqlite_store.get_grant("ana", "E").initial == PrivacyAmount.budget(0.7, 0)


def test_approve_with_another_amount(requests, sqlite_store):
    asked = requests.ask("ana", "D", 5, 1e-5, REASON)
    approved = requests.approve(asked["id"], "root", epsilon=0.5)  # delta as requested
    assert approved["requested"] == {"epsilon": 5.0, "delta": 1e-5}
    assert approved["granted"] == {"epsilon": 0.5, "delta": 1e-5}
    assert sqlite_store.get_grant("ana", "D").initial == PrivacyAmount.budget(1.5, 1.1e-5)
    again = requests.ask("ana", "D", 5, 1e-5, REASON)
    assert requests.approve(again["id"], "root", delta=0)["granted"] == {
        "epsilon": 5.0,
        "delta": 0.0,
    }


@pytest.mark.parametrize(
    ("options", "mentions"),
    [
        ({"epsilon": "1"}, "epsilon must be a finite number"),
        ({"epsilon": 0}, "epsilon must be greater than 0"),
        ({"delta": float("nan")}, "delta must be a finite number"),
        ({"delta": 1.5}, "delta must be at least 0 and below 1"),
        ({"note": ""}, "note must not be empty"),
        ({"note": 7}, "note must be text"),
        ({"note": "x" * 2001}, "note must be at most 2000"),
        ({"epsilon": 10**6}, "would pass the largest budget"),
    ],
)
def test_a_refused_approval_leaves_the_request_pending(requests, sqlite_store, options, mentions):
    asked = requests.ask("ana", "D", 1, 0, REASON)
    with pytest.raises(InvalidRequest, match=mentions):
        requests.approve(asked["id"], "root", **options)
    assert requests.mine("ana")[0]["state"] == "pending"
    assert sqlite_store.get_grant("ana", "D").initial == PrivacyAmount.budget(1, 1e-6)


def test_approval_obeys_the_datasets_accounting_rule(sqlite_store):
    requests = _setup(sqlite_store)
    sqlite_store.add_dataset(
        DatasetRecord("Z", {"kind": "local", "path": "/z.csv"}, META, accounting="zcdp")
    )
    asked = requests.ask("ana", "Z", 1, 0, REASON)
    with pytest.raises(InvalidRequest, match="conversion delta"):
        requests.approve(asked["id"], "root")  # no grant yet: delta 0 is no zCDP budget
    approved = requests.approve(asked["id"], "root", delta=1e-5)
    assert approved["granted"] == {"epsilon": 1.0, "delta": 1e-5}


def test_deny_needs_a_note(requests, sqlite_store):
    asked = requests.ask("ana", "D", 2, 0, REASON)
    for note, mentions in ((None, "note is required"), ("  ", "note must not be empty")):
        with pytest.raises(InvalidRequest, match=mentions):
            requests.deny(asked["id"], "root", note)
    denied = requests.deny(asked["id"], "root", " too much for one report ")
    assert denied["state"] == "denied" and denied["note"] == "too much for one report"
    assert denied["granted"] is None
    assert sqlite_store.get_grant("ana", "D").initial == PrivacyAmount.budget(1, 1e-6)


def test_decided_requests_are_409_and_unknown_ids_404(requests, sqlite_store):
    approved = requests.ask("ana", "D", 2, 0, REASON)
    requests.approve(approved["id"], "root")
    denied = requests.ask("ana", "E", 2, 0, REASON)
    requests.deny(denied["id"], "root", "no")
    for request_id in (approved["id"], denied["id"]):
        with pytest.raises(Conflict, match="already"):
            requests.approve(request_id, "root")
        with pytest.raises(Conflict, match="already"):
            requests.deny(request_id, "root", "no")
    assert sqlite_store.get_grant("ana", "D").initial == PrivacyAmount.budget(3, 1e-6)
    for unknown in ("0" * 32, "not-an-id", "../../etc", "", None, 12):
        with pytest.raises(NotFound):
            requests.approve(unknown, "root")
        with pytest.raises(NotFound):
            requests.deny(unknown, "root", "no")


def test_approving_for_a_vanished_dataset_or_user_is_404(tmp_path):
    """Users and datasets are never deleted by lomas, but a restored or hand-edited store may
    lack them: the request stays pending."""
    odd = open_store(f"sqlite:///{tmp_path / 'odd.sqlite'}")
    odd.add_user("ana", "sha256:ana")
    _dataset(odd)
    record = BudgetRequestRecord(
        "a" * 32, "ghost", "D", PrivacyAmount.budget(1, 0), REASON, "pending", utc_now()
    )
    odd.restore_budget_request(record)
    with pytest.raises(NotFound, match="no user 'ghost'"):
        BudgetRequests(odd).approve(record.id, "root")
    assert odd.get_budget_request(record.id).state == "pending"
    odd.close()


def test_the_spend_ledger_is_untouched(requests, sqlite_store):
    sqlite_store.record_spend("ana", "D", PrivacyAmount.cost(0.25, 0), kind="import")
    before = sqlite_store.ledger()
    asked = requests.ask("ana", "D", 2, 0, REASON)
    requests.approve(asked["id"], "root")
    denied = requests.ask("ana", "E", 2, 0, REASON)
    requests.deny(denied["id"], "root", "no")
    assert sqlite_store.ledger() == before
    assert sqlite_store.spent("ana", "D") == PrivacyAmount.cost(0.25, 0)


def test_list_filters_and_refuses_unknown_states(requests):
    first = requests.ask("ana", "D", 1, 0, REASON)
    second = requests.ask("ana", "E", 1, 0, REASON)
    requests.deny(first["id"], "root", "no")
    assert [r["id"] for r in requests.list()] == [first["id"], second["id"]]
    assert [r["id"] for r in requests.list(state="pending")] == [second["id"]]
    assert [r["id"] for r in requests.list(state="denied", user="ana")] == [first["id"]]
    assert requests.list(dataset="E", state="approved") == []
    assert requests.list(user="nobody") == []
    for state in ("PENDING", "open", "", "pending "):
        with pytest.raises(InvalidRequest, match="state must be one of pending, approved, denied"):
            requests.list(state=state)


def test_two_admins_approving_at_once_grant_once(store):  # noqa: F811 - fixture
    """On both backends: eight admins approve the same request at once; one wins, the others
    get 409, and the grant grows by the request exactly once."""
    requests = _setup(store)
    asked = requests.ask("ana", "D", 2, 0, REASON)
    start = threading.Barrier(8)

    def approve(admin: int):
        start.wait()
        try:
            return requests.approve(asked["id"], f"admin-{admin}")
        except Conflict:
            return None

    with ThreadPoolExecutor(8) as pool:
        won = [r for r in pool.map(approve, range(8)) if r is not None]
    assert len(won) == 1
    assert store.get_grant("ana", "D").initial == PrivacyAmount.budget(3, 1e-6)
    assert requests.list(state="approved") == won
