"""The magics in a real IPython shell, against the real server on loopback."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import lomas_jupyter
from lomas_jupyter import MIME_TYPE, InvalidQuery, LomasError

COUNT = "SELECT species, COUNT(*) AS n FROM df GROUP BY species"


@pytest.fixture
def shell():
    ip = InteractiveShell.instance()
    ip.config.pop("LomasMagic", None)  # %config of an earlier test
    lomas_jupyter.load_ipython_extension(ip)
    for name in ("res", "minimum", "island"):
        ip.user_ns.pop(name, None)
    return ip


@pytest.fixture
def user(make_user):
    return make_user(PENGUIN=(5.0, 1e-4), TITANIC=(5.0, 1e-3))


@pytest.fixture
def connected(shell, user, server):
    shell.run_line_magic("lomas_connect", f"{server.url} --token {user.token} --dataset PENGUIN")
    return shell


def _spent(user, dataset="PENGUIN"):
    return user.api.get(f"/datasets/{dataset}/budget").json()["spent"]["epsilon"]


def user_client(shell):
    return shell.magics_manager.registry["LomasMagic"].client


def _error(shell, cell):
    """Run a cell as a notebook would; return the one-line error it shows, if any."""
    result = shell.run_cell(cell)
    return (
        None
        if result.error_in_exec is None
        else (type(result.error_in_exec).__name__, str(result.error_in_exec))
    )


def test_connect_with_url_token_file_and_env(shell, user, server, tmp_path, monkeypatch, capsys):
    shell.run_line_magic("lomas_connect", f"{server.url} --token {user.token}")
    out = capsys.readouterr().out
    assert f"Connected to {server.url}" in out and "PENGUIN, TITANIC" in out
    connection = tmp_path / "connection.json"
    connection.write_text(
        f'{{"url": "{server.url}", "token": "{user.token}", "user": "{user.name}"}}'
    )
    shell.run_line_magic("lomas_connect", f"--file {connection} --dataset TITANIC")
    assert f"as {user.name}" in capsys.readouterr().out
    magic = shell.magics_manager.registry["LomasMagic"]
    assert magic.dataset == "TITANIC"
    monkeypatch.setenv("LOMAS_URL", server.url)
    monkeypatch.setenv("LOMAS_TOKEN", user.token)
    shell.run_line_magic("lomas_connect", "")
    assert "Connected" in capsys.readouterr().out


def test_connect_errors_are_one_readable_line(shell, server, monkeypatch):
    monkeypatch.delenv("LOMAS_URL", raising=False)
    monkeypatch.delenv("LOMAS_TOKEN", raising=False)
    assert _error(shell, f"%lomas_connect {server.url} --token wrong") == (
        "UsageError",
        f"the server at {server.url} refused the token: check the token after --token, "
        "or ask the administrator for a new one [unauthorized]",
    )
    monkeypatch.setenv("LOMAS_TOKEN", "wrong")
    kind, message = _error(shell, f"%lomas_connect {server.url}")
    assert message.startswith(f"the server at {server.url} refused the token: check LOMAS_TOKEN")
    kind, message = _error(shell, "%lomas_connect http://127.0.0.1:9 --token x")
    assert kind == "UsageError" and "cannot reach the server" in message


def test_a_failed_connect_keeps_the_working_connection(connected, user, server, capsys):
    magic = connected.magics_manager.registry["LomasMagic"]
    working = magic.client
    capsys.readouterr()
    for line in (
        f"{server.url} --token wrong",  # refused token
        "http://127.0.0.1:9 --token x",  # no server there
        f"{server.url} --token {user.token} --dataset NOPE",  # a dataset it does not have
    ):
        kind, message = _error(connected, f"%lomas_connect {line}")
        assert kind == "UsageError", message
        assert capsys.readouterr().out == f"Still connected to {server.url}, as before.\n"
        assert magic.client is working and magic.dataset == "PENGUIN"
    # and it still works
    assert list(connected.run_line_magic("lomas_datasets", "")["dataset"]) == ["PENGUIN", "TITANIC"]
    connected.run_cell_magic("lomas_sql", "", "SELECT COUNT(*) AS n FROM df")
    assert _spent(user) == 0.5


def test_query_displays_budget_bundle_and_returns_a_dataframe(connected, user):
    with capture_output() as captured:
        frame = connected.run_cell_magic("lomas_sql", "--epsilon 0.5", COUNT)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["species", "n", "± n"]
    assert (frame["± n"] > 0).all() and list(frame.attrs["half_width"]) == ["n"]
    bundles = [o.data for o in captured.outputs]
    assert len(bundles) == 1
    bundle = bundles[0]
    assert set(bundle) == {MIME_TYPE, "text/html", "text/plain"}
    data = bundle[MIME_TYPE]
    assert data["kind"] == "query" and data["cost"] == {"epsilon": 0.5, "delta": 0.0}
    assert data["spent"]["epsilon"] == 0.5 and data["remaining"]["epsilon"] == 4.5
    # whose budget, on which server, and when: the extension keeps budgets apart by them
    client = user_client(connected)
    assert data["server"] == client.url and data["account"] == client.account
    assert user.token not in str(data) and len(data["account"]) == 16
    assert data["at"].endswith("+00:00")
    assert "lomas-budget" in bundle["text/html"] and "spent 0.5 of 5" in bundle["text/plain"]
    assert _spent(user) == 0.5


def test_assignment_on_the_line_and_in_the_cell(connected):
    assert connected.run_cell_magic("lomas_sql", "res <<", COUNT) is None
    assert list(connected.user_ns["res"].columns) == ["species", "n", "± n"]
    del connected.user_ns["res"]
    connected.run_cell_magic("lomas_sql", "", "res << " + COUNT)
    assert isinstance(connected.user_ns["res"], pd.DataFrame)


def test_templating_fills_variables_from_the_namespace(connected, user):
    connected.user_ns["island"] = "Dream"
    frame = connected.run_cell_magic(
        "lomas_sql", "", "SELECT COUNT(*) AS n FROM df WHERE island = '{{ island }}'"
    )
    history = user.api.get("/queries").json()["queries"]
    assert history[-1]["query"] == "SELECT COUNT(*) AS n FROM df WHERE island = 'Dream'"
    assert len(frame) == 1
    assert _error(connected, "%%lomas_sql\nSELECT COUNT(*) AS n FROM df WHERE x > {{ nope }}") == (
        "UsageError",
        "template: 'nope' is undefined",
    )


def test_estimate_spends_nothing_and_shows_accuracy(connected, user):
    query = "SELECT species, COUNT(*) AS n, AVG(bill_length_mm) AS l FROM df GROUP BY species"
    with capture_output() as captured:
        frame = connected.run_cell_magic("lomas_sql", "--estimate --epsilon 0.5", query)
    assert _spent(user) == 0.0
    data = captured.outputs[0].data[MIME_TYPE]
    assert data["kind"] == "estimate" and data["cost"]["epsilon"] == pytest.approx(1.5)
    rows = frame.set_index("column")
    assert rows.loc["n", "noisy values"] == 1 and rows.loc["l", "noisy values"] == 2
    assert rows.loc["l", "epsilon"] == pytest.approx(1.0)  # what AVG really costs
    assert rows.loc["n", "±95%"] == pytest.approx(5.99, abs=0.01)


def test_dummy_runs_locally_and_spends_nothing(connected, user, capsys):
    frame = connected.run_cell_magic("lomas_sql", "--dummy --epsilon 0.5", COUNT)
    assert _spent(user) == 0.0
    assert user.api.get("/queries").json()["queries"] == []
    assert set(frame["species"]) <= {"Adelie", "Chinstrap", "Gentoo"}
    # 1000 dummy rows, not the 344 penguins: the rows really are synthetic
    assert frame["n"].sum() > 800
    assert "nothing spent" in capsys.readouterr().out
    # the local run enforces the server's allow-list
    kind, message = _error(connected, "%%lomas_sql --dummy\nSELECT * FROM df")
    assert kind == "UsageError" and "SELECT *" in message


def test_repeat_is_a_free_replay_and_fresh_pays(connected, user):
    first = connected.run_cell_magic("lomas_sql", "", COUNT)
    with capture_output() as captured:
        again = connected.run_cell_magic("lomas_sql", "", COUNT.lower())
    pd.testing.assert_frame_equal(first, again)
    data = captured.outputs[0].data[MIME_TYPE]
    assert (
        data["kind"] == "replay"
        and data["replay_of"]
        and "replay of query" in captured.outputs[0].data["text/plain"]
    )
    assert _spent(user) == 0.5
    connected.run_cell_magic("lomas_sql", "--fresh", COUNT)
    assert _spent(user) == 1.0


def test_expensive_query_asks_first(connected, user, monkeypatch):
    # The analyst's answer at the prompt (there is no terminal in a test).
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert (
        connected.run_cell_magic("lomas_sql", "--epsilon 2", "SELECT COUNT(*) AS n FROM df") is None
    )
    assert _spent(user) == 0.0
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert (
        connected.run_cell_magic("lomas_sql", "--epsilon 2", "SELECT COUNT(*) AS n FROM df")
        is not None
    )
    assert _spent(user) == 2.0


def test_expensive_query_without_a_prompt_needs_yes(connected, user, monkeypatch):
    def no_stdin(prompt):
        raise EOFError

    monkeypatch.setattr("builtins.input", no_stdin)
    kind, message = _error(connected, "%%lomas_sql --epsilon 2\nSELECT COUNT(*) AS n FROM df")
    assert kind == "UsageError" and "--yes" in message
    assert _spent(user) == 0.0
    connected.run_cell_magic("lomas_sql", "--epsilon 2 --yes", "SELECT COUNT(*) AS n FROM df")
    assert _spent(user) == 2.0


def test_config_sets_defaults(connected, user):
    connected.run_line_magic("config", "LomasMagic.epsilon = 0.25")
    connected.run_line_magic("config", "LomasMagic.dataset = 'TITANIC'")
    connected.run_line_magic("config", "LomasMagic.delta = 1e-5")
    # names are not public keys: their groups are thresholded, which takes the delta
    connected.run_cell_magic("lomas_sql", "", "SELECT Name, COUNT(*) AS n FROM df GROUP BY Name")
    budget = user.api.get("/datasets/TITANIC/budget").json()["spent"]
    assert budget["epsilon"] == 0.25 and budget["delta"] == pytest.approx(1e-5)


def test_server_errors_are_readable_and_cost_nothing(connected, user):
    assert _error(connected, "%%lomas_sql\nSELECT * FROM df") == (
        "UsageError",
        "SELECT * is not supported; name the columns and aggregates [invalid_query]",
    )
    kind, message = _error(connected, "%%lomas_sql --epsilon 6 --yes\nSELECT COUNT(*) AS n FROM df")
    assert "budget_exceeded" in message or "query_too_expensive" in message
    kind, message = _error(connected, "%%lomas_sql --dataset NOPE\nSELECT COUNT(*) AS n FROM df")
    assert "no dataset 'NOPE'" in message
    kind, message = _error(connected, "%%lomas_sql --epsilon\nSELECT COUNT(*) AS n FROM df")
    assert kind == "UsageError"
    assert _spent(user) == 0.0


def test_short_errors_off_raises_the_real_exception(connected):
    connected.run_line_magic("config", "LomasMagic.short_errors = False")
    kind, _ = _error(connected, "%%lomas_sql\nSELECT * FROM df")
    assert kind == "InvalidQuery"  # a LomasError: the server's refusal, as its own class
    # the local dummy run refuses it with the same class, though no server was asked
    result = connected.run_cell("%%lomas_sql --dummy\nSELECT * FROM df")
    assert type(result.error_in_exec) is InvalidQuery
    assert isinstance(result.error_in_exec, LomasError) and result.error_in_exec.status is None


def test_line_magics(connected, user):
    datasets = connected.run_line_magic("lomas_datasets", "")
    assert list(datasets["dataset"]) == ["PENGUIN", "TITANIC"]
    # what one query may cost sits beside what is left: delta too, which groups need
    assert list(datasets.columns) == [
        "dataset",
        "epsilon left",
        "delta left",
        "epsilon spent",
        "delta spent",
        "max epsilon per query",
        "max delta per query",
    ]
    limits = {d.name: d.max_query for d in user_client(connected).datasets()}
    titanic = datasets.set_index("dataset").loc["TITANIC"]
    assert titanic["delta left"] == 1e-3 and titanic["max delta per query"] == pytest.approx(
        limits["TITANIC"]["delta"]
    )
    assert titanic["max epsilon per query"] == limits["TITANIC"]["epsilon"]
    metadata = connected.run_line_magic("lomas_metadata", "")
    assert "bill_length_mm" in set(metadata["column"])
    assert metadata.set_index("column").loc["bill_length_mm", "upper"] == 65.0
    dummy = connected.run_line_magic("lomas_dummy", "--rows 7 --seed 3 TITANIC")
    assert dummy.shape == (7, 8)
    connected.run_cell_magic("lomas_sql", "--epsilon 0.5", COUNT)
    history = connected.run_line_magic("lomas_history", "")
    assert list(history["status"]) == ["done"] and history["cost epsilon"][0] == 0.5
    pd.testing.assert_frame_equal(
        metadata, user_client(connected).metadata("PENGUIN").columns
    )  # the magic shows what the client returns
    with capture_output() as captured:
        connected.run_line_magic("lomas_budget", "")
    data = captured.outputs[0].data[MIME_TYPE]
    assert data["kind"] == "budget" and data["queries_left"] == 9  # 4.5 left / 0.5 each
    assert "9 more queries like the last one fit" in captured.outputs[0].data["text/plain"]


def test_history_is_readable(connected, user):
    total = "SELECT COUNT(*) AS n FROM df"
    connected.run_cell_magic(
        "lomas_sql", "", "SELECT species, COUNT(*) AS n\n  FROM df\n  GROUP BY species"
    )
    connected.run_cell_magic("lomas_sql", "", total)
    connected.run_cell_magic("lomas_sql", "", total.lower())  # the same again: a free replay
    connected.run_cell_magic("lomas_sql", "--fresh", total)
    connected.run_cell_magic("lomas_opendp", "--rho 0.05 --yes", "aggregates: [{op: count}]")
    connected.run_cell_magic(
        "lomas_sql",
        "--dataset TITANIC --delta 1e-5",
        "SELECT Name, COUNT(*) AS n FROM df GROUP BY Name",
    )
    history = connected.run_line_magic("lomas_history", "")
    assert list(history.columns) == [
        "at",
        "query_id",
        "dataset",
        "engine",
        "query",
        "parameters",
        "cost epsilon",
        "cost delta",
        "status",
        "replay",
    ]
    records = user_client(connected).queries("PENGUIN")  # the default dataset's
    assert list(history["query_id"]) == [r.query_id[:8] for r in records]
    # local time to the second, not the server's ISO string in UTC
    at = history["at"][0]
    assert isinstance(at, pd.Timestamp) and at.tzinfo is None and at.microsecond == 0
    assert at == pd.Timestamp(
        records[0].created_at.astimezone().replace(tzinfo=None, microsecond=0)
    )
    assert list(history["query"]) == [COUNT, total, total, "count(*)"]  # each on one line
    assert list(history["engine"]) == ["SQL", "SQL", "SQL", "OpenDP"]
    assert list(history["parameters"]) == ["epsilon=0.5", "epsilon=0.5", "epsilon=0.5", "rho=0.05"]
    assert list(history["replay"]) == [
        "free to rerun",
        "free to rerun",
        f"fresh repeat of {history['query_id'][1]}",
        "free to rerun",
    ]
    assert list(history["status"]) == ["done"] * 4
    assert list(history["cost epsilon"][:3]) == [0.5, 0.5, 0.5]
    titanic = connected.run_line_magic("lomas_history", "TITANIC")
    assert list(titanic["dataset"]) == ["TITANIC"]
    assert titanic["parameters"][0] == "epsilon=0.5, delta=1e-05"
    assert titanic["cost delta"][0] == pytest.approx(1e-5)


def test_estimate_columns_are_the_same_for_every_engine(connected):
    sql = connected.run_cell_magic("lomas_sql", "--estimate", COUNT)
    opendp = connected.run_cell_magic("lomas_opendp", "--estimate", OPENDP_CELL)
    assert (
        list(sql.columns)
        == list(opendp.columns)
        == ["column", "noisy values", "epsilon", "±95%", "±95% × rows"]
    )
    # SmartNoise-SQL gives each noisy value's epsilon, OpenDP does not: empty, still there
    assert sql.set_index("column").loc["n", "epsilon"] == 0.5 and opendp["epsilon"].isna().all()


def test_magics_before_connecting_say_so(shell):
    shell.magics_manager.registry["LomasMagic"].client = None
    assert _error(shell, "%lomas_datasets") == (
        "UsageError",
        "not connected yet: run %lomas_connect first",
    )


def test_dummy_line_magic_assigns_like_any_expression(connected, user):
    result = connected.run_cell("rows = %lomas_dummy --rows 12 --seed 4")
    assert result.error_in_exec is None
    assert connected.user_ns["rows"].shape == (12, 7)
    assert _spent(user) == 0.0


OPENDP_CELL = """
group_by: [species]
aggregates:
  - {op: count}
  - {op: mean, column: bill_length_mm, as: bill}
