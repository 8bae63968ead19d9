"""The OpenDP path over HTTP: queries the server compiles from metadata, their cost, accuracy,
replays, and the requests it must refuse."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import SAMPLE_DATA, sample_metadata

OPENDP = "/datasets/{}/opendp"
BY_SPECIES = {
    "group_by": ["species"],
    "aggregates": [{"op": "count"}, {"op": "mean", "column": "bill_length_mm"}],
}


@pytest.fixture(scope="module")
def public_penguins(admin):
    """Penguins whose species (but not islands) the admin declared public."""
    metadata = sample_metadata("penguin")
    metadata["columns"]["species"]["public_keys"] = True
    name = f"PUB{uuid.uuid4().hex[:6]}"
    admin.add_dataset(name, SAMPLE_DATA / "penguin.csv", metadata)
    return name


@pytest.fixture
def user(make_user, public_penguins):
    return make_user(PENGUIN=(10.0, 1e-4), **{public_penguins: (10.0, 1e-4)})


def _spent(user, dataset="PENGUIN"):
    return user.api.get(f"/datasets/{dataset}/budget").json()["spent"]


def test_grouped_count_and_mean_with_public_keys(user, public_penguins):
    reply = user.api.post(OPENDP.format(public_penguins), {"query": BY_SPECIES, "epsilon": 2.0})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["result"]["columns"] == ["species", "count", "mean_bill_length_mm"]
    rows = {r[0]: r for r in body["result"]["data"]}
    assert set(rows) == {"Adelie", "Chinstrap", "Gentoo"}  # every public key, no threshold
    assert abs(rows["Adelie"][1] - 152) < 40
    assert body["cost"] == {"epsilon": 2.0, "delta": 0.0}  # what was asked is what is paid
    accuracy = {c["column"]: c for c in body["accuracy"]["columns"]}
    assert accuracy["count"]["half_width"] > 0  # released with what the noise means
    assert accuracy["mean_bill_length_mm"]["noisy_values"] == [
        "mean_bill_length_mm__sum",
        "mean_bill_length_mm__n",
    ]
    assert _spent(user, public_penguins) == {"epsilon": 2.0, "delta": 0.0}


BY_SEX = {
    "group_by": ["sex"],
    "aggregates": [{"op": "count"}, {"op": "mean", "column": "bill_length_mm"}],
}


@pytest.fixture(scope="module")
def hidden_sexes(admin):
    """Penguins whose sex values the admin did not declare public."""
    metadata = sample_metadata("penguin")
    del metadata["columns"]["sex"]["public_keys"]
    name = f"HID{uuid.uuid4().hex[:6]}"
    admin.add_dataset(name, SAMPLE_DATA / "penguin.csv", metadata)
    return name


def test_private_keys_need_delta_and_pay_for_it(make_user, hidden_sexes):
    user = make_user(**{hidden_sexes: (10.0, 1e-4)})
    body = {"query": BY_SEX, "epsilon": 1.0, "delta": 0}
    refused = user.api.post(OPENDP.format(hidden_sexes), body)
    assert refused.status_code == 400 and "delta" in refused.json()["message"]
    # Without a delta the server chooses one, and the cost says which.
    chosen = user.api.post(OPENDP.format(hidden_sexes) + "/cost", {"query": BY_SEX, "epsilon": 1.0})
    assert chosen.status_code == 200 and chosen.json()["cost"]["delta"] > 0
    reply = user.api.post(
        OPENDP.format(hidden_sexes), {"query": BY_SEX, "epsilon": 1.0, "delta": 1e-6}
    )
    assert reply.status_code == 200
    assert reply.json()["cost"] == {"epsilon": 1.0, "delta": 1e-6}
    # only groups above the threshold: the missing values (NULL) may be one, but never a
    # value outside the data


def test_cost_is_exact_free_and_reports_accuracy(user, public_penguins):
    body = {
        "query": {"aggregates": [{"op": "count"}, {"op": "sum", "column": "body_mass_g"}]},
        "epsilon": 1.0,
    }
    estimate = user.api.post(OPENDP.format(public_penguins) + "/cost", body).json()
    assert estimate["cost"] == {"epsilon": 1.0, "delta": 0.0} and estimate["fits"] is True
    columns = {c["column"]: c for c in estimate["accuracy"]["columns"]}
    assert columns["count"]["half_width"] > 0 and columns["sum_body_mass_g"]["half_width"] > 1000
    assert estimate["query_text"] == "count(*), sum(body_mass_g)"
    assert _spent(user, public_penguins)["epsilon"] == 0.0
    ran = user.api.post(OPENDP.format(public_penguins), body).json()
    assert ran["cost"] == estimate["cost"]


def test_gaussian_costs_rho_converted_in_basic_mode(user):
    body = {"query": {"aggregates": [{"op": "count"}]}, "mechanism": "gaussian", "rho": 0.1}
    reply = user.api.post(OPENDP.format("PENGUIN"), body).json()
    # rho = 0.1 at the dataset's conversion delta 1e-6: epsilon = 2.14 (OpenDP's conversion)
    assert reply["cost"]["epsilon"] == pytest.approx(2.1419, abs=1e-3)
    assert reply["cost"]["delta"] == pytest.approx(1e-6)


def test_target_accuracy_finds_the_cheapest_budget(user, public_penguins):
    body = {
        "query": {"aggregates": [{"op": "count"}]},
        "accuracy": {"half_width": 5.0, "confidence": 0.95},
    }
    estimate = user.api.post(OPENDP.format(public_penguins) + "/cost", body).json()
    epsilon = estimate["noise"]["epsilon"]
    assert 0.5 < epsilon < 0.8  # Laplace, sensitivity 1: ln(1/0.05) / 5 is about 0.6
    assert estimate["accuracy"]["columns"][0]["half_width"] <= 5.0
    assert estimate["cost"]["epsilon"] == pytest.approx(epsilon)


def test_filters_histogram_quantile_and_variance(user, public_penguins):
    query = {
        "filters": [
            {"column": "island", "op": "in", "value": ["Dream", "Biscoe"]},
            {"column": "body_mass_g", "op": "is_not_null"},
        ],
        "aggregates": [
            {"op": "median", "column": "body_mass_g"},
            {"op": "variance", "column": "bill_depth_mm", "as": "v"},
        ],
    }
    reply = user.api.post(OPENDP.format(public_penguins), {"query": query, "epsilon": 5.0})
    assert reply.status_code == 200, reply.text
    assert reply.json()["result"]["columns"] == ["median_body_mass_g", "v"]
    histogram = user.api.post(
        OPENDP.format("PENGUIN"),
        {
            "query": {"aggregates": [{"op": "histogram", "column": "sex"}]},
            "epsilon": 1.0,
            "delta": 1e-6,
        },
    ).json()
    assert histogram["result"]["columns"] == ["sex", "count"]


def test_identical_query_replays_whatever_the_key_order(user, public_penguins):
    first = user.api.post(
        OPENDP.format(public_penguins), {"query": BY_SPECIES, "epsilon": 1.0}
    ).json()
    reordered = {"aggregates": BY_SPECIES["aggregates"], "group_by": ["species"]}
    again = user.api.post(
        OPENDP.format(public_penguins), {"epsilon": 1.0, "query": reordered}
    ).json()
    assert again["replay_of"] == first["query_id"] and again["result"] == first["result"]
    assert _spent(user, public_penguins)["epsilon"] == 1.0


@pytest.mark.parametrize(
    ("body", "status", "mentions"),
    [
        # serialized pipelines, plans and bounds are not something the API can even carry
        (
            {"query": {"aggregates": [{"op": "count"}]}, "epsilon": 1, "pipeline": "gASVg..."},
            400,
            "pipeline",
        ),
        (
            {
                "query": {"aggregates": [{"op": "count"}]},
                "epsilon": 1,
                "polars_plan": '{"DataFrameScan"...',
            },
            400,
            "polars_plan",
        ),
        ({"query": {"aggregates": [{"op": "count"}], "plan": "..."}, "epsilon": 1}, 400, "plan"),
        (
            {
                "query": {"aggregates": [{"op": "sum", "column": "body_mass_g", "bounds": [0, 1]}]},
                "epsilon": 1,
            },
            400,
            "bounds",
        ),
        (
            {
                "query": {"aggregates": [{"op": "sum", "column": "body_mass_g"}]},
                "epsilon": 1,
                "bounds": {},
            },
            400,
            "bounds",
        ),
        (
            {"query": {"aggregates": [{"op": "count"}]}, "epsilon": 1, "honest_but_curious": True},
            400,
            "honest_but_curious",
        ),
        # only what the metadata allows
        (
            {"query": {"aggregates": [{"op": "sum", "column": "species"}]}, "epsilon": 1},
            400,
            "numeric",
        ),
        (
            {"query": {"aggregates": [{"op": "mean", "column": "nope"}]}, "epsilon": 1},
            400,
            "unknown column",
        ),
        (
            {"query": {"aggregates": [{"op": "exec", "column": "species"}]}, "epsilon": 1},
            400,
            "not one of",
        ),
        (
            {
                "query": {
                    "filters": [{"column": "island", "op": ">", "value": "D"}],
                    "aggregates": [{"op": "count"}],
                },
                "epsilon": 1,
            },
            400,
            "compares numbers",
        ),
        (
            {
                "query": {
                    "filters": [{"column": "body_mass_g", "op": "==", "value": "heavy"}],
                    "aggregates": [{"op": "count"}],
                },
                "epsilon": 1,
            },
            400,
            "compare it with a number",
        ),
        (
            {"query": {"aggregates": [{"op": "count"}]}, "mechanism": "gaussian", "epsilon": 1},
            400,
            "rho",
        ),
        ({"query": {"aggregates": [{"op": "count"}]}}, 400, "epsilon"),
        ({"query": {"aggregates": []}, "epsilon": 1}, 400, "at least one aggregate"),
        ({"query": {"aggregates": [{"op": "count"}]}, "epsilon": 50}, 400, "per-query maximum"),
        # the server's own names for a statistic's noisy parts (the threshold count, ...)
        (
            {"query": {"aggregates": [{"op": "count", "as": "__rows"}]}, "epsilon": 1},
            400,
            "without '__'",
        ),
    ],
)
def test_refused_requests_spend_nothing(user, body, status, mentions):
    reply = user.api.post(OPENDP.format("PENGUIN"), body)
    assert reply.status_code == status, reply.text
    assert mentions in reply.json()["message"]
    assert _spent(user) == {"epsilon": 0.0, "delta": 0.0}


def test_unbounded_columns_cannot_be_summed(admin, make_user):
    metadata = sample_metadata("penguin")
    metadata["columns"]["body_mass_g"].pop("lower")
    metadata["columns"]["body_mass_g"].pop("upper")
    name = f"UNB{uuid.uuid4().hex[:6]}"
    admin.add_dataset(name, SAMPLE_DATA / "penguin.csv", metadata)
    user = make_user(**{name: (5.0, 0.0)})
    for op in ("sum", "mean", "variance", "median"):
        reply = user.api.post(
            OPENDP.format(name),
            {"query": {"aggregates": [{"op": op, "column": "body_mass_g"}]}, "epsilon": 1},
        )
        assert reply.status_code == 400 and "no bounds" in reply.json()["message"]
    sql = user.api.sql(name, "SELECT SUM(body_mass_g) AS s FROM df", 1.0)
    assert sql.status_code == 400 and "no bounds" in sql.json()["message"]
