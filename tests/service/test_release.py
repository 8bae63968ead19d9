"""The release sequence (service/release.py), on a real SQLite store and the real engines."""

from __future__ import annotations

import pytest

from lomas_server.api_requests import SqlRequest
from lomas_server.errors import BudgetExceeded
from lomas_server.limits import DEFAULT_DELTA
from lomas_server.service.admin import AdminService
from lomas_server.service.query_kinds import Engines
from lomas_server.store import open_store
from tests.conftest import analyst_service, sample_metadata, seed_datasets

QUERY = SqlRequest("SELECT COUNT(*) AS n FROM df", epsilon=2.0, delta=0.0)


@pytest.fixture
def services(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'admin.sqlite'}")
    admin = AdminService(store)
    seed_datasets(admin, tmp_path / "data")
    admin.add_user("ana")
    admin.grant("ana", "PENGUIN", 10.0, 1e-4)
    analyst, thread = analyst_service(store)
    yield admin, analyst
    thread.close()


class AdminActsWhilePlanning(Engines):
    """The engines, with an administrator's change landing while a query is being planned
    (a plan can take seconds; the change is made for real, in the store)."""

    def __init__(self, engines: Engines, change) -> None:
        super().__init__(engines.sql, engines.opendp, engines.synth, engines.diffprivlib)
        object.__setattr__(self, "change", change)

    def plan(self, ctx, request):
        planned = super().plan(ctx, request)
        self.change()
        return planned


def _spent(admin: AdminService) -> float:
    return admin.store.spent("ana", "PENGUIN").epsilon


def test_a_grant_lowered_during_planning_caps_the_reservation(services):
    admin, analyst = services
    analyst.engines = AdminActsWhilePlanning(
        analyst.engines, lambda: admin.grant("ana", "PENGUIN", 1.0, 1e-4)
    )
    with pytest.raises(BudgetExceeded, match="epsilon=1"):
        analyst.release("ana", "PENGUIN", QUERY)
    assert _spent(admin) == 0
    assert admin.store.archive("ana", dataset="PENGUIN") == []


BY_NAME = SqlRequest("SELECT Name, COUNT(*) AS n FROM df GROUP BY Name", epsilon=1.0, delta=None)


@pytest.mark.parametrize(
    ("accounting", "max_delta"),
    [("basic", 1.25e-5), ("basic", 1e-3), ("zcdp", 1e-5), ("zcdp", 1e-3)],
)
def test_a_chosen_delta_fits_the_per_query_maximum(services, tmp_path, accounting, max_delta):
    admin, analyst = services
    name = f"T_{accounting}_{max_delta:g}".replace(".", "_").replace("-", "_")
    admin.add_dataset(
        name,
        tmp_path / "data" / "titanic.csv",
        sample_metadata("titanic"),
        max_query=(10.0, max_delta),
        accounting=accounting,
    )
    admin.grant("ana", name, 10.0, 1e-3)
    estimate = analyst.estimate("ana", name, BY_NAME)
    assert 0 < estimate["delta_used"] <= DEFAULT_DELTA
    assert estimate["cost"]["delta"] <= max_delta and estimate["fits"]
    released = analyst.release("ana", name, BY_NAME)
    assert released["delta_used"] == estimate["delta_used"]


def test_running_the_same_cell_again_replays_it(services):
    admin, analyst = services
    admin.grant("ana", "TITANIC", 10.0, 1e-3)
    first = analyst.release("ana", "TITANIC", BY_NAME)
    again = analyst.release("ana", "TITANIC", BY_NAME)
    assert again["replay_of"] == first["query_id"] and again["cost"]["delta"] == 0.0


def test_an_estimate_does_not_fit_when_the_dataset_wide_cap_has_no_room(services, tmp_path):
    admin, analyst = services
    admin.add_dataset(
        "CAPPED",
        tmp_path / "data" / "titanic.csv",
        sample_metadata("titanic"),
        cap=(10.0, 1e-8),
    )
    admin.grant("ana", "CAPPED", 10.0, 1e-3)
    estimate = analyst.estimate("ana", "CAPPED", BY_NAME)
    assert estimate["queries_left"] == 0 and estimate["fits"] is False
