"""What a release says it is worth: values kept in their public range (and how many were
moved), a mean's half-width per group size, the threshold behind hidden groups."""

from __future__ import annotations

import pytest

from lomas_server.limits import DEFAULT_DELTA
from tests.conftest import sample_metadata

SQL = "/datasets/PENGUIN/smartnoise-sql"
OPENDP = "/datasets/PENGUIN/opendp"
BOUNDS = sample_metadata("penguin")["columns"]["body_mass_g"]
GROUPED = "SELECT species, AVG(body_mass_g) AS m, COUNT(*) AS n FROM df GROUP BY species"


@pytest.fixture
def user(make_user):
    return make_user(PENGUIN=(100.0, 1e-3), TITANIC=(10.0, 1e-3))


def _at_a_bound(values, lower, upper) -> int:
    return sum(1 for v in values if v is not None and (v == lower or v == upper))


def test_sql_means_and_counts_stay_in_range_and_moves_are_counted(user):
    # Noise this large moves most means out of their bounds: post-processing brings them back.
    seen = 0
    for _ in range(4):
        body = {"query": GROUPED, "epsilon": 0.002, "fresh": True}
        reply = user.api.post(SQL, body).json()
        means = [row[1] for row in reply["result"]["data"]]
        counts = [row[2] for row in reply["result"]["data"]]
        assert all(BOUNDS["lower"] <= m <= BOUNDS["upper"] for m in means)
        assert all(c >= 0 for c in counts)
        clamped = reply["result"]["clamped"]
        assert clamped.get("m", 0) == _at_a_bound(means, BOUNDS["lower"], BOUNDS["upper"])
        assert clamped.get("n", 0) == sum(1 for c in counts if c == 0)
        seen += clamped.get("m", 0)
    assert seen > 0


def test_without_postprocess_the_raw_values_come_back(user):
    body = {"query": GROUPED, "epsilon": 0.002, "postprocess": False, "fresh": True}
    reply = user.api.post(SQL, body).json()
    assert "clamped" not in reply["result"]


def test_opendp_raw_values_are_a_release_of_their_own(user):
    query = {"aggregates": [{"op": "mean", "column": "body_mass_g", "as": "m"}]}
    kept = user.api.post(OPENDP, {"query": query, "epsilon": 0.5})
    assert kept.status_code == 200 and "clamped" in kept.json()["result"]
    raw = user.api.post(OPENDP, {"query": query, "epsilon": 0.5, "postprocess": False})
    assert raw.status_code == 200 and "clamped" not in raw.json()["result"]
    assert raw.json()["replay_of"] is None  # not the kept release: a new one, paid
    again = user.api.post(OPENDP, {"query": query, "epsilon": 0.5, "postprocess": False})
    assert again.json()["replay_of"] == raw.json()["query_id"]
    estimate = user.api.post(OPENDP + "/cost", {"query": query, "epsilon": 0.5, "postprocess": 1})
    assert estimate.status_code == 400 and "postprocess" in estimate.json()["message"]


def test_opendp_statistics_stay_in_range_too(user):
    query = {
        "group_by": ["species"],
        "aggregates": [{"op": "mean", "column": "body_mass_g", "as": "m"}, {"op": "count"}],
    }
    moved = 0
    for _ in range(3):
        reply = user.api.post(OPENDP, {"query": query, "epsilon": 0.01, "fresh": True}).json()
        means = [row[1] for row in reply["result"]["data"]]
        assert all(m is None or BOUNDS["lower"] <= m <= BOUNDS["upper"] for m in means)
        assert all(row[2] >= 0 for row in reply["result"]["data"])
        assert reply["result"]["clamped"].get("m", 0) == _at_a_bound(
            means, BOUNDS["lower"], BOUNDS["upper"]
        )
        moved += reply["result"]["clamped"].get("m", 0)
    assert moved > 0


def test_estimates_give_a_mean_its_half_width_per_group_size(user):
    for path, body in (
        (SQL + "/cost", {"query": GROUPED, "epsilon": 1.0}),
        (
            OPENDP + "/cost",
            {
                "query": {"aggregates": [{"op": "mean", "column": "body_mass_g", "as": "m"}]},
                "epsilon": 1.0,
            },
        ),
    ):
        accuracy = user.api.post(path, body).json()["accuracy"]
        (mean,) = [c for c in accuracy["columns"] if c["column"] == "m"]
        assert mean["kind"] == "mean" and mean["half_width_times_count"] > 0
        assert (mean["lower"], mean["upper"]) == (BOUNDS["lower"], BOUNDS["upper"])
        assert accuracy["threshold"] is None  # no hidden groups here


def test_hidden_groups_come_with_their_threshold(user):
    body = {"query": "SELECT Name, COUNT(*) AS n FROM df GROUP BY Name", "epsilon": 1.0}
    sql = user.api.post("/datasets/TITANIC/smartnoise-sql/cost", {**body, "delta": 1e-5})
    assert sql.status_code == 200, sql.text
    assert sql.json()["accuracy"]["threshold"] > 1
    query = {"group_by": ["Name"], "aggregates": [{"op": "count"}]}
    opendp = user.api.post(
        "/datasets/TITANIC/opendp/cost", {"query": query, "epsilon": 1.0, "delta": 1e-5}
    )
    assert opendp.status_code == 200, opendp.text
    assert opendp.json()["accuracy"]["threshold"] > 1


