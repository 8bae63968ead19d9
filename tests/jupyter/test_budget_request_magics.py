"""%lomas_request_budget and %lomas_budget_requests in a real IPython shell, against the real
server; and who %lomas_connect says you are."""

from __future__ import annotations

import uuid

import pytest
from IPython.core.interactiveshell import InteractiveShell

import lomas_jupyter
from lomas_jupyter import AdminClient


@pytest.fixture
def shell():
    ip = InteractiveShell.instance()
    ip.config.pop("LomasMagic", None)
    lomas_jupyter.load_ipython_extension(ip)
    return ip


@pytest.fixture
def user(make_user):
    return make_user(PENGUIN=(1.0, 1e-5), TITANIC=(1.0, 1e-5))


@pytest.fixture
def connected(shell, user, server, capsys):
    shell.run_line_magic("lomas_connect", f"{server.url} --token {user.token} --dataset PENGUIN")
    capsys.readouterr()
    return shell


@pytest.fixture(scope="module")
def root(admin, server):
    name = f"admin-{uuid.uuid4().hex[:8]}"
    return AdminClient(server.url, admin.add_user(name, is_admin=True), user=name)


def _error(shell, cell):
    result = shell.run_cell(cell)
    error = result.error_in_exec
    return None if error is None else (type(error).__name__, str(error))


def test_connect_says_who_the_server_takes_you_for(shell, user, root, server, capsys):
    shell.run_line_magic("lomas_connect", f"{server.url} --token {user.token}")
    assert f"Connected to {server.url} as {user.name}. Datasets:" in capsys.readouterr().out
    token = root.client._session.headers["Authorization"].split()[1]
    shell.run_line_magic("lomas_connect", f"{server.url} --token {token}")
    out = capsys.readouterr().out
    assert f"as {root.client.user} (admin). Datasets: (none)" in out
    # the name comes from the server: a connection file's "user" cannot make it up
    assert shell.magics_manager.registry["LomasMagic"].client.user == root.client.user


def test_request_budget_shows_the_request_and_its_state(connected, user, capsys):
    connected.run_line_magic(
        "lomas_request_budget", 'TITANIC --epsilon 2 --reason "a second look at the fares"'
    )
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("Budget request ") and "epsilon=2 on TITANIC, pending." in line
    assert "%lomas_budget_requests" in line
    # the default dataset, and a reason without quotes
    connected.run_line_magic(
        "lomas_request_budget", "--epsilon 0.5 --delta 1e-6 --reason for the penguin study"
    )
    assert "epsilon=0.5, delta=1e-06 on PENGUIN, pending." in capsys.readouterr().out
    client = connected.magics_manager.registry["LomasMagic"].client
    reasons = [r.reason for r in client.budget_requests()]
    assert reasons == ["a second look at the fares", "for the penguin study"]


def test_request_budget_errors_are_one_line(connected):
    assert _error(connected, "%lomas_request_budget PENGUIN --epsilon 2 --reason first") is None
    kind, message = _error(connected, "%lomas_request_budget PENGUIN --epsilon 1 --reason again")
    assert kind == "UsageError" and "\n" not in message and message.endswith("[conflict]")
    kind, message = _error(connected, "%lomas_request_budget PENGUIN --epsilon 1")
    assert kind == "UsageError" and "--reason" in message
    kind, message = _error(connected, "%lomas_request_budget NOPE --epsilon 1 --reason why")
    assert kind == "UsageError" and message.startswith("no dataset 'NOPE'")
    kind, message = _error(connected, "%lomas_request_budget TITANIC --epsilon -1 --reason why")
    assert kind == "UsageError" and "\n" not in message


def test_budget_requests_table_follows_the_decisions(connected, user, root, capsys):
    assert connected.run_line_magic("lomas_budget_requests", "") is None
    assert "No budget requests yet" in capsys.readouterr().out
    connected.run_line_magic("lomas_request_budget", "PENGUIN --epsilon 2 --reason more, please")
    connected.run_line_magic("lomas_request_budget", "TITANIC --epsilon 3 --reason and here")
    penguin, titanic = root.budget_requests(user=user.name)["id"]
    root.approve(penguin, epsilon=1.0, note="half of it")
    root.deny(titanic, "not for this study")
    table = connected.run_line_magic("lomas_budget_requests", "")
    assert list(table.columns) == [
        "id",
        "dataset",
        "epsilon",
        "delta",
        "state",
        "reason",
        "asked at",
        "granted epsilon",
        "granted delta",
        "decided by",
        "note",
    ]
    assert list(table["dataset"]) == ["PENGUIN", "TITANIC"]
    assert list(table["state"]) == ["approved", "denied"]
    assert list(table["note"]) == ["half of it", "not for this study"]
    assert table["granted epsilon"][0] == 1.0 and table["id"][0] == penguin[:8]
    assert list(table["decided by"]) == [root.client.user] * 2


def test_the_magics_have_help(shell):
    magics = shell.magics_manager.magics["line"]
    for name in ("lomas_request_budget", "lomas_budget_requests"):
        assert magics[name].__doc__
    assert "--reason" in magics["lomas_request_budget"].__doc__
