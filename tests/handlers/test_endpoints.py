"""Every endpoint of the REST API, over HTTP against the real server."""

from __future__ import annotations

import math
import uuid

import pytest

import lomas_server

COUNT_BY_SPECIES = "SELECT species, COUNT(*) AS n FROM df GROUP BY species"
# Synthetic rows and a model, each without its epsilon: the operations besides SQL's that
# charge a budget (OpenDP's are in test_opendp.py).
MODELS = {
    "synth": {"synthesizer": "mst", "columns": ["species", "sex"], "rows": 5, "delta": 1e-6},
    "diffprivlib": {"model": "pca", "features": ["bill_length_mm", "body_mass_g"]},
}


def test_health_needs_no_token_and_reports_version(anonymous):
    reply = anonymous.get("/health")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok", "version": lomas_server.__version__}


def test_datasets_lists_only_granted_datasets_with_budget(make_user):
    user = make_user(PENGUIN=(2.0, 1e-5))
    reply = user.api.get("/datasets")
    assert reply.status_code == 200
    datasets = reply.json()["datasets"]
    assert [d["name"] for d in datasets] == ["PENGUIN"]
    budget = datasets[0]["budget"]
    assert budget["initial"] == {"epsilon": 2.0, "delta": 1e-5}
    assert budget["spent"] == {"epsilon": 0.0, "delta": 0.0}
    assert budget["remaining"] == {"epsilon": 2.0, "delta": 1e-5}
    engines = datasets[0]["engines"]
    assert engines == ["smartnoise_sql", "opendp", "smartnoise_synth", "diffprivlib"]


def test_metadata_returns_the_admins_public_description(make_user):
    user = make_user(PENGUIN=(1.0, 0.0))
    reply = user.api.get("/datasets/PENGUIN/metadata")
    assert reply.status_code == 200
    metadata = reply.json()
    assert metadata["max_ids"] == 1
    assert metadata["columns"]["bill_length_mm"] == {
        "type": "float",
        "precision": 64,
        "lower": 30.0,
        "upper": 65.0,
    }
    assert metadata["columns"]["species"]["categories"] == ["Adelie", "Chinstrap", "Gentoo"]


def test_dummy_matches_schema_bounds_categories_and_spends_nothing(make_user):
    user = make_user(PENGUIN=(1.0, 0.0))
    reply = user.api.post("/datasets/PENGUIN/dummy", {"rows": 500, "seed": 7})
    assert reply.status_code == 200
    dummy = reply.json()
    assert dummy["columns"] == [
        "species",
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
    ]
    assert dummy["seed"] == 7 and len(dummy["data"]) == 500
    rows = [dict(zip(dummy["columns"], row, strict=True)) for row in dummy["data"]]
    assert {r["species"] for r in rows} == {"Adelie", "Chinstrap", "Gentoo"}  # not nullable
    assert all(r["sex"] in ("MALE", "FEMALE", None) for r in rows)
    assert any(r["sex"] is None for r in rows)  # nullable columns get some NULLs
    lengths = [r["bill_length_mm"] for r in rows if r["bill_length_mm"] is not None]
    assert min(lengths) >= 30.0 and max(lengths) <= 65.0
    again = user.api.post("/datasets/PENGUIN/dummy", {"rows": 500, "seed": 7}).json()
    assert again["data"] == dummy["data"]  # same seed, same rows
    assert user.api.get("/datasets/PENGUIN/budget").json()["spent"] == {
        "epsilon": 0.0,
        "delta": 0.0,
    }


def test_cost_is_exact_and_spends_nothing(make_user):
    user = make_user(PENGUIN=(5.0, 1e-4))
    query = "SELECT species, COUNT(*) AS n, AVG(bill_length_mm) AS l FROM df GROUP BY species"
    reply = user.api.post(
        "/datasets/PENGUIN/smartnoise-sql/cost", {"query": query, "epsilon": 0.5, "delta": 1e-5}
    )
    assert reply.status_code == 200
    cost = reply.json()
    # COUNT(*), and AVG as a noisy SUM and a noisy COUNT: three mechanisms at epsilon 0.5.
    assert cost["cost"]["epsilon"] == pytest.approx(1.5)
    assert cost["fits"] is True
    assert user.api.get("/datasets/PENGUIN/budget").json()["spent"] == {
        "epsilon": 0.0,
        "delta": 0.0,
    }
    # and running it charges exactly that cost
    run = user.api.sql("PENGUIN", query, 0.5, 1e-5)
    assert run.status_code == 200
    assert run.json()["cost"] == cost["cost"]
    assert user.api.get("/datasets/PENGUIN/budget").json()["spent"] == cost["cost"]


