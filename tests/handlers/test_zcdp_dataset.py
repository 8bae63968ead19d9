"""A dataset that keeps its ledger in zero-concentrated DP, through the real server."""

from __future__ import annotations

import uuid

import pytest

from lomas_server.accounting.conversion import epsilon_of_rho
from tests.conftest import SAMPLE_DATA, sample_metadata

COUNT = "SELECT COUNT(*) AS n FROM df"


@pytest.fixture(scope="module")
def zcdp_dataset(admin):
    name = f"Z{uuid.uuid4().hex[:6]}"
    admin.add_dataset(
        name,
        SAMPLE_DATA / "penguin.csv",
        sample_metadata("penguin"),
        accounting="zcdp",
        conversion_delta=1e-6,
    )
    return name


def test_many_small_queries_cost_far_less_than_their_sum(zcdp_dataset, make_user):
    user = make_user(**{zcdp_dataset: (6.0, 1e-5)})
    for _ in range(100):
        assert user.api.sql(zcdp_dataset, COUNT, 0.1, fresh=True).status_code == 200
    budget = user.api.get(f"/datasets/{zcdp_dataset}/budget").json()
    assert budget["accounting"]["mode"] == "zcdp"
    assert budget["accounting"]["spent"]["rho"] == pytest.approx(100 * 0.1**2 / 2)
    # 100 x 0.1 = 10 by the sum of epsilons, past the budget of 6; as zCDP at delta' 1e-6: 5.22
    assert budget["spent"]["epsilon"] == pytest.approx(epsilon_of_rho(0.5, 1e-6), rel=1e-6)
    assert budget["spent"]["epsilon"] < 6.0 and budget["spent"]["delta"] == pytest.approx(1e-6)
    assert budget["remaining"]["epsilon"] == pytest.approx(6.0 - budget["spent"]["epsilon"])


def test_zcdp_budget_runs_out_with_a_message_in_epsilon_delta(zcdp_dataset, make_user):
    user = make_user(**{zcdp_dataset: (1.0, 1e-5)})
    accepted = 0
    while True:
        reply = user.api.sql(zcdp_dataset, COUNT, 0.2, fresh=True)
        if reply.status_code != 200:
            break
        accepted += 1
    assert reply.status_code == 403 and reply.json()["error"] == "budget_exceeded"
    assert "epsilon=" in reply.json()["message"] and "rho" not in reply.json()["message"]
    assert accepted >= 1
    budget = user.api.get(f"/datasets/{zcdp_dataset}/budget").json()
    spent, left = budget["spent"], budget["remaining"]
    assert spent["epsilon"] <= 1.0 and spent["delta"] <= 1e-5
    # the refusal states the very remaining budget that /budget shows
    assert f"is epsilon={left['epsilon']:g}, delta={left['delta']:g};" in reply.json()["message"]


def test_grant_below_the_conversion_delta_is_refused(zcdp_dataset, admin):
    from lomas_server.errors import InvalidRequest

    admin.add_user(f"tiny-{uuid.uuid4().hex[:6]}")
    with pytest.raises(InvalidRequest, match="conversion delta"):
        admin.grant(admin.list_users()[-1].name, zcdp_dataset, 1.0, 0.0)


def test_queries_left_is_counted_as_the_ledger_counts(zcdp_dataset, make_user):
    """Summing epsilons would say far fewer queries fit than zCDP really allows: the server
    counts in rho, exactly as reservations do, and the count comes true."""
    user = make_user(**{zcdp_dataset: (6.0, 1e-5)})
    assert user.api.get(f"/datasets/{zcdp_dataset}/budget").json()["last_query"] is None
    estimate = user.api.post(
        f"/datasets/{zcdp_dataset}/smartnoise-sql/cost", {"query": COUNT, "epsilon": 0.5}
    ).json()
    first = estimate["queries_left"]
    assert user.api.sql(zcdp_dataset, COUNT, 0.5, fresh=True).status_code == 200
    budget = user.api.get(f"/datasets/{zcdp_dataset}/budget").json()
    left = budget["last_query"]["queries_left"]
    assert left == first - 1
    rho_left, rho_each = budget["accounting"]["remaining"]["rho"], 0.5**2 / 2
    assert left == int(rho_left / rho_each + 1e-9)
    # far more than the epsilon arithmetic would say (remaining epsilon / the epsilon charged)
    assert left >= 2 * budget["remaining"]["epsilon"] / budget["last_query"]["cost"]["epsilon"]
    for _ in range(left):
        assert user.api.sql(zcdp_dataset, COUNT, 0.5, fresh=True).status_code == 200
    assert user.api.sql(zcdp_dataset, COUNT, 0.5, fresh=True).status_code == 403
    assert (
        user.api.get(f"/datasets/{zcdp_dataset}/budget").json()["last_query"]["queries_left"] == 0
    )


def test_the_archive_words_costs_as_the_replies_do(zcdp_dataset, make_user):
    user = make_user(**{zcdp_dataset: (6.0, 1e-5)})
    reply = user.api.sql(zcdp_dataset, COUNT, 0.5, fresh=True).json()
    (archived,) = user.api.get("/queries", params={"dataset": zcdp_dataset}).json()["queries"]
    assert archived["cost"] == reply["cost"]
    assert archived["cost"]["rho"] == pytest.approx(0.5**2 / 2)
