"""AdminClient against the real server: the /admin API from Python, and budget requests
from both sides (the analyst's Client asks, the admin decides)."""

from __future__ import annotations

import shutil
import uuid

import pandas as pd
import pytest
import yaml

from lomas_jupyter import (
    AdminClient,
    AdminDataset,
    AdminUser,
    BudgetRequest,
    Client,
    ClientUsageError,
    Conflict,
    Forbidden,
    Identity,
    InvalidRequest,
    NotFound,
    Unauthorized,
)
from tests.conftest import SAMPLE_DATA

COUNT = "SELECT COUNT(*) AS n FROM df"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def root(admin, server):
    """An admin of the shared server, made as lomas-admin would make one."""
    name = _name("admin")
    return AdminClient(server.url, admin.add_user(name, is_admin=True), user=name)


@pytest.fixture
def analyst(make_user, server):
    user = make_user(PENGUIN=(1.0, 1e-5))
    return user, Client(server.url, user.token, user=user.name)


def test_me_says_who_and_whether_admin(root, analyst):
    assert root.me() == Identity(root.client.user, True, "token")
    user, client = analyst
    assert client.me() == Identity(user.name, False, "token")


def test_users_are_a_table_and_a_new_users_token_works(root, server):
    name = _name("bob")
    token = root.add_user(name)
    assert token and token.startswith("lomas_")
    users = root.users()
    assert list(users.columns) == ["name", "admin", "may_query", "created_at"]
    row = users.set_index("name").loc[name]
    assert not row["admin"] and row["may_query"]
    assert root.client.user in set(users[users["admin"]]["name"])
    assert Client(server.url, token).me().user == name
    new = root.rotate_token(name)
    assert new != token and Client(server.url, new).me().user == name
    with pytest.raises(Unauthorized):
        Client(server.url, token).me()
    with pytest.raises(Conflict):
        root.add_user(name)


def test_block_and_unblock(root, analyst):
    user, client = analyst
    blocked = root.block(user.name)
    assert isinstance(blocked, AdminUser) and not blocked.may_query and blocked.token is None
    with pytest.raises(Forbidden):
        client.smartnoise_sql("PENGUIN", COUNT, epsilon=0.1)
    assert root.unblock(user.name).may_query
    assert len(client.smartnoise_sql("PENGUIN", COUNT, epsilon=0.1)) == 1


def test_grants_budgets_and_the_archive(root, analyst):
    user, client = analyst
    assert root.grant(user.name, "TITANIC", 2.0, 1e-4) == {"epsilon": 2.0, "delta": 1e-4}
    release = client.smartnoise_sql_response("TITANIC", COUNT, epsilon=0.5)
    budgets = root.budgets(user.name).set_index("dataset")
    assert list(budgets.columns) == [
        f"{part} {name}"
        for part in ("initial", "spent", "remaining")
        for name in ("epsilon", "delta")
    ]
    assert budgets.loc["TITANIC", "initial epsilon"] == 2.0
    assert budgets.loc["TITANIC", "spent epsilon"] == 0.5
    assert budgets.loc["PENGUIN", "remaining epsilon"] == 1.0
    queries = root.queries(user.name, "TITANIC")
    # as %lomas_history shows one's own: the id's first 8 characters
    assert list(queries["query_id"]) == [release.query_id[:8]] and queries["query"][0] == COUNT
    assert root.queries(user.name, "PENGUIN").empty
    with pytest.raises(NotFound):
        root.grant(user.name, "NO_SUCH_DATASET", 1.0)


def test_datasets_added_from_a_yaml_file_or_a_dict_and_their_limits(root, tmp_path):
    data = tmp_path / "penguin.csv"
    shutil.copyfile(SAMPLE_DATA / "penguin.csv", data)
    name = _name("PENGUIN_COPY")
    added = root.add_dataset(name, data, SAMPLE_DATA / "penguin.yaml", max_query=(1.0, 1e-5))
    assert isinstance(added, AdminDataset) and added.name == name
    assert added.max_query == {"epsilon": 1.0, "delta": 1e-5} and added.cap is None
    other = root.add_dataset(
        _name("PENGUIN_DICT"), str(data), yaml.safe_load((SAMPLE_DATA / "penguin.yaml").read_text())
    )
    assert other.spent == {"epsilon": 0.0, "delta": 0.0}
    limited = root.set_limits(name, cap={"epsilon": 50.0, "delta": 1e-3})
    assert limited.cap == {"epsilon": 50.0, "delta": 1e-3} and limited.max_query is None
    datasets = root.datasets().set_index("name")
    assert {"PENGUIN", "TITANIC", name, other.name} <= set(datasets.index)
    assert datasets.loc[name, "cap"] == {"epsilon": 50.0, "delta": 1e-3}
    assert "SHOULD-NOT-LEAK" not in datasets.to_json()
    with pytest.raises(ClientUsageError, match="cannot read metadata file") as info:
        root.add_dataset(_name("X"), data, tmp_path / "missing.yaml")
    assert "\n" not in str(info.value)
    (tmp_path / "broken.yaml").write_text("columns: [unclosed\n  x: 1\n")
    with pytest.raises(ClientUsageError) as info:
        root.add_dataset(_name("X"), data, tmp_path / "broken.yaml")
    assert "\n" not in str(info.value)


