"""An identical request replays its earlier release at no cost; anything different pays."""

from __future__ import annotations

import pytest

QUERY = "SELECT species, COUNT(*) AS n FROM df GROUP BY species"
COST = "/datasets/PENGUIN/smartnoise-sql/cost"


@pytest.fixture
def user(make_user):
    return make_user(PENGUIN=(5.0, 1e-4))


def _spent(user) -> float:
    return user.api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"]


def test_identical_request_replays_the_release_for_free(user):
    first = user.api.sql("PENGUIN", QUERY, 0.5).json()
    again = user.api.sql("PENGUIN", QUERY, 0.5).json()
    assert again["replay_of"] == first["query_id"] == again["query_id"]
    assert again["result"] == first["result"]  # the same noisy answer, not a new draw
    assert again["cost"] == {"epsilon": 0.0, "delta": 0.0}
    assert _spent(user) == 0.5
    assert len(user.api.get("/queries").json()["queries"]) == 1


@pytest.mark.parametrize(
    "spelling",
    [
        "select species, count(*) as n from df group by species",
        "SELECT   species,\n  COUNT(*) AS n\nFROM df\nGROUP BY species",
        "SELECT species, COUNT(*) AS n FROM PENGUIN GROUP BY species",
        "SELECT species, COUNT(*) AS n FROM penguin GROUP BY species;",
    ],
)
def test_whitespace_keyword_case_and_table_spelling_do_not_defeat_it(user, spelling):
    first = user.api.sql("PENGUIN", QUERY, 0.5).json()
    again = user.api.sql("PENGUIN", spelling, 0.5).json()
    assert again["replay_of"] == first["query_id"]
    assert _spent(user) == 0.5


@pytest.mark.parametrize(
    "change",
    [
        {"epsilon": 0.6},
        {"postprocess": False},
        {"query": "SELECT species, COUNT(*) AS m FROM df GROUP BY species"},
        {"query": "SELECT island, COUNT(*) AS n FROM df GROUP BY island"},
    ],
)
def test_a_different_request_is_a_new_release(user, change):
    first = user.api.sql("PENGUIN", QUERY, 0.5).json()
    body = {"query": QUERY, "epsilon": 0.5, "delta": 0.0, **change}
    other = user.api.post("/datasets/PENGUIN/smartnoise-sql", body).json()
    assert other["replay_of"] is None and other["query_id"] != first["query_id"]
    assert _spent(user) > 0.5


def test_a_delta_the_query_does_not_use_is_the_same_request(user):
    """Species are public keys: nothing is thresholded and a delta changes nothing, so the
    release is the same (and /cost said so before)."""
    first = user.api.sql("PENGUIN", QUERY, 0.5).json()
    body = {"query": QUERY, "epsilon": 0.5, "delta": 1e-6}
    estimate = user.api.post("/datasets/PENGUIN/smartnoise-sql/cost", body).json()
    again = user.api.post("/datasets/PENGUIN/smartnoise-sql", body).json()
    assert estimate["replay_of"] == again["replay_of"] == first["query_id"]
    assert _spent(user) == 0.5


def test_fresh_pays_for_a_new_release(user):
    first = user.api.sql("PENGUIN", QUERY, 0.5).json()
    fresh = user.api.sql("PENGUIN", QUERY, 0.5, fresh=True).json()
    assert fresh["replay_of"] is None and fresh["query_id"] != first["query_id"]
    assert _spent(user) == 1.0
    # a later plain repeat replays, and never costs again
    assert user.api.sql("PENGUIN", QUERY, 0.5).json()["cost"]["epsilon"] == 0.0
    assert _spent(user) == 1.0


def test_someone_elses_release_is_not_replayed(make_user):
    alice, bob = make_user(PENGUIN=(1.0, 0.0)), make_user(PENGUIN=(1.0, 0.0))
    alice.api.sql("PENGUIN", QUERY, 0.5)
    reply = bob.api.sql("PENGUIN", QUERY, 0.5).json()
    assert reply["replay_of"] is None and reply["cost"]["epsilon"] == 0.5


def test_a_replay_works_even_when_the_budget_is_spent(make_user):
    user = make_user(PENGUIN=(0.5, 0.0))
    first = user.api.sql("PENGUIN", QUERY, 0.5).json()
    assert user.api.sql("PENGUIN", QUERY, 0.5).json()["replay_of"] == first["query_id"]
    assert user.api.sql("PENGUIN", QUERY, 0.5, fresh=True).status_code == 403


def test_cost_estimate_names_the_release_it_would_replay(user):
    body = {"query": QUERY, "epsilon": 0.5}
    assert user.api.post(COST, body).json()["replay_of"] is None
    first = user.api.sql("PENGUIN", QUERY, 0.5).json()
    assert user.api.post(COST, body).json()["replay_of"] == first["query_id"]


