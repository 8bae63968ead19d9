"""DP models over HTTP: a DiffPrivLib model the server builds from metadata, its cost and
budget split, replays, the requests it must refuse (the withdrawn models among them), and what
the fitted parameters are worth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lomas_server.engines.diffprivlib_models import MODELS, WITHDRAWN
from tests.conftest import SAMPLE_DATA
from tests.handlers.test_synth import (
    ROWS_PER_PERSON,
    limited_server,
    limited_user,
    people_dataset,
    pickled,
    zcdp_dataset,
)

MODEL = "/datasets/PENGUIN/diffprivlib"
COST = MODEL + "/cost"
FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]
LOGISTIC = {
    "model": "logistic_regression",
    "features": FEATURES,
    "target": "species",
    "epsilon": 1.0,
}
PCA = {"model": "pca", "features": FEATURES, "epsilon": 1.0}


@pytest.fixture
def user(make_user):
    return make_user(PENGUIN=(50.0, 1e-4), TITANIC=(10.0, 1e-4))


@pytest.fixture(scope="module")
def people(admin, tmp_path_factory):
    return people_dataset(admin, tmp_path_factory.mktemp("people"))


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    """The CSV's rows as public test data for the fitted models."""
    return pd.read_csv(SAMPLE_DATA / "penguin.csv").dropna(subset=[*FEATURES, "body_mass_g"])


def _spent(user, dataset="PENGUIN"):
    return user.api.get(f"/datasets/{dataset}/budget").json()["spent"]


def _assert_nothing_spent(user, dataset="PENGUIN"):
    assert _spent(user, dataset) == {"epsilon": 0.0, "delta": 0.0}
    assert user.api.get("/queries").json()["queries"] == []


def _fit(user, body, path=MODEL):
    reply = user.api.post(path, body)
    assert reply.status_code == 200, reply.text
    return reply.json()


