"""``lomas-admin budget-requests``, ``approve`` and ``deny``: real subprocesses on a real store
file, with the analysts' requests filed through the same service the server uses."""

from __future__ import annotations

import pytest

from lomas_server.service.budget_requests import BudgetRequests
from lomas_server.store import open_store
from tests.cli.test_admin_cli import _add_penguins, admin_cli  # noqa: F401 - fixture


@pytest.fixture
def asked(admin_cli, tmp_path):  # noqa: F811 - the fixture imported above
    """Two analysts with a grant each; alice asks for more on PENGUIN, bob too."""
    admin_cli("add-user", "alice")
    admin_cli("add-user", "bob")
    _add_penguins(admin_cli)
    admin_cli("grant", "alice", "PENGUIN", "--epsilon", "1", "--delta", "1e-6")
    store = open_store(f"sqlite:///{tmp_path / 'admin.sqlite'}")
    requests = BudgetRequests(store)
    ids = {
        user: requests.ask(user, "PENGUIN", 2, 1e-6, f"{user}'s thesis,\nchapter 3")["id"]
        for user in ("alice", "bob")
    }
    store.close()
    return ids


def test_list_approve_and_deny(admin_cli, asked):  # noqa: F811
    listed = admin_cli("budget-requests", "--state", "pending")
    assert [(r["id"], r["user"], r["state"]) for r in listed] == [
        (asked["alice"], "alice", "pending"),
        (asked["bob"], "bob", "pending"),
    ]
    assert listed[0]["reason"] == "alice's thesis,\nchapter 3"

    approved = admin_cli(
        "approve", asked["alice"], "--epsilon", "0.5", "--note", "half for now", "--by", "root"
    )
    assert approved["state"] == "approved" and approved["decided_by"] == "root"
    assert approved["granted"] == {"epsilon": 0.5, "delta": 1e-6}
    assert admin_cli("budget", "alice")[0]["initial"] == {"epsilon": 1.5, "delta": 2e-6}

    denied = admin_cli("deny", asked["bob"], "--note", "ask your supervisor")
    assert denied["state"] == "denied" and denied["note"] == "ask your supervisor"
    assert denied["decided_by"]  # the login name when --by is not given
    assert admin_cli("budget", "bob") == []  # no grant came of it

    assert [r["id"] for r in admin_cli("budget-requests", "--user", "bob")] == [asked["bob"]]
    assert admin_cli("budget-requests", "--state", "pending") == []
    assert len(admin_cli("budget-requests", "--dataset", "PENGUIN")) == 2


def test_approve_as_requested(admin_cli, asked):  # noqa: F811
    approved = admin_cli("approve", asked["bob"], "--by", "root")
    assert approved["granted"] == approved["requested"] == {"epsilon": 2.0, "delta": 1e-6}
    assert admin_cli("budget", "bob")[0]["initial"] == {"epsilon": 2.0, "delta": 1e-6}


def test_text_output_keeps_one_line_per_request(admin_cli, asked):  # noqa: F811
    table = admin_cli("budget-requests", as_json=False)
    lines = table.splitlines()
    assert len(lines) == 3 and lines[0].split()[:3] == ["id", "user", "dataset"]
    assert asked["alice"] in lines[1] and "alice's thesis, chapter 3" in lines[1]
    report = admin_cli("deny", asked["alice"], "--note", "no", as_json=False)
    assert "state: denied" in report and "note: no" in report


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (("approve", "ALICE", "--epsilon", "nan"), "epsilon must be a finite number"),
        (("approve", "ALICE", "--epsilon", "0"), "epsilon must be greater than 0"),
        (("approve", "ALICE", "--delta", "1"), "delta must be at least 0 and below 1"),
        (("approve", "ALICE", "--note", " "), "note must not be empty"),
        (("deny", "ALICE", "--note", ""), "note must not be empty"),
        (("approve", "0" * 32), "no budget request"),
        (("deny", "nonsense", "--note", "x"), "no budget request"),
    ],
)
def test_mistakes_get_one_clear_line(admin_cli, asked, args, mentions):  # noqa: F811
    args = tuple(asked["alice"] if a == "ALICE" else a for a in args)
    stderr = admin_cli(*args, expect=2)
    assert stderr.startswith("lomas-admin: ") and mentions in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert admin_cli("budget-requests", "--state", "pending")[0]["id"] == asked["alice"]


def test_a_decided_request_is_refused(admin_cli, asked):  # noqa: F811
    admin_cli("approve", asked["alice"])
    for args in (("approve", asked["alice"]), ("deny", asked["alice"], "--note", "late")):
        assert "already approved" in admin_cli(*args, expect=2)
    assert admin_cli("budget", "alice")[0]["initial"]["epsilon"] == 3.0  # granted once


def test_argument_mistakes_are_argparse_errors(admin_cli, asked):  # noqa: F811
    assert "--note" in admin_cli("deny", asked["alice"], expect=2)  # a denial says why
    assert "invalid choice" in admin_cli("budget-requests", "--state", "open", expect=2)
