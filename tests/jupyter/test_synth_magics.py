"""%%lomas_synth in a real IPython shell, against the real server: the price with the
domain, a release stored or returned with the budget shown, a dummy run that spends nothing,
and every mistake as one line."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import lomas_jupyter
from lomas_jupyter import MIME_TYPE

CELL = """
synthesizer: mst
columns: [species, island]
epsilon: 1.0
delta: 1e-6
rows: 150
"""


@pytest.fixture
def shell():
    ip = InteractiveShell.instance()
    ip.config.pop("LomasMagic", None)  # %config of an earlier test
    lomas_jupyter.load_ipython_extension(ip)
    for name in ("rows", "island"):
        ip.user_ns.pop(name, None)
    return ip


@pytest.fixture
def user(make_user):
    return make_user(PENGUIN=(5.0, 1e-4))


@pytest.fixture
def connected(shell, user, server):
    shell.run_line_magic("lomas_connect", f"{server.url} --token {user.token} --dataset PENGUIN")
    return shell


def _spent(user):
    return user.api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"]


def _error(shell, cell):
    """Run a cell as a notebook would; return the one-line error it shows, if any."""
    result = shell.run_cell(cell)
    error = result.error_in_exec
    return None if error is None else (type(error).__name__, str(error))


def test_estimate_shows_the_domain_and_spends_nothing(connected, user, capsys):
    with capture_output() as captured:
        table = connected.run_cell_magic("lomas_synth", "PENGUIN --estimate", CELL)
    assert table.values.tolist() == [["species", "3 values", False], ["island", "3 values", False]]
    (bundle,) = [output.data for output in captured.outputs]
    data = bundle[MIME_TYPE]
    assert data["kind"] == "estimate" and data["cost"] == {"epsilon": 1.0, "delta": 1e-6}
    assert "mst: a maximum spanning tree" in captured.stdout
    assert _spent(user) == 0.0 and user.api.get("/queries").json()["queries"] == []


def test_release_is_stored_in_the_variable_and_the_budget_shown(connected, user):
    with capture_output() as captured:
        assert connected.run_cell_magic("lomas_synth", "PENGUIN rows <<", CELL) is None
    rows = connected.user_ns["rows"]
    assert isinstance(rows, pd.DataFrame) and rows.shape == (150, 2)
    assert list(rows.columns) == ["species", "island"]
    assert set(rows["island"]) <= {"Torgersen", "Biscoe", "Dream"}
    (bundle,) = [output.data for output in captured.outputs]
    data = bundle[MIME_TYPE]
    assert data["kind"] == "query" and data["query_id"] == rows.attrs["query_id"]
    assert data["spent"]["epsilon"] == 1.0 == _spent(user)

    # the same cell again (the dataset now the default, the variable in the cell): a replay
    with capture_output() as captured:
        again = connected.run_cell_magic("lomas_synth", "", "again <<" + CELL)
    assert again is None and captured.outputs[0].data[MIME_TYPE]["kind"] == "replay"
    pd.testing.assert_frame_equal(connected.user_ns.pop("again"), rows)
    assert _spent(user) == 1.0


def test_dummy_gives_rows_of_the_columns_and_spends_nothing(connected, user, capsys):
    frame = connected.run_cell_magic("lomas_synth", "--dummy", CELL)
    assert list(frame.columns) == ["species", "island"] and len(frame) == 150
    assert set(frame["species"]) <= {"Adelie", "Chinstrap", "Gentoo"}
    out = capsys.readouterr().out
    assert "150 dummy rows, made from the metadata alone" in out and "nothing spent" in out
    assert "would cost epsilon=1, delta=1e-06" in out
    assert _spent(user) == 0.0 and user.api.get("/queries").json()["queries"] == []


def test_a_costly_fit_without_a_prompt_needs_yes(connected, user, monkeypatch):
    def no_stdin(prompt):
        raise EOFError

    monkeypatch.setattr("builtins.input", no_stdin)
    costly = CELL.replace("epsilon: 1.0", "epsilon: 2.0")
    kind, message = _error(connected, "%%lomas_synth\n" + costly)
    assert kind == "UsageError" and "add --yes" in message
    assert _spent(user) == 0.0


def test_templates_and_defaults_fill_the_cell(connected, user):
    connected.user_ns["island"] = "island"
    connected.run_line_magic("config", "LomasMagic.epsilon = 0.25")
    cell = "synthesizer: mst\ncolumns: species, {{ island }}\nrows: 10"
    with capture_output() as captured:
        connected.run_cell_magic("lomas_synth", "--estimate", cell)
    cost = captured.outputs[0].data[MIME_TYPE]["cost"]
    assert cost["epsilon"] == 0.25 and cost["delta"] > 0  # the server chose the delta


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        (
            "synthesizer: mst\ncolumns: [species, island\n",
            "the cell is not valid YAML or JSON",
        ),
        (
            "synthesizer: mst\ncolumns: [species, island]\nepsilon: 1\nseed: 3",
            "%%lomas_synth has no field 'seed'; its cell holds: synthesizer, columns, epsilon, "
            "delta, rows, bins",
        ),
        (
            "synthesizer: mst\nepsilon: 1",
            "a %%lomas_synth cell needs at least 'synthesizer' and 'columns'",
        ),
        ("synthesizer: mst\ncolumns: 3", "'columns' is a list of column names"),
        (
            "synthesizer: mst\ncolumns: [species, island]\nepsilon: lots",
            "'epsilon' must be a number",
        ),
        (
            "synthesizer: mst\ncolumns: [species, wingspan]",
            "no column 'wingspan' in this dataset [invalid_query]",
        ),
        ("synthesizer: gan\ncolumns: [species, island]", "'synthesizer' must be 'aim' or 'mst'"),
        ("synthesizer: mst\ncolumns: [species, {{ nope }}]", "template: 'nope' is undefined"),
    ],
)
def test_mistakes_are_one_line_and_cost_nothing(connected, user, cell, message):
    kind, shown = _error(connected, "%%lomas_synth\n" + cell)
    assert kind == "UsageError" and message in shown and "\n" not in shown
    assert _spent(user) == 0.0


def test_the_magic_line_names_one_dataset(connected):
    assert "name one dataset" in _error(connected, "%%lomas_synth PENGUIN TITANIC\n" + CELL)[1]
    assert "two datasets named" in _error(connected, "%%lomas_synth TITANIC -d PENGUIN\n" + CELL)[1]
    assert "no dataset 'NOPE'" in _error(connected, "%%lomas_synth NOPE --estimate\n" + CELL)[1]
