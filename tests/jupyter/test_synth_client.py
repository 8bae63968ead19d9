"""Synthetic data from the Python client, against the real server: rows of the declared
domain as a DataFrame that says what it cost, a price that spends nothing, replays, and
refusals as the client's own errors."""

from __future__ import annotations

import pandas as pd
import pytest

from lomas_jupyter import BudgetExceeded, Client, Estimate, InvalidQuery, InvalidRequest, Release
from lomas_jupyter._synth import domain_table
from tests.conftest import SAMPLE_DATA

SPECIES = {"Adelie", "Chinstrap", "Gentoo"}
ISLANDS = {"Torgersen", "Biscoe", "Dream"}


@pytest.fixture
def client(make_user, server):
    return Client(server.url, make_user(PENGUIN=(10.0, 1e-4)).token)


def _spent(client):
    return client.budget("PENGUIN").spent


def test_synthetic_rows_are_a_dataframe_of_the_declared_domain_that_says_what_it_cost(client):
    columns = ["species", "island", "bill_length_mm"]
    release = client.synth_response(
        "PENGUIN", "mst", columns, epsilon=2.0, delta=1e-6, rows=300, bins=5
    )
    assert isinstance(release, Release)
    rows = release.frame
    assert isinstance(rows, pd.DataFrame) and rows.shape == (300, 3)
    assert list(rows.columns) == columns
    assert set(rows["species"]) <= SPECIES and set(rows["island"]) <= ISLANDS
    lengths = rows["bill_length_mm"].dropna()
    assert len(lengths) > 0 and lengths.between(30.0, 65.0).all()
    assert release.cost == {"epsilon": 2.0, "delta": 1e-6} and release.delta == 1e-6
    attrs = rows.attrs
    assert attrs["query_id"] == release.query_id and attrs["dataset"] == "PENGUIN"
    assert attrs["cost"] == {"epsilon": 2.0, "delta": 1e-6} and attrs["replay_of"] is None
    assert attrs["notes"] == [] and attrs["half_width"] == {}
    assert release.budget.spent == {"epsilon": 2.0, "delta": 1e-6} == _spent(client)
    assert release.queries_left == 4  # 8 left, 2 each

    again = client.synth("PENGUIN", "mst", columns, epsilon=2.0, delta=1e-6, rows=300, bins=5)
    assert again.attrs["replay_of"] == release.query_id and again.attrs["cost"]["epsilon"] == 0
    pd.testing.assert_frame_equal(again, rows)
    assert _spent(client)["epsilon"] == 2.0


def test_a_marginal_survives_a_generous_epsilon_and_the_chosen_delta_is_said(client):
    rows = client.synth("PENGUIN", "mst", ["species", "island"], epsilon=5.0, rows=2000)
    real = pd.read_csv(SAMPLE_DATA / "penguin.csv")["species"].value_counts(normalize=True)
    synthetic = rows["species"].value_counts(normalize=True).reindex(real.index, fill_value=0)
    # Measured with noise of a few rows out of 344, then 2,000 rows drawn: a few points off.
    assert (synthetic - real).abs().max() < 0.08, pd.concat([real, synthetic], axis=1)
    # the delta left out is the server's choice, charged and said
    assert rows.attrs["delta"] > 0 and rows.attrs["cost"]["delta"] == rows.attrs["delta"]


def test_the_price_spends_nothing_and_describes_the_domain(client):
    estimate = client.synth_cost(
        "PENGUIN", "aim", ["species", "body_mass_g", "sex"], epsilon=1.0, delta=1e-6, bins=8
    )
    assert isinstance(estimate, Estimate)
    assert estimate.cost == {"epsilon": 1.0, "delta": 1e-6} and estimate.fits
    assert estimate.queries_left == 10 and not estimate.free
    assert estimate.query and "aim" in estimate.query
    table = domain_table(estimate)
    assert list(table.columns) == ["column", "domain", "nullable"]
    assert table.values.tolist() == [
        ["species", "3 values", False],
        ["body_mass_g", "8 bins", True],
        ["sex", "2 values", True],
    ]
    assert _spent(client) == {"epsilon": 0.0, "delta": 0.0}
    assert client.queries("PENGUIN") == []


def test_one_column_named_as_text_is_one_column_not_one_per_letter(client):
    # (a synthesizer needs two columns: the refusal names the rule, not a column 's')
    with pytest.raises(InvalidRequest, match="'columns' must be a list of 2 to 12"):
        client.synth_cost("PENGUIN", "mst", "species", epsilon=1.0)


def test_refusals_are_the_clients_errors_and_cost_nothing(client):
    with pytest.raises(InvalidQuery, match="no column 'wingspan'"):
        client.synth("PENGUIN", "mst", ["species", "wingspan"], epsilon=1.0)
    with pytest.raises(InvalidRequest, match="synthesizer"):
        client.synth("PENGUIN", "ctgan", ["species", "sex"], epsilon=1.0)
    with pytest.raises(InvalidRequest, match="bins"):
        client.synth_cost("PENGUIN", "mst", ["species", "sex"], epsilon=1.0, bins=1)
    with pytest.raises((BudgetExceeded, InvalidRequest)):
        client.synth("PENGUIN", "mst", ["species", "sex"], epsilon=11.0)
    assert _spent(client) == {"epsilon": 0.0, "delta": 0.0}