"""


def test_opendp_magic_estimate_run_replay_and_dummy(connected, user, capsys):
    with capture_output() as captured:
        estimate = connected.run_cell_magic(
            "lomas_opendp", "--epsilon 0.5 --delta 1e-6 --estimate", OPENDP_CELL
        )
    assert _spent(user) == 0.0
    # species are public keys: no threshold, so the delta offered is not spent
    assert captured.outputs[0].data[MIME_TYPE]["cost"] == {"epsilon": 0.5, "delta": 0.0}
    assert list(estimate["column"]) == ["count", "bill"]
    connected.run_cell_magic(
        "lomas_opendp", "--epsilon 0.5 --delta 1e-6 by_species <<", OPENDP_CELL
    )
    frame = connected.user_ns["by_species"]
    assert list(frame.columns) == ["species", "count", "± count", "bill"]
    assert _spent(user) == 0.5
    with capture_output() as captured:
        connected.run_cell_magic("lomas_opendp", "--epsilon 0.5 --delta 1e-6", OPENDP_CELL)
    assert captured.outputs[0].data[MIME_TYPE]["kind"] == "replay" and _spent(user) == 0.5
    dummy = connected.run_cell_magic(
        "lomas_opendp", "--epsilon 0.5 --delta 1e-6 --dummy", OPENDP_CELL
    )
    assert list(dummy.columns) == ["species", "count", "bill"] and _spent(user) == 0.5
    assert "nothing spent" in capsys.readouterr().out


def test_opendp_magic_gaussian_and_errors(connected, user):
    frame = connected.run_cell_magic(
        "lomas_opendp", "--rho 0.05 --yes", "aggregates: [{op: count}]"
    )
    assert list(frame.columns) == ["count", "± count"]
    assert _error(connected, "%%lomas_opendp\naggregates: [{op: sum, column: species}]")[
        1
    ].startswith("'sum' needs a numeric or boolean column")
    assert "YAML" in _error(connected, "%%lomas_opendp\naggregates: [unclosed")[1]
    assert (
        "not both"
        in _error(connected, "%%lomas_opendp --epsilon 1 --rho 1\naggregates: [{op: count}]")[1]
    )


def test_opendp_builder_reads_like_opendp(connected, user):
    client = connected.magics_manager.registry["LomasMagic"].client
    query = (
        client.opendp("PENGUIN")
        .filter("island", "==", "Dream")
        .group_by("species")
        .mean("bill_length_mm")
    )
    estimate = query.laplace(epsilon=0.5, delta=1e-6).estimate()
    assert estimate.cost["epsilon"] == 0.5 and _spent(user) == 0.0
    frame = query.laplace(epsilon=0.5, delta=1e-6).release()
    assert list(frame.columns) == ["species", "mean_bill_length_mm"]
    assert _spent(user) == 0.5
    counted = client.opendp("PENGUIN").count().gaussian(rho=0.05).release()
    assert list(counted.columns) == ["count"]
