"""Tab completion in %%lomas_sql cells, asked of IPython's completer as a kernel asks it, with
the metadata of the real server on loopback."""

from __future__ import annotations

import pytest
from IPython.core.completer import provisionalcompleter
from IPython.core.interactiveshell import InteractiveShell

import lomas_jupyter


@pytest.fixture
def shell(make_user, server):
    ip = InteractiveShell.instance()
    ip.config.pop("LomasMagic", None)
    lomas_jupyter.load_ipython_extension(ip)
    user = make_user(PENGUIN=(1.0, 0.0), TITANIC=(1.0, 0.0))
    ip.run_line_magic("lomas_connect", f"{server.url} --token {user.token} --dataset PENGUIN")
    return ip


def _complete(shell, cell: str) -> list[tuple[str, str, str]]:
    """(text, type, the fragment it replaces) of each completion at the end of ``cell``."""
    with shell.builtin_trap, provisionalcompleter():  # as ipykernel asks
        found = list(shell.Completer.completions(cell, len(cell)))
    return [(c.text, c.type, cell[c.start : c.end]) for c in found]


def test_a_column_name_completes(shell):
    assert ("species", "column", "spe") in _complete(shell, "%%lomas_sql\nSELECT spe")
    # SQL names ignore case, and Python's names do not crowd a SQL cell
    found = _complete(shell, "%%lomas_sql\nSELECT island, COUNT(*) FROM df WHERE ISL")
    assert found == [("island", "column", "ISL")]


def test_blank_lines_before_the_magic_are_allowed(shell):
    # IPython drops them before it looks for a cell magic
    assert ("species", "column", "spe") in _complete(shell, "\n  \n%%lomas_sql\nSELECT spe")


def test_a_dataset_name_completes_after_the_dataset_option(shell):
    assert _complete(shell, "%%lomas_sql --dataset TI") == [("TITANIC", "dataset", "TI")]
    assert _complete(shell, "%%lomas_sql -d=pen") == [("PENGUIN", "dataset", "pen")]


def test_aggregates_complete_with_columns(shell):
    found = _complete(shell, "%%lomas_sql --estimate\nSELECT A")
    assert ("AVG", "function", "A") in found


def test_after_from_the_table_names(shell):
    found = _complete(shell, "%%lomas_sql\nSELECT COUNT(*) AS n\nFROM ")
    assert {text for text, kind, _ in found} == {"df", "PENGUIN"}
    assert all(kind == "table" for _, kind, _ in found)


def test_a_quoted_value_completes_from_the_columns_categories(shell):
    found = _complete(shell, "%%lomas_sql\nSELECT COUNT(*) FROM df WHERE species = 'Ad")
    assert found == [("Adelie", "category", "Ad")]
    found = _complete(shell, "%%lomas_sql\nSELECT COUNT(*) FROM df WHERE island IN ('Dream', '")
    assert {text for text, _, _ in found} == {"Biscoe", "Dream", "Torgersen"}


def test_the_cells_dataset_option_chooses_the_metadata(shell):
    found = _complete(shell, "%%lomas_sql --dataset TITANIC\nSELECT AVG(Surv")
    assert found == [("Survived", "column", "Surv")]
    assert _complete(shell, "%%lomas_sql -d TITANIC\nSELECT spe") == []


def test_nothing_outside_a_lomas_sql_cell_or_on_its_magic_line(shell):
    shell.user_ns["speed"] = 1
    python = _complete(shell, "x = 1\nspe")
    assert ("speed", "variable", "spe") not in [(t, k, f) for t, k, f in python if k == "column"]
    assert not any(kind in ("column", "table", "category") for _, kind, _ in python)
    on_magic_line = _complete(shell, "%%lomas_sql --da")
    assert not any(kind in ("column", "table") for _, kind, _ in on_magic_line)


def test_without_a_connection_completion_stays_quiet(make_user, server):
    ip = InteractiveShell.instance()
    ip.config.pop("LomasMagic", None)
    lomas_jupyter.load_ipython_extension(ip)  # a fresh magics object: not connected
    assert not any(k == "column" for _, k, _ in _complete(ip, "%%lomas_sql\nSELECT spe"))