def test_query_returns_noisy_result_cost_budget_and_id(make_user):
    user = make_user(PENGUIN=(5.0, 1e-4))
    reply = user.api.sql("PENGUIN", COUNT_BY_SPECIES, 1.0)
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {
        "query_id",
        "replay_of",
        "result",
        "cost",
        "delta_used",
        "budget",
        "queries_left",
        "accuracy",
    }
    counted = {c["column"]: c for c in body["accuracy"]["columns"]}["n"]
    assert counted["half_width"] > 0 and body["accuracy"]["confidence"] == 0.95
    assert body["replay_of"] is None
    assert body["result"]["columns"] == ["species", "n"]
    counts = dict(body["result"]["data"])
    assert set(counts) == {"Adelie", "Chinstrap", "Gentoo"}
    # True counts are 152, 68, 124; Laplace noise at epsilon 1 stays within +-30 w.p. 1 - 1e-13.
    for species, true in (("Adelie", 152), ("Chinstrap", 68), ("Gentoo", 124)):
        assert abs(counts[species] - true) < 30
    assert body["cost"] == {"epsilon": 1.0, "delta": 0.0}
    assert body["budget"]["remaining"] == {"epsilon": 4.0, "delta": 1e-4}


def test_unnamed_aggregates_are_named_after_their_expression(make_user):
    user = make_user(PENGUIN=(5.0, 0.0))
    reply = user.api.sql("PENGUIN", "SELECT COUNT(*), AVG(body_mass_g) FROM df", 1.0)
    assert reply.status_code == 200
    assert reply.json()["result"]["columns"] == ["COUNT(*)", "AVG(body_mass_g)"]


def test_query_without_postprocess_returns_raw_noisy_aggregates(make_user):
    user = make_user(PENGUIN=(5.0, 0.0))
    reply = user.api.sql("PENGUIN", "SELECT AVG(body_mass_g) AS m FROM df", 1.0, postprocess=False)
    assert reply.status_code == 200
    result = reply.json()["result"]
    # AVG is released as its noisy SUM and COUNT, which is what postprocess=false shows.
    assert len(result["columns"]) == 2 and len(result["data"]) == 1


def test_censored_rare_groups_give_a_charged_empty_result_not_an_error(make_user):
    user = make_user(TITANIC=(5.0, 1e-3))
    # Names are not public keys, so their groups are censored below a noisy threshold; no
    # name is shared by enough passengers to pass it. Each group of one passes with
    # probability about delta: 1e-9 over about 900 names (1e-5 failed about one run in 100).
    query = "SELECT Name, COUNT(*) AS n FROM df GROUP BY Name"
    reply = user.api.sql("TITANIC", query, 1.0, 1e-9)
    assert reply.status_code == 200
    body = reply.json()
    assert body["result"] == {"columns": ["Name", "n"], "data": [], "clamped": {}}
    assert body["cost"]["epsilon"] == 1.0 and body["cost"]["delta"] > 0


def test_grouping_by_values_that_are_not_public_needs_a_threshold(make_user):
    """A column without public keys never has its values released as groups for free: the
    query is refused before anything is spent, or pays delta for a threshold that no single
    row's value passes (here: every measurement, grouped by every column)."""
    user = make_user(PENGUIN=(5.0, 1e-3))
    query = "SELECT bill_length_mm, COUNT(*) AS n FROM df GROUP BY bill_length_mm"
    refused = user.api.sql("PENGUIN", query, 1.0)
    assert refused.status_code == 400, refused.text
    assert "'bill_length_mm'" in refused.json()["message"] and "delta" in refused.json()["message"]
    assert user.api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.0
    columns = "species, island, bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g, sex"
    everything = f"SELECT {columns}, COUNT(*) AS n FROM df GROUP BY {columns}"
    reply = user.api.sql("PENGUIN", everything, 0.5, 1e-5)
    assert reply.status_code == 200, reply.text
    assert reply.json()["result"]["data"] == []


