"""DP models from the Python client, against the real server: each model comes back as the
scikit-learn estimator its released numbers describe, ready for the analyst's own rows, with
its release beside it; a price spends nothing; the archive gives models back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from lomas_jupyter import Client, ClientUsageError, Estimate, InvalidQuery, ModelRelease
from lomas_jupyter._archive import history_frame
from tests.conftest import SAMPLE_DATA

FEATURES = ["bill_length_mm", "flipper_length_mm", "bill_depth_mm"]
SPECIES = ["Adelie", "Chinstrap", "Gentoo"]


@pytest.fixture
def client(make_user, server):
    return Client(server.url, make_user(PENGUIN=(100.0, 1e-4)).token)


@pytest.fixture(scope="module")
def penguins():
    """The dataset's own rows, standing in for the analyst's public test data."""
    return pd.read_csv(SAMPLE_DATA / "penguin.csv").dropna(subset=[*FEATURES, "body_mass_g"])


def _scaled(release, rows):
    """The features as the model saw them: standardized by the released scaler, if any."""
    x = rows[release.features].to_numpy(dtype=float)
    scaler = release.result["scaler"]
    return x if scaler is None else (x - scaler["mean"]) / np.asarray(scaler["scale"])


def test_logistic_regression_is_a_pipeline_that_computes_what_was_released(client, penguins):
    release = client.diffprivlib_response(
        "PENGUIN", "logistic_regression", FEATURES, "species", epsilon=2.0, scaler=True
    )
    assert isinstance(release, ModelRelease)
    model = release.model
    assert isinstance(model, Pipeline)
    scaler, fitted = model[0], model[-1]
    assert isinstance(scaler, StandardScaler) and isinstance(fitted, LogisticRegression)
    assert list(scaler.feature_names_in_) == FEATURES
    parameters = release.result["parameters"]
    assert list(fitted.classes_) == parameters["classes"]
    assert sorted(parameters["classes"]) == SPECIES
    assert fitted.coef_.shape == (3, 3)
    scores = _scaled(release, penguins) @ np.asarray(parameters["coef"]).T + parameters["intercept"]
    expected = np.asarray(parameters["classes"])[scores.argmax(axis=1)]
    assert (model.predict(penguins[FEATURES]) == expected).all()
    probabilities = model.predict_proba(penguins[FEATURES])
    assert probabilities.shape == (len(penguins), 3) and np.allclose(probabilities.sum(axis=1), 1)


def test_dp_logistic_regression_typically_predicts_species_well_above_chance(client, penguins):
    majority = penguins["species"].value_counts(normalize=True).max()  # 0.44
    accuracies = []
    for _ in range(3):
        model = client.diffprivlib(
            "PENGUIN",
            "logistic_regression",
            FEATURES,
            "species",
            epsilon=10.0,
            scaler=True,
            fresh=True,
        )
        accuracies.append((model.predict(penguins[FEATURES]) == penguins["species"]).mean())
    # One fit in a few hundred draws a scaler so noisy that it falls near chance (the least
    # of 400 fits here: 0.59; the median 0.90); the median of three is far from that.
    assert np.median(accuracies) > majority + 0.2, accuracies


def test_each_offered_model_is_its_scikit_learn_estimator_working_on_dummy_rows(client):
    dummy = client.dummy("PENGUIN", rows=50, seed=3).dropna(subset=FEATURES)
    rows = dummy[FEATURES].astype(float)

    binary = client.diffprivlib_response(
        "PENGUIN", "logistic_regression", FEATURES, "sex", epsilon=1.0
    )
    assert isinstance(binary.model, LogisticRegression)
    assert list(binary.model.feature_names_in_) == FEATURES
    parameters = binary.result["parameters"]
    assert binary.model.coef_.shape == (1, 3)  # two classes: one row, for the second
    scores = rows.to_numpy() @ np.asarray(parameters["coef"]).T + parameters["intercept"]
    assert np.allclose(binary.model.decision_function(rows), scores.ravel())
    expected = np.asarray(parameters["classes"])[(scores.ravel() > 0).astype(int)]
    assert (binary.model.predict(rows) == expected).all()
    assert set(expected) <= {"MALE", "FEMALE"}
    assert np.allclose(binary.model.predict_proba(rows).sum(axis=1), 1)

    pca = client.diffprivlib_response(
        "PENGUIN", "pca", FEATURES, epsilon=1.0, scaler=True, options={"n_components": 2}
    )
    assert isinstance(pca.model[-1], PCA)
    parameters = pca.result["parameters"]
    projected = (_scaled(pca, dummy) - parameters["mean"]) @ np.asarray(parameters["components"]).T
    assert np.allclose(pca.model.transform(rows), projected) and projected.shape == (len(rows), 2)

    plain = client.diffprivlib_response(
        "PENGUIN", "pca", FEATURES, epsilon=1.0, options={"n_components": 1}
    )
    assert isinstance(plain.model, PCA)
    assert list(plain.model.feature_names_in_) == FEATURES
    parameters = plain.result["parameters"]
    projected = (rows.to_numpy() - parameters["mean"]) @ np.asarray(parameters["components"]).T
    assert np.allclose(plain.model.transform(rows), projected) and projected.shape == (len(rows), 1)
    assert plain.summary() == (
        "pca on bill_length_mm, flipper_length_mm, bill_depth_mm: 1 components"
    )

    assert client.budget("PENGUIN").spent["epsilon"] == pytest.approx(3.0)


def test_a_model_carries_its_release_and_its_clone_does_not(client):
    model = client.diffprivlib(
        "PENGUIN", "logistic_regression", ["bill_length_mm", "body_mass_g"], "species", epsilon=1.5
    )
    release = model.lomas_release_
    assert isinstance(release, ModelRelease) and release.model is model
    assert release.cost == {"epsilon": 1.5, "delta": 0.0} and release.epsilon == 1.5
    assert release.dataset == "PENGUIN" and not release.is_replay
    assert release.queries_left == 65  # 98.5 left, 1.5 each
    assert release.target == "species" and release.features == ["bill_length_mm", "body_mass_g"]
    assert release.summary() == (
        "logistic_regression of species on bill_length_mm, body_mass_g: "
        "classes Adelie, Chinstrap, Gentoo"
    )
    (archived,) = client.queries("PENGUIN")
    assert archived.query_id == release.query_id
    assert not hasattr(clone(model), "lomas_release_")

    again = client.diffprivlib(
        "PENGUIN", "logistic_regression", ["bill_length_mm", "body_mass_g"], "species", epsilon=1.5
    )
    assert again.lomas_release_.replay_of == release.query_id
    assert again.lomas_release_.cost["epsilon"] == 0 and again.lomas_release_.queries_left is None
    assert np.array_equal(again.coef_, model.coef_)
    assert client.budget("PENGUIN").spent["epsilon"] == 1.5


def test_the_price_spends_nothing_and_says_how_the_budget_is_split(client):
    estimate = client.diffprivlib_cost(
        "PENGUIN", "logistic_regression", FEATURES, "species", epsilon=2.0, scaler=True
    )
    assert isinstance(estimate, Estimate)
    assert estimate.cost == {"epsilon": 2.0, "delta": 0.0} and estimate.fits
    assert estimate.queries_left == 50 and estimate.query.startswith("logistic_regression")
    split = estimate.raw["budget_split"]
    assert split["rows"] + split["scaler"] + split["model"] == pytest.approx(2.0)
    assert client.budget("PENGUIN").spent["epsilon"] == 0.0 and client.queries() == []


def test_the_archive_gives_a_model_back_without_paying_again(client, penguins):
    model = client.diffprivlib(
        "PENGUIN", "logistic_regression", FEATURES, "species", epsilon=1.0, scaler=True
    )
    client.synth("PENGUIN", "mst", ["species", "island"], epsilon=1.0, delta=1e-6, rows=20)
    fitted, synthetic = client.queries("PENGUIN")
    assert fitted.engine == "diffprivlib" and fitted.result is None
    assert fitted.model == model.lomas_release_.result
    rebuilt = fitted.estimator()
    assert (rebuilt.predict(penguins[FEATURES]) == model.predict(penguins[FEATURES])).all()
    assert client.budget("PENGUIN").spent["epsilon"] == 2.0  # the fit and the rows only
    assert synthetic.model is None and synthetic.result.shape == (20, 2)
    with pytest.raises(ClientUsageError, match="released no model"):
        synthetic.estimator()
    history = history_frame([fitted, synthetic])
    assert list(history["engine"]) == ["DiffPrivLib", "Synth"]
    assert history["query"][0] == (
        "logistic_regression of species on bill_length_mm, flipper_length_mm, bill_depth_mm, "
        "standardized"
    )
    assert list(history["replay"]) == ["free to rerun", "free to rerun"]


def test_refusals_name_what_to_change_and_cost_nothing(client):
    with pytest.raises(InvalidQuery, match="option 'C' does not apply to pca"):
        client.diffprivlib("PENGUIN", "pca", FEATURES, epsilon=1.0, options={"C": 1.0})
    with pytest.raises(InvalidQuery, match="pca takes no 'target'"):
        client.diffprivlib("PENGUIN", "pca", FEATURES, "species", epsilon=1.0)
    with pytest.raises(InvalidQuery, match="needs a 'target'"):
        client.diffprivlib_cost("PENGUIN", "logistic_regression", FEATURES, epsilon=1.0)
    with pytest.raises(InvalidQuery, match="'species' must be a number"):
        client.diffprivlib("PENGUIN", "pca", ["species"], epsilon=1.0)
    assert client.budget("PENGUIN").spent["epsilon"] == 0.0


def test_a_withdrawn_model_is_refused_in_one_line_naming_the_offered_ones(client):
    with pytest.raises(InvalidQuery) as refused:
        client.diffprivlib("PENGUIN", "gaussian_nb", FEATURES, "species", epsilon=1.0)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("gaussian_nb is not offered: ")
    assert "; choose one of logistic_regression, pca" in message
    with pytest.raises(InvalidQuery, match="gaussian_nb is not offered"):
        client.diffprivlib_cost("PENGUIN", "gaussian_nb", FEATURES, "species", epsilon=1.0)
    assert client.budget("PENGUIN").spent["epsilon"] == 0.0 and client.queries() == []
