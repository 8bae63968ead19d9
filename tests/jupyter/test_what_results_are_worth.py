"""In the notebook, every result says what it is worth: ± columns, hidden groups, values
kept in range, a mean's half-width, a delta chosen for the analyst, a whole-cell budget."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import lomas_jupyter
from lomas_server.limits import DEFAULT_DELTA

MEAN = "SELECT species, AVG(body_mass_g) AS m, COUNT(body_mass_g) AS n FROM df GROUP BY species"
BY_NAME = "SELECT Name, COUNT(*) AS n FROM df GROUP BY Name"


@pytest.fixture
def user(make_user):
    return make_user(PENGUIN=(50.0, 1e-4), TITANIC=(5.0, 1e-3))


@pytest.fixture
def shell(user, server):
    ip = InteractiveShell.instance()
    ip.config.pop("LomasMagic", None)
    lomas_jupyter.load_ipython_extension(ip)
    ip.run_line_magic("lomas_connect", f"{server.url} --token {user.token} --dataset PENGUIN")
    return ip


def _spent(user, dataset="PENGUIN"):
    return user.api.get(f"/datasets/{dataset}/budget").json()["spent"]["epsilon"]


def _run(shell, line, cell):
    with capture_output() as captured:
        frame = shell.run_cell_magic("lomas_sql", line, cell)
    return frame, captured.stdout


def test_a_mean_gets_a_half_width_per_group_from_its_own_count(shell):
    frame, _ = _run(shell, "--epsilon 1 --yes", MEAN)
    assert list(frame.columns) == ["species", "m", "± m", "n", "± n"]
    k = next(
        c["half_width_times_count"]
        for c in frame.attrs["accuracy"]["columns"]
        if c["column"] == "m"
    )
    assert list(frame["± m"]) == pytest.approx([k / n for n in frame["n"]])
    assert frame.attrs["half_width"]["m"] == pytest.approx(list(frame["± m"]))


def test_the_columns_can_be_left_out_and_attrs_keep_them(shell):
    shell.run_line_magic("config", "LomasMagic.uncertainty = False")
    frame, _ = _run(shell, "--epsilon 1 --yes", MEAN)
    assert list(frame.columns) == ["species", "m", "n"]
    assert frame.attrs["half_width"]["n"] > 0


def test_an_estimate_states_a_means_half_width_per_group_size(shell):
    frame, out = _run(shell, "--estimate --epsilon 1", "SELECT AVG(body_mass_g) AS m FROM df")
    assert frame.set_index("column").loc["m", "±95% × rows"] > 0
    assert "'m' is a mean: ±" in out and "/n for a group of n rows" in out


def test_hidden_groups_are_announced_and_delta_is_chosen(shell, user):
    estimate, out = _run(shell, "--estimate --dataset TITANIC --epsilon 1", BY_NAME)
    assert "shown only when its noisy count passes about" in out
    assert "smaller groups will be hidden" in out
    frame, out = _run(shell, "--dataset TITANIC --epsilon 1 --yes", BY_NAME)
    assert "smaller groups are hidden" in out
    assert frame.attrs["delta"] == DEFAULT_DELTA and frame.attrs["threshold"] > 1
    assert _spent(user, "TITANIC") == 1.0


def test_values_moved_into_range_are_reported(shell):
    moved = 0
    for _ in range(4):
        frame, out = _run(shell, "--epsilon 0.002 --yes --fresh", MEAN)
        assert frame["m"].between(2000, 7000).all()
        moved += sum(frame.attrs["clamped"].values())
        if frame.attrs["clamped"]:
            assert "post-processing kept values in their public range" in out
    assert moved > 0


def test_a_whole_cell_budget_is_split_over_the_noisy_values(shell, user):
    frame, out = _run(shell, "--budget 0.6 --yes", "SELECT AVG(body_mass_g) AS m FROM df")
    # AVG is a noisy SUM and a noisy COUNT: 0.3 each, 0.6 for the cell.
    assert "--budget 0.6: epsilon=0.3 for each of the query's 2 noisy values" in out
    assert frame.attrs["cost"]["epsilon"] == pytest.approx(0.6)
    assert _spent(user) == pytest.approx(0.6)


def test_budget_and_epsilon_together_are_refused(shell):
    result = shell.run_cell("%%lomas_sql --budget 1 --epsilon 1\nSELECT COUNT(*) AS n FROM df")
    assert "not both" in str(result.error_in_exec)


def test_the_display_after_a_cell_counts_the_queries_left_with_it_spent(shell, user):
    with capture_output() as captured:
        shell.run_cell_magic("lomas_sql", "--epsilon 5 --yes", "SELECT COUNT(*) AS n FROM df")
    (bundle,) = [o.data for o in captured.outputs if lomas_jupyter.MIME_TYPE in o.data]
    # 50 granted, 5 spent by this cell: 9 more like it.
    assert bundle[lomas_jupyter.MIME_TYPE]["queries_left"] == 9
    assert "9 more queries like the last one fit" in bundle["text/plain"]


def test_a_budget_is_split_even_over_many_noisy_values(shell, user):
    cell = (
        "SELECT AVG(body_mass_g) AS m, AVG(bill_length_mm) AS b, AVG(flipper_length_mm) AS f,"
        " SUM(bill_depth_mm) AS s, COUNT(*) AS n FROM df"
    )
    frame, out = _run(shell, "--budget 3 --yes", cell)  # 8 noisy values, 0.375 each
    assert "for each of the query's 8 noisy values" in out
    assert frame.attrs["cost"]["epsilon"] == pytest.approx(3.0)


def test_an_explicit_zero_delta_is_sent_not_dropped(shell, user):
    cell = "%%lomas_opendp --dataset TITANIC --epsilon 1 --delta 0\ngroup_by: [Name]\naggregates: [{op: count}]"
    result = shell.run_cell(cell)
    assert "delta" in str(result.error_in_exec) and _spent(user, "TITANIC") == 0


OPENDP_MEAN = "group_by: [species]\naggregates: [{op: mean, column: body_mass_g, as: m}]"


def test_opendp_raw_values_with_no_postprocess(shell, user):
    """Kept in range by default, as in SQL; --no-postprocess sends postprocess false and the
    raw means come back, some outside the bounds at this noise, with nothing reported moved."""
    outside = 0
    for _ in range(4):
        with capture_output():
            kept = shell.run_cell_magic(
                "lomas_opendp", "--epsilon 0.005 --yes --fresh", OPENDP_MEAN
            )
            raw = shell.run_cell_magic(
                "lomas_opendp", "--epsilon 0.005 --yes --fresh --no-postprocess", OPENDP_MEAN
            )
        assert kept["m"].dropna().between(2000, 7000).all()
        assert raw.attrs["clamped"] == {}
        outside += int((~raw["m"].dropna().between(2000, 7000)).sum())
    assert outside > 0
    history = user.api.get("/queries").json()["queries"]
    assert [q.get("postprocess") for q in history[-2:]] == [True, False]


def test_a_survival_rate_in_the_notebook(shell):
    frame, _ = _run(
        shell,
        "--dataset TITANIC --budget 1 --yes",
        "SELECT Pclass, AVG(Survived) AS rate, COUNT(Survived) AS n FROM df GROUP BY Pclass",
    )
    assert list(frame["Pclass"]) == [1, 2, 3]  # every declared class is a row
    assert frame["rate"].between(0, 1).all()
    assert list(frame.columns) == ["Pclass", "rate", "± rate", "n", "± n"]