def test_cost_estimate_reports_accuracy_per_column_and_noisy_value(user):
    query = "SELECT species, COUNT(*) AS n, AVG(bill_length_mm) AS l FROM df GROUP BY species"
    estimate = user.api.post(COST, {"query": query, "epsilon": 0.5}).json()
    accuracy = estimate["accuracy"]
    assert accuracy["confidence"] == 0.95
    columns = {c["column"]: c for c in accuracy["columns"]}
    assert columns["species"]["noisy_values"] == []
    # COUNT(*): Laplace with scale 1/epsilon = 2; 95% of draws within 2 * ln(20) = 5.99; the
    # count is released as the nearest whole number, within 6 of the truth that often
    assert columns["n"]["noisy_values"] == ["count_star"]
    (count,) = [v for v in accuracy["noisy_values"] if v["name"] == "count_star"]
    assert count["half_width"] == pytest.approx(2 * 2.995732, rel=1e-4)
    assert columns["n"]["half_width"] == 6.0
    # AVG is two noisy values, which is why it costs twice
    assert len(columns["l"]["noisy_values"]) == 2 and columns["l"]["half_width"] is None
    names = [v["name"] for v in accuracy["noisy_values"]]
    assert len(names) == 3 and estimate["cost"]["epsilon"] == pytest.approx(1.5)
    sums = [v for v in accuracy["noisy_values"] if v["name"].startswith("sum_")]
    # SUM of a column in [30, 65] with one row per person: sensitivity 65, scale 65 / 0.5
    assert sums[0]["scale"] == pytest.approx(130, rel=1e-4)


@pytest.mark.parametrize("postprocess", [True, False])
def test_the_estimate_knows_postprocess_like_the_release(user, postprocess):
    """The estimate takes the same fields that make two releases identical: one that calls
    a request free must be right, and one that calls it paid must be right too."""
    body = {"query": QUERY, "epsilon": 0.5, "delta": 0.0, "postprocess": postprocess}
    first = user.api.post("/datasets/PENGUIN/smartnoise-sql", body).json()
    same = user.api.post(COST, body).json()
    other = user.api.post(COST, {**body, "postprocess": not postprocess}).json()
    assert same["replay_of"] == first["query_id"]
    assert other["replay_of"] is None


# Synthetic rows and a model: replayed and refused like SQL's releases.
MODELS = {
    "synth": {
        "synthesizer": "mst",
        "columns": ["species", "sex"],
        "rows": 5,
        "epsilon": 0.5,
        "delta": 1e-6,
    },
    "diffprivlib": {"model": "pca", "features": ["bill_length_mm"], "epsilon": 0.5},
}


@pytest.mark.parametrize("kind", list(MODELS))
def test_an_identical_model_replays_for_free_and_its_estimate_says_so(user, kind):
    path, body = f"/datasets/PENGUIN/{kind}", MODELS[kind]
    assert user.api.post(path + "/cost", body).json()["replay_of"] is None
    first = user.api.post(path, body).json()
    assert user.api.post(path + "/cost", body).json()["replay_of"] == first["query_id"]
    again = user.api.post(path, body).json()
    assert again["replay_of"] == first["query_id"] and again["result"] == first["result"]
    assert again["cost"] == {"epsilon": 0.0, "delta": 0.0}
    assert _spent(user) == 0.5
    assert len(user.api.get("/queries").json()["queries"]) == 1


@pytest.mark.parametrize("kind", list(MODELS))
def test_someone_elses_model_is_not_replayed(make_user, kind):
    alice, bob = make_user(PENGUIN=(1.0, 1e-4)), make_user(PENGUIN=(1.0, 1e-4))
    path, body = f"/datasets/PENGUIN/{kind}", MODELS[kind]
    first = alice.api.post(path, body).json()
    reply = bob.api.post(path, body).json()
    assert reply["replay_of"] is None and reply["query_id"] != first["query_id"]
    assert reply["cost"]["epsilon"] == 0.5


@pytest.mark.parametrize("kind", list(MODELS))
def test_a_model_replay_works_even_when_the_budget_is_spent(make_user, kind):
    user = make_user(PENGUIN=(0.5, 1e-6))
    path, body = f"/datasets/PENGUIN/{kind}", MODELS[kind]
    first = user.api.post(path, body).json()
    assert user.api.post(path, body).json()["replay_of"] == first["query_id"]
    refused = user.api.post(path, {**body, "fresh": True})
    assert refused.status_code == 403 and refused.json()["error"] == "budget_exceeded"
