"""%%lomas_diffprivlib in a real IPython shell, against the real server: the price and its
split, a fitted estimator stored or returned with the budget shown, a dummy fit in the
kernel that spends nothing, and every mistake as one line."""

from __future__ import annotations

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

import lomas_jupyter
from lomas_jupyter import MIME_TYPE, InvalidQuery

CELL = """
model: logistic_regression
features: [bill_length_mm, flipper_length_mm]
target: species
epsilon: 1.0
scaler: true
options: {C: 0.5}
"""
FEATURES = ["bill_length_mm", "flipper_length_mm"]


@pytest.fixture
def shell():
    ip = InteractiveShell.instance()
    ip.config.pop("LomasMagic", None)  # %config of an earlier test
    lomas_jupyter.load_ipython_extension(ip)
    ip.user_ns.pop("clf", None)
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


def _queries(user):
    return user.api.get("/queries").json()["queries"]


def _error(shell, cell):
    result = shell.run_cell(cell)
    error = result.error_in_exec
    return None if error is None else (type(error).__name__, str(error))


def test_estimate_shows_how_the_budget_is_split_and_spends_nothing(connected, user):
    with capture_output() as captured:
        table = connected.run_cell_magic("lomas_diffprivlib", "--estimate", CELL)
    assert list(table.columns) == ["step", "epsilon per row"]
    assert list(table["step"]) == [
        "the number of rows (noisy)",
        "the standard scaler",
        "the model's fit",
    ]
    assert table["epsilon per row"].sum() == pytest.approx(1.0)
    data = captured.outputs[0].data[MIME_TYPE]
    assert data["kind"] == "estimate" and data["cost"] == {"epsilon": 1.0, "delta": 0.0}
    assert _spent(user) == 0.0 and _queries(user) == []


def test_the_fitted_model_is_stored_with_the_budget_shown(connected, user, capsys):
    with capture_output() as captured:
        assert connected.run_cell_magic("lomas_diffprivlib", "PENGUIN clf <<", CELL) is None
    model = connected.user_ns["clf"]
    assert isinstance(model, Pipeline) and isinstance(model[-1], LogisticRegression)
    rows = connected.run_line_magic("lomas_dummy", "--rows 20 --seed 1").dropna(subset=FEATURES)
    assert set(model.predict(rows[FEATURES])) <= {"Adelie", "Chinstrap", "Gentoo"}
    (bundle,) = [output.data for output in captured.outputs]
    data = bundle[MIME_TYPE]
    assert data["kind"] == "query" and data["query_id"] == model.lomas_release_.query_id
    assert data["cost"] == {"epsilon": 1.0, "delta": 0.0} and _spent(user) == 1.0
    assert captured.stdout.strip() == (
        "logistic_regression of species on bill_length_mm, flipper_length_mm, standardized: "
        "classes Adelie, Chinstrap, Gentoo"
    )
    (archived,) = _queries(user)
    assert archived["diffprivlib"]["options"]["C"] == 0.5

    with capture_output() as captured:
        again = connected.run_cell_magic("lomas_diffprivlib", "", CELL)
    assert captured.outputs[0].data[MIME_TYPE]["kind"] == "replay"
    assert np.array_equal(again[-1].coef_, model[-1].coef_) and _spent(user) == 1.0
    connected.run_cell_magic("lomas_diffprivlib", "--fresh", CELL)
    assert _spent(user) == 2.0


def test_dummy_fits_in_the_kernel_as_the_server_would_and_spends_nothing(connected, user):
    with capture_output() as captured:
        model = connected.run_cell_magic("lomas_diffprivlib", "--dummy", CELL)
    assert isinstance(model, Pipeline) and isinstance(model[-1], LogisticRegression)
    assert list(model[-1].classes_) == ["Adelie", "Chinstrap", "Gentoo"]
    assert not hasattr(model, "lomas_release_")  # nothing was released
    assert "Fitted here on 1000 dummy rows: nothing spent" in captured.stdout
    assert "this model would cost epsilon=1, delta=0" in captured.stdout
    assert _spent(user) == 0.0 and _queries(user) == []

    components = connected.run_cell_magic(
        "lomas_diffprivlib",
        "--dummy",
        "model: pca\nfeatures: [bill_length_mm, body_mass_g]\noptions: {n_components: 2}",
    )
    assert isinstance(components, PCA) and components.components_.shape == (2, 2)

    # the kernel refuses what the server refuses, in its words, without asking it
    connected.run_line_magic("config", "LomasMagic.short_errors = False")
    result = connected.run_cell(
        "%%lomas_diffprivlib --dummy\n" + CELL.replace("C: 0.5", "n_clusters: 2")
    )
    error = result.error_in_exec
    assert type(error) is InvalidQuery and error.status is None
    assert str(error).startswith("option 'n_clusters' does not apply to logistic_regression")


def test_a_costly_fit_without_a_prompt_needs_yes(connected, user, monkeypatch):
    def no_stdin(prompt):
        raise EOFError

    monkeypatch.setattr("builtins.input", no_stdin)
    costly = CELL.replace("epsilon: 1.0", "epsilon: 2.0")
    kind, message = _error(connected, "%%lomas_diffprivlib\n" + costly)
    assert kind == "UsageError" and "add --yes" in message and _spent(user) == 0.0
    model = connected.run_cell_magic("lomas_diffprivlib", "--yes", costly)
    assert model.lomas_release_.cost["epsilon"] == 2.0 == _spent(user)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("model: pca\nfeatures: {bill_length_mm", "the cell is not valid YAML or JSON"),
        ("model: pca\nfeatures: [bill_length_mm]\nbounds: [0, 1]", "has no field 'bounds'"),
        ("features: [bill_length_mm]", "needs at least 'model' and 'features'"),
        ("model: pca\nfeatures: [bill_length_mm]\noptions: 3", "'options' holds the model's"),
        (
            "model: pca\nfeatures: [bill_length_mm]\ntarget: species",
            "pca takes no 'target' [invalid_query]",
        ),
        ("model: svm\nfeatures: [bill_length_mm]", "'model' must be logistic_regression or pca"),
    ],
)
def test_mistakes_are_one_line_and_cost_nothing(connected, user, cell, message):
    kind, shown = _error(connected, "%%lomas_diffprivlib\n" + cell)
    assert kind == "UsageError" and message in shown and "\n" not in shown
    assert _spent(user) == 0.0


@pytest.mark.parametrize("dummy", ["", "--dummy"])
def test_a_withdrawn_model_is_refused_in_one_line_naming_the_offered_ones(connected, user, dummy):
    cell = "model: gaussian_nb\nfeatures: [bill_length_mm]\ntarget: species"
    kind, shown = _error(connected, f"%%lomas_diffprivlib {dummy}\n{cell}")
    assert kind == "UsageError" and "\n" not in shown
    assert "gaussian_nb is not offered: " in shown
    assert "choose one of logistic_regression, pca" in shown
    assert _spent(user) == 0.0 and _queries(user) == []


def test_history_shows_a_model_fit(connected, user):
    connected.run_cell_magic("lomas_diffprivlib", "", CELL)
    history = connected.run_line_magic("lomas_history", "")
    assert list(history["engine"]) == ["DiffPrivLib"]
    assert list(history["parameters"]) == ["epsilon=1"]
    assert list(history["replay"]) == ["free to rerun"]