# -- what is released and charged ------------------------------------------------------------------
def test_a_model_returns_its_parameters_and_charges_what_was_asked(user):
    reply = _fit(user, LOGISTIC)
    assert reply["cost"] == {"epsilon": 1.0, "delta": 0.0} == _spent(user)
    assert reply["delta_used"] == 0.0 and reply["replay_of"] is None
    result = reply["result"]
    assert result["model"] == "logistic_regression" and result["features"] == FEATURES
    assert result["target"] == "species" and result["scaler"] is None
    parameters = result["parameters"]
    assert parameters["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert np.asarray(parameters["coef"]).shape == (3, 3)
    assert np.asarray(parameters["intercept"]).shape == (3,)


def test_the_cost_is_exact_spends_nothing_and_shows_the_split(user):
    body = {**LOGISTIC, "scaler": True, "epsilon": 2.0}
    estimate = user.api.post(COST, body)
    assert estimate.status_code == 200, estimate.text
    described = estimate.json()
    assert described["cost"] == {"epsilon": 2.0, "delta": 0.0} and described["fits"] is True
    assert described["model"] == "logistic_regression" and described["rows_per_person"] == 1
    split = described["budget_split"]
    assert split["rows"] + split["scaler"] + split["model"] == pytest.approx(2.0, rel=1e-15)
    assert split["rows"] == pytest.approx(0.2) and split["scaler"] == pytest.approx(0.9)
    assert "standardized" in described["query_text"]
    _assert_nothing_spent(user)
    released = _fit(user, body)
    assert released["cost"] == described["cost"] == _spent(user)
    scaler = released["result"]["scaler"]
    assert len(scaler["mean"]) == len(scaler["scale"]) == 3 and min(scaler["scale"]) > 0


def test_many_rows_per_person_split_the_per_row_share(make_user, people):
    """With up to three rows per person, each step gets its part of epsilon / 3; the analyst
    pays the epsilon asked."""
    user = make_user(**{people: (5.0, 0.0)})
    body = {"model": "logistic_regression", "features": ["x"], "target": "kind", "epsilon": 1.5}
    estimate = user.api.post(f"/datasets/{people}/diffprivlib/cost", body).json()
    assert estimate["rows_per_person"] == ROWS_PER_PERSON
    split = estimate["budget_split"]
    assert split["rows"] + split["scaler"] + split["model"] == pytest.approx(0.5, rel=1e-12)
    reply = _fit(user, body, f"/datasets/{people}/diffprivlib")
    assert reply["cost"] == {"epsilon": 1.5, "delta": 0.0} == _spent(user, people)
    assert reply["result"]["parameters"]["classes"] == ["a", "b"]


def test_a_zcdp_dataset_is_charged_by_its_rule(admin, make_user):
    """Pure epsilon-DP enters a zCDP ledger as epsilon^2/2 (Bun & Steinke 2016)."""
    name = zcdp_dataset(admin)
    user = make_user(**{name: (5.0, 1e-4)})
    body = {**PCA, "epsilon": 0.6}
    estimate = user.api.post(f"/datasets/{name}/diffprivlib/cost", body).json()
    reply = _fit(user, body, f"/datasets/{name}/diffprivlib")
    assert reply["cost"] == estimate["cost"]
    assert reply["cost"]["rho"] == pytest.approx(0.18)
    budget = user.api.get(f"/datasets/{name}/budget").json()
    assert budget["accounting"]["spent"] == {"rho": pytest.approx(0.18), "delta": 0.0}


# -- refusals: every field, in the server's words, nothing spent ----------------------------------
REFUSED = [
    ({"features": FEATURES, "epsilon": 1.0}, "model"),
    ({"model": "pca", "epsilon": 1.0}, "features"),
    ({"model": "pca", "features": FEATURES}, "epsilon"),
    ({**PCA, "model": "random_forest"}, "'model' must be logistic_regression or pca"),
    ({**PCA, "model": "PCA"}, "'model' must be logistic_regression or pca"),
    ({**PCA, "model": 3}, "'model' must be logistic_regression or pca"),
    ({**PCA, "features": []}, "'features' must be a list of 1 to 50 different column names"),
    ({**PCA, "features": "bill_length_mm"}, "'features' must be a list"),
    ({**PCA, "features": ["bill_length_mm"] * 2}, "'features' must be a list of 1 to 50"),
    ({**PCA, "features": [f"c{i}" for i in range(51)]}, "'features' takes at most 50"),
    ({**PCA, "features": ["bill_length_mm", 1]}, "item 2 of 'features' must be a string"),
    ({**PCA, "features": ["nope"]}, "no column 'nope' in this dataset"),
    ({**PCA, "features": ["species"]}, "feature 'species' must be a number with declared"),
    ({**PCA, "features": ["sex", "bill_length_mm"]}, "feature 'sex' must be a number"),
    ({**PCA, "target": "species"}, "pca takes no 'target'"),
    ({**LOGISTIC, "target": None}, "'target' must be a string"),
    ({**LOGISTIC, "target": ""}, "'target' must not be empty"),
    ({**LOGISTIC, "target": ["species"]}, "'target' must be a string"),
    ({k: v for k, v in LOGISTIC.items() if k != "target"}, "needs a 'target' column"),
    ({**LOGISTIC, "target": "nope"}, "no column 'nope' in this dataset"),
    ({**LOGISTIC, "target": "body_mass_g"}, "target 'body_mass_g' has no declared categories"),
    ({**LOGISTIC, "target": "bill_length_mm"}, "cannot be both a feature and the target"),
    ({**PCA, "epsilon": "1"}, "'epsilon' must be a number"),
    ({**PCA, "epsilon": 0}, "'epsilon' must be from"),
    ({**PCA, "epsilon": 1e6}, "'epsilon' must be from"),
    ({**PCA, "epsilon": 20.0}, "above the per-query maximum"),
    ({**PCA, "delta": 1e-6}, "unknown field(s) 'delta'"),
    ({**PCA, "scaler": "yes"}, "'scaler' must be true or false"),
    ({**PCA, "scaler": 1}, "'scaler' must be true or false"),
    ({**PCA, "options": []}, "'options' must be a JSON object"),
    ({**PCA, "options": {"C": 1.0}}, "option 'C' does not apply to pca (it takes n_components)"),
    ({**PCA, "options": {"n_clusters": 2}}, "option 'n_clusters' does not apply to pca"),
    ({**LOGISTIC, "options": {"n_clusters": 3}}, "(it takes C, fit_intercept, max_iter)"),
    ({**LOGISTIC, "options": {"n_components": 2}}, "'n_components' does not apply"),
    ({**PCA, "options": {"n_components": 4}}, "'n_components' must be from 1 to the 3 features"),
    ({**PCA, "options": {"n_components": 0}}, "'n_components' must be a whole number"),
    ({**PCA, "options": {"n_components": 1.5}}, "'n_components' must be a whole number"),
    ({**LOGISTIC, "options": {"C": 0}}, "'C' must be above 0"),
    ({**LOGISTIC, "options": {"C": "1"}}, "'C' must be a number"),
    ({**LOGISTIC, "options": {"max_iter": 0}}, "'max_iter' must be a whole number from 1"),
    ({**LOGISTIC, "options": {"fit_intercept": "no"}}, "'fit_intercept' must be true or false"),
    ({**LOGISTIC, "options": {"solver": "lbfgs"}}, "unknown field(s) 'solver' (in options)"),
    ({**PCA, "bounds": [[0, 1]]}, "unknown field(s) 'bounds'"),
    ({**PCA, "data_norm": 5.0}, "unknown field(s) 'data_norm'"),
    ({**PCA, "accountant": {}}, "unknown field(s) 'accountant'"),
]


@pytest.mark.parametrize("path", [COST, MODEL])
@pytest.mark.parametrize(("body", "mentions"), REFUSED)
def test_every_field_is_checked_and_refused_in_our_words(user, path, body, mentions):
    reply = user.api.post(path, body)
    assert reply.status_code == 400, reply.text
    payload = reply.json()
    assert payload["error"] in ("invalid_request", "invalid_query", "query_too_expensive")
    assert mentions in payload["message"], payload["message"]
    _assert_nothing_spent(user)


@pytest.mark.parametrize("model", sorted(WITHDRAWN))
def test_a_withdrawn_model_is_refused_with_its_reason_and_nothing_spent(user, model):
    """linear_regression, gaussian_nb and k_means are known names: a request for one is told
    why it is not offered and what is, by the estimate and the fit alike."""
    assert model not in MODELS
    says = f"{model} is not offered: {WITHDRAWN[model]}; choose one of logistic_regression, pca"
    for body in ({**PCA, "model": model}, {**LOGISTIC, "model": model}):
        for path in (COST, MODEL):
            reply = user.api.post(path, body)
            assert reply.status_code == 400, reply.text
            assert reply.json()["error"] == "invalid_query"
            assert reply.json()["message"] == says
    _assert_nothing_spent(user)


def test_a_string_target_without_categories_is_refused(user):
    body = {"model": "logistic_regression", "features": ["Age"], "target": "Name", "epsilon": 1}
    for path in ("/datasets/TITANIC/diffprivlib/cost", "/datasets/TITANIC/diffprivlib"):
        reply = user.api.post(path, body)
        assert reply.status_code == 400 and reply.json()["error"] == "invalid_query"
        assert "target 'Name' has no declared categories" in reply.json()["message"]
    _assert_nothing_spent(user, "TITANIC")


def test_the_persons_id_column_is_refused(make_user, people):
    user = make_user(**{people: (5.0, 0.0)})
    for path in (f"/datasets/{people}/diffprivlib/cost", f"/datasets/{people}/diffprivlib"):
        for body in (
            {"model": "pca", "features": ["x", "pid"], "epsilon": 1.0},
            {"model": "logistic_regression", "features": ["x"], "target": "pid", "epsilon": 1},
        ):
            reply = user.api.post(path, body)
            assert reply.status_code == 400
            assert "column 'pid' identifies people" in reply.json()["message"]
    _assert_nothing_spent(user, people)


SMUGGLED = [
    {**LOGISTIC, "model": pickled()},
    {**LOGISTIC, "model": {"py/object": "sklearn.pipeline.Pipeline"}},
    {**LOGISTIC, "model": {"__reduce__": ["os.system", ["true"]]}},
    {**LOGISTIC, "features": [pickled(), "bill_length_mm"]},
    {**LOGISTIC, "features": {"py/object": "numpy.ndarray"}},
    {**LOGISTIC, "target": pickled("species")},
    {**LOGISTIC, "target": {"py/object": "pandas.Series"}},
    {**LOGISTIC, "options": pickled({"C": 1.0})},
    {**LOGISTIC, "options": {"pipeline": pickled()}},
    {**LOGISTIC, "options": {"C": pickled(1.0)}},
    {**LOGISTIC, "options": {"py/object": "diffprivlib.models.LogisticRegression"}},
    {**LOGISTIC, "pipeline": pickled()},
    {**LOGISTIC, "model_pickle": pickled()},
    {**LOGISTIC, "estimator": {"py/reduce": [{"py/function": "builtins.eval"}, ["1"]]}},
    {**LOGISTIC, "scaler": pickled(True)},
]


@pytest.mark.parametrize("body", SMUGGLED)
def test_a_pickled_or_serialized_pipeline_is_refused_with_nothing_spent(user, body):
    """The server builds the model and every bound; nothing sent is deserialized. Each of
    these is a 400 before anything is spent or archived."""
    for path in (COST, MODEL):
        reply = user.api.post(path, body)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"] in ("invalid_request", "invalid_query")
        assert len(reply.json()["message"]) < 300
    _assert_nothing_spent(user)


# -- replays and the archive -----------------------------------------------------------------------
def test_an_identical_request_replays_the_same_model_for_free_and_fresh_pays(user):
    first = _fit(user, LOGISTIC)
    # the options' defaults, spelled out, are the same request
    spelled = {**LOGISTIC, "options": {"C": 1.0, "max_iter": 100}, "scaler": False}
    again = _fit(user, spelled)
    assert again["replay_of"] == first["query_id"] == again["query_id"]
    assert again["result"] == first["result"] and again["cost"] == {"epsilon": 0.0, "delta": 0.0}
    assert user.api.post(COST, LOGISTIC).json()["replay_of"] == first["query_id"]
    fresh = _fit(user, {**LOGISTIC, "fresh": True})
    assert fresh["replay_of"] is None and fresh["result"] != first["result"]
    assert _spent(user) == {"epsilon": 2.0, "delta": 0.0}
    archive = user.api.get("/queries").json()["queries"]  # checked against api.yaml
    assert [q["query_id"] for q in archive] == [first["query_id"], fresh["query_id"]]
    for entry, reply in zip(archive, (first, fresh), strict=True):
        assert entry["engine"] == "diffprivlib" and entry["status"] == "done"
        assert entry["result"] == reply["result"] and entry["cost"] == reply["cost"]
        assert entry["diffprivlib"] == {
            "model": "logistic_regression",
            "features": FEATURES,
            "target": "species",
            "options": {"C": 1.0, "fit_intercept": True, "max_iter": 100},
            "scaler": False,
        }
        assert entry["epsilon"] == 1.0 and entry["delta"] == 0.0


@pytest.mark.parametrize(
    "change",
    [
        {"epsilon": 1.1},
        {"scaler": True},
        {"options": {"C": 0.5}},
        {"features": FEATURES[::-1]},
        {"target": "island"},
    ],
)
def test_a_different_request_is_a_new_release(user, change):
    first = _fit(user, LOGISTIC)
    other = _fit(user, {**LOGISTIC, **change})
    assert other["replay_of"] is None and other["query_id"] != first["query_id"]
    assert _spent(user)["epsilon"] > 1.0


# -- failures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    yield from limited_server(tmp_path_factory.mktemp("diffprivlib-limits"))


def test_a_fit_stopped_after_the_reservation_keeps_the_spend(limited):
    """A real fault after the reservation: the fit passes the query time limit (1 ms)."""
    server, service = limited
    api = limited_user(service, server)
    reply = api.post(MODEL, LOGISTIC)
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"] == "time_limit_exceeded"
    assert "budget stays spent" in reply.json()["message"]
    (archived,) = api.get("/queries").json()["queries"]
    assert archived["status"] == "stopped" and archived["result"] is None
    assert archived["query_id"] in reply.json()["message"]
    assert api.get("/datasets/PENGUIN/budget").json()["spent"] == {"epsilon": 1.0, "delta": 0.0}
    again = api.post(MODEL, LOGISTIC)
    assert again.status_code == 503 and again.json()["error"] in (
        "time_limit_exceeded",
        "engine_busy",
    )
    paid = 2.0 if again.json()["error"] == "time_limit_exceeded" else 1.0
    assert api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == paid


# -- what the parameters are worth, at a generous epsilon ------------------------------------------
def _standardized(rows: np.ndarray, scaler: dict | None) -> np.ndarray:
    if scaler is None:
        return rows
    return (rows - np.asarray(scaler["mean"])) / np.asarray(scaler["scale"])


def test_logistic_regression_predicts_species_well_above_chance(user, penguins):
    result = _fit(user, {**LOGISTIC, "epsilon": 10.0, "scaler": True})["result"]
    parameters = result["parameters"]
    rows = _standardized(penguins[FEATURES].to_numpy(float), result["scaler"])
    scores = rows @ np.asarray(parameters["coef"]).T + np.asarray(parameters["intercept"])
    predicted = np.asarray(parameters["classes"])[scores.argmax(axis=1)]
    accuracy = (predicted == penguins["species"].to_numpy()).mean()
    chance = penguins["species"].value_counts(normalize=True).max()  # always the commonest
    assert accuracy > 0.6 > chance + 0.15, accuracy


def test_pca_components_are_unit_vectors(user):
    body = {**PCA, "options": {"n_components": 2}, "epsilon": 5.0}
    parameters = _fit(user, body)["result"]["parameters"]
    components = np.asarray(parameters["components"])
    assert components.shape == (2, 3)
    assert np.linalg.norm(components, axis=1) == pytest.approx([1.0, 1.0], abs=1e-6)
    assert abs(components[0] @ components[1]) < 1e-6
    assert len(parameters["explained_variance"]) == 2 and len(parameters["mean"]) == 3