def test_a_query_that_needs_delta_gets_one_when_none_is_given(user):
    """Names are not public keys: their groups are shown above a threshold, which needs
    delta. Without one, the server picks a small delta within the dataset's limits."""
    body = {"query": "SELECT Name, COUNT(*) AS n FROM df GROUP BY Name", "epsilon": 1.0}
    estimate = user.api.post("/datasets/TITANIC/smartnoise-sql/cost", body).json()
    chosen = estimate["cost"]["delta"]
    assert chosen == estimate["delta_used"] == DEFAULT_DELTA
    released = user.api.post("/datasets/TITANIC/smartnoise-sql", body)
    assert released.status_code == 200 and released.json()["cost"]["delta"] == chosen
    explicit = user.api.post("/datasets/TITANIC/smartnoise-sql/cost", {**body, "delta": 0})
    assert explicit.status_code == 400 and "delta" in explicit.json()["message"]
    query = {"group_by": ["Name"], "aggregates": [{"op": "count"}]}
    opendp = user.api.post("/datasets/TITANIC/opendp/cost", {"query": query, "epsilon": 1.0})
    assert opendp.status_code == 200 and opendp.json()["delta_used"] == DEFAULT_DELTA
    histogram = {"aggregates": [{"op": "histogram", "column": "Name"}]}
    reply = user.api.post("/datasets/TITANIC/opendp/cost", {"query": histogram, "epsilon": 1.0})
    assert reply.status_code == 200 and reply.json()["delta_used"] == DEFAULT_DELTA


def test_a_query_that_needs_no_delta_is_charged_none(user):
    body = {"query": GROUPED, "epsilon": 1.0}
    assert user.api.post(SQL + "/cost", body).json()["cost"]["delta"] == 0.0


def test_a_release_says_how_many_more_like_it_fit_counting_itself(make_user):
    user = make_user(PENGUIN=(2.0, 0.0))
    body = {"query": "SELECT COUNT(*) AS n FROM df", "epsilon": 0.5}
    assert user.api.post(SQL, body).json()["queries_left"] == 3  # 1.5 left after it
    assert user.api.post(SQL, body).json()["queries_left"] is None  # a free replay
    again = user.api.post(SQL, {**body, "fresh": True}).json()
    assert again["queries_left"] == 2
    budget = user.api.get("/datasets/PENGUIN/budget").json()
    assert budget["last_query"]["queries_left"] == 2


def test_a_survival_rate_is_one_query_on_either_engine(make_user):
    """A boolean adds up as true 1, false 0: its AVG (or OpenDP mean) is a share, kept
    between 0 and 1, with a mean's half-width; and it is close to the true rate when the
    noise is small (74% of the women and 19% of the men in the sample survived)."""
    user = make_user(TITANIC=(200.0, 1e-3))
    sql = "SELECT Sex, AVG(Survived) AS rate, SUM(Survived) AS survivors FROM df GROUP BY Sex"
    opendp = {
        "group_by": ["Sex"],
        "aggregates": [
            {"op": "mean", "column": "Survived", "as": "rate"},
            {"op": "sum", "column": "Survived", "as": "survivors"},
        ],
    }
    for path, body in (
        ("/datasets/TITANIC/smartnoise-sql", {"query": sql}),
        ("/datasets/TITANIC/opendp", {"query": opendp}),
    ):
        estimate = user.api.post(path + "/cost", {**body, "epsilon": 1.0}).json()
        rate = next(c for c in estimate["accuracy"]["columns"] if c["column"] == "rate")
        assert (rate["kind"], rate["lower"], rate["upper"]) == ("mean", 0, 1)
        assert rate["half_width_times_count"] > 0
        for _ in range(3):  # noise this large moves rates past 0 or 1: they are kept inside
            reply = user.api.post(path, {**body, "epsilon": 0.02, "fresh": True})
            assert reply.status_code == 200, reply.text
            # (OpenDP has no mean where the noisy count is not above 0: None)
            rates = [row[1] for row in reply.json()["result"]["data"]]
            assert all(rate is None or 0 <= rate <= 1 for rate in rates)
        precise_reply = user.api.post(path, {**body, "epsilon": 5.0})
        assert precise_reply.status_code == 200, precise_reply.text
        precise = precise_reply.json()["result"]
        rates = {row[0]: row[1] for row in precise["data"]}
        assert abs(rates["female"] - 0.742) < 0.1 and abs(rates["male"] - 0.190) < 0.1
        survivors = {row[0]: row[2] for row in precise["data"]}
        assert abs(survivors["female"] - 233) < 30 and abs(survivors["male"] - 109) < 30


def test_a_boolean_has_no_median(user):
    query = {"aggregates": [{"op": "median", "column": "Survived"}]}
    reply = user.api.post("/datasets/TITANIC/opendp/cost", {"query": query, "epsilon": 1.0})
    assert reply.status_code == 400
    assert reply.json()["message"] == "'median' needs a numeric column; 'Survived' is boolean"