def test_public_keys_show_every_declared_group_even_an_empty_one(make_user):
    user = make_user(TITANIC=(5.0, 0.0))
    # Sex is a public key of Titanic: both groups are released, each with noise, although
    # no passenger has this name; no delta is needed.
    query = "SELECT Sex, COUNT(*) AS n FROM df WHERE Name = 'Nobody at all' GROUP BY Sex"
    reply = user.api.sql("TITANIC", query, 1.0)
    assert reply.status_code == 200, reply.text
    assert [row[0] for row in reply.json()["result"]["data"]] == ["male", "female"]
    assert reply.json()["cost"] == {"epsilon": 1.0, "delta": 0.0}


def test_budget_endpoint_tracks_spending(make_user):
    user = make_user(PENGUIN=(1.0, 1e-5))
    for _ in range(3):
        reply = user.api.sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", 0.1, fresh=True)
        assert reply.status_code == 200
    budget = user.api.get("/datasets/PENGUIN/budget").json()
    assert budget["dataset"] == "PENGUIN"
    assert budget["spent"] == {"epsilon": 0.3, "delta": 0.0}
    assert budget["remaining"]["epsilon"] == 0.7  # exact, not 0.7000000000000001


def test_queries_archive_lists_own_queries_with_status(make_user):
    user = make_user(PENGUIN=(5.0, 1e-5), TITANIC=(5.0, 1e-3))
    user.api.sql("PENGUIN", COUNT_BY_SPECIES, 0.5)
    user.api.sql("TITANIC", "SELECT COUNT(*) AS n FROM df", 0.5, 1e-5)
    everything = user.api.get("/queries").json()["queries"]
    assert [q["dataset"] for q in everything] == ["PENGUIN", "TITANIC"]
    first = everything[0]
    assert first["query"] == COUNT_BY_SPECIES and first["epsilon"] == 0.5 and first["delta"] == 0.0
    assert first["status"] == "done" and first["cost"] == {"epsilon": 0.5, "delta": 0.0}
    assert first["result"]["columns"] == ["species", "n"]
    assert first["created_at"] <= first["finished_at"]
    only = user.api.get("/queries", params={"dataset": "TITANIC"}).json()["queries"]
    assert [q["dataset"] for q in only] == ["TITANIC"]
    newest = user.api.get("/queries", params={"limit": "1"}).json()["queries"]
    assert [q["dataset"] for q in newest] == ["TITANIC"]
    for bad in ("0", "x", "10001", "-1"):
        reply = user.api.get("/queries", params={"limit": bad})
        assert reply.status_code == 400 and "'limit'" in reply.json()["message"]


def test_rejected_query_costs_nothing_and_is_not_archived(make_user):
    user = make_user(PENGUIN=(1.0, 0.0))
    reply = user.api.sql("PENGUIN", "SELECT species FROM df", 0.5)
    assert reply.status_code == 400
    assert user.api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.0
    assert user.api.get("/queries").json()["queries"] == []


def test_over_budget_query_is_refused_and_spends_nothing(make_user):
    user = make_user(PENGUIN=(0.5, 0.0))
    reply = user.api.sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", 0.6)
    assert reply.status_code == 403
    assert reply.json()["error"] == "budget_exceeded"
    assert "nothing was spent" in reply.json()["message"]
    assert user.api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.0


def test_per_query_maximum_from_dataset_limits(make_user, admin):
    user = make_user(PENGUIN=(50.0, 0.0))
    admin.set_limits("PENGUIN", max_query=(2.0, 0.001), cap=None)
    try:
        reply = user.api.sql("PENGUIN", "SELECT AVG(body_mass_g) AS m FROM df", 1.5)
        assert reply.status_code == 400
        assert reply.json()["error"] == "query_too_expensive"
        assert (
            user.api.sql("PENGUIN", "SELECT AVG(body_mass_g) AS m FROM df", 1.0).status_code == 200
        )
    finally:
        admin.set_limits("PENGUIN", max_query=None, cap=None)