def test_a_budget_request_approved_grows_the_grant(root, analyst):
    user, client = analyst
    asked = client.request_budget("PENGUIN", 2.0, reason="a second look at bill lengths")
    assert isinstance(asked, BudgetRequest) and asked.state == "pending"
    assert (asked.user, asked.dataset, asked.requested) == (
        user.name,
        "PENGUIN",
        {"epsilon": 2.0, "delta": 0.0},
    )
    assert asked.granted is None and asked.decided_by is None
    with pytest.raises(Conflict):  # one pending request per dataset
        client.request_budget("PENGUIN", 1.0, reason="again")
    pending = root.budget_requests(user=user.name)
    assert list(pending["id"]) == [asked.id] and pending["state"][0] == "pending"
    assert pending["reason"][0] == "a second look at bill lengths"
    approved = root.approve(asked.id, epsilon=1.5, note="1.5 for now")
    assert approved.state == "approved" and approved.granted == {"epsilon": 1.5, "delta": 0.0}
    assert approved.decided_by == root.client.user and approved.note == "1.5 for now"
    assert client.budget("PENGUIN").initial["epsilon"] == pytest.approx(2.5)
    assert root.budget_requests(user=user.name).empty  # none pending any more
    everything = root.budget_requests(state=None, user=user.name)
    assert list(everything["state"]) == ["approved"]
    with pytest.raises(Conflict):
        root.approve(asked.id)
    assert client.budget_requests() == [approved]


def test_a_budget_request_denied_says_why(root, analyst):
    user, client = analyst
    asked = client.request_budget("PENGUIN", 5.0, delta=1e-5, reason="everything, please")
    assert asked.requested == {"epsilon": 5.0, "delta": 1e-5}
    denied = root.deny(asked.id, "too much for one study")
    assert (denied.state, denied.note, denied.granted) == ("denied", "too much for one study", None)
    assert client.budget("PENGUIN").initial["epsilon"] == 1.0
    (mine,) = client.budget_requests()
    assert mine.state == "denied" and mine.note == "too much for one study"
    with pytest.raises(Conflict):
        root.deny(asked.id, "again")
    with pytest.raises(NotFound):
        root.approve("0" * 32)


def test_a_budget_request_needs_a_reason_and_a_dataset(analyst):
    _, client = analyst
    with pytest.raises(InvalidRequest, match="reason"):
        client.request_budget("PENGUIN", 1.0, reason="   ")
    with pytest.raises(NotFound):
        client.request_budget("NO_SUCH_DATASET", 1.0, reason="why not")


def test_an_analyst_is_no_admin(analyst, server):
    user, _ = analyst
    not_admin = AdminClient(server.url, user.token, user=user.name)
    for call in (not_admin.users, not_admin.datasets, not_admin.budget_requests):
        with pytest.raises(Forbidden) as info:
            call()
        assert str(info.value) == (
            f"this needs an admin of the lomas service at {server.url}: {user.name} is not one"
            " [forbidden]"
        )
    with pytest.raises(Forbidden, match="this needs an admin"):
        not_admin.approve("0" * 32)


def test_discover_and_from_file(root, server, monkeypatch, tmp_path):
    for name in ("LOMAS_CONNECTION_FILE", "JUPYTERHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    token = root.client._session.headers["Authorization"].split()[1]
    monkeypatch.setenv("LOMAS_URL", server.url)
    monkeypatch.setenv("LOMAS_TOKEN", token)
    with AdminClient.discover() as admin:
        assert admin.url == server.url and isinstance(admin.users(), pd.DataFrame)
        assert token not in repr(admin)
    path = tmp_path / "admin.json"
    path.write_text(f'{{"url": "{server.url}", "token": "{token}", "user": "the-admin"}}')
    assert AdminClient.from_file(path).client.user == "the-admin"