def test_dataset_wide_cap_limits_all_users_together(make_user, admin, tmp_path):
    from tests.conftest import SAMPLE_DATA, sample_metadata

    admin.add_dataset(
        "CAPPED", SAMPLE_DATA / "penguin.csv", sample_metadata("penguin"), cap=(1.0, 0.0)
    )
    alice, bob = make_user(CAPPED=(1.0, 0.0)), make_user(CAPPED=(1.0, 0.0))
    assert alice.api.sql("CAPPED", "SELECT COUNT(*) AS n FROM df", 0.6).status_code == 200
    refused = bob.api.sql("CAPPED", "SELECT COUNT(*) AS n FROM df", 0.6)
    assert refused.status_code == 403 and "dataset-wide" in refused.json()["message"]
    assert bob.api.sql("CAPPED", "SELECT COUNT(*) AS n FROM df", 0.4).status_code == 200
    assert math.isclose(admin.dataset_spent("CAPPED").epsilon, 1.0)


@pytest.mark.parametrize("kind", list(MODELS))
def test_a_rejected_model_costs_nothing_and_is_not_archived(make_user, kind):
    user = make_user(PENGUIN=(1.0, 1e-4))
    # a column the metadata has no synthetic domain for, a feature that is not a number
    wrong = {"synth": {"columns": ["species", "nope"]}, "diffprivlib": {"features": ["species"]}}
    reply = user.api.post(
        f"/datasets/PENGUIN/{kind}", {**MODELS[kind], **wrong[kind], "epsilon": 0.5}
    )
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_query"
    assert user.api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.0
    assert user.api.get("/queries").json()["queries"] == []


@pytest.mark.parametrize("kind", list(MODELS))
def test_an_over_budget_model_is_refused_and_spends_nothing(make_user, kind):
    user = make_user(PENGUIN=(0.5, 1e-4))
    for path in (f"/datasets/PENGUIN/{kind}/cost", f"/datasets/PENGUIN/{kind}"):
        reply = user.api.post(path, {**MODELS[kind], "epsilon": 0.6})
        if path.endswith("/cost"):
            assert reply.status_code == 200 and reply.json()["fits"] is False
            continue
        assert reply.status_code == 403
        assert reply.json()["error"] == "budget_exceeded"
        assert "nothing was spent" in reply.json()["message"]
    assert user.api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.0
    assert user.api.get("/queries").json()["queries"] == []


@pytest.mark.parametrize("kind", list(MODELS))
def test_the_per_query_maximum_holds_for_models(make_user, admin, kind):
    user = make_user(PENGUIN=(50.0, 1e-4))
    admin.set_limits("PENGUIN", max_query=(2.0, 0.001), cap=None)
    try:
        reply = user.api.post(f"/datasets/PENGUIN/{kind}", {**MODELS[kind], "epsilon": 2.5})
        assert reply.status_code == 400
        assert reply.json()["error"] == "query_too_expensive"
        reply = user.api.post(f"/datasets/PENGUIN/{kind}", {**MODELS[kind], "epsilon": 2.0})
        assert reply.status_code == 200, reply.text
    finally:
        admin.set_limits("PENGUIN", max_query=None, cap=None)


@pytest.mark.parametrize("kind", list(MODELS))
def test_the_dataset_wide_cap_holds_for_models(make_user, admin, kind):
    from tests.conftest import SAMPLE_DATA, sample_metadata

    name = f"CAPPED{kind.upper()}{uuid.uuid4().hex[:4]}"
    admin.add_dataset(
        name, SAMPLE_DATA / "penguin.csv", sample_metadata("penguin"), cap=(1.0, 1e-4)
    )
    alice, bob = make_user(**{name: (1.0, 1e-4)}), make_user(**{name: (1.0, 1e-4)})
    path = f"/datasets/{name}/{kind}"
    assert alice.api.post(path, {**MODELS[kind], "epsilon": 0.6}).status_code == 200
    refused = bob.api.post(path, {**MODELS[kind], "epsilon": 0.6})
    assert refused.status_code == 403 and "dataset-wide" in refused.json()["message"]
    assert bob.api.get(f"/datasets/{name}/budget").json()["spent"]["epsilon"] == 0.0
    assert math.isclose(admin.dataset_spent(name).epsilon, 0.6)
