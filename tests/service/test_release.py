"""The release sequence (service/release.py), on a real SQLite store and the real engines."""

from __future__ import annotations

import pytest

from lomas_server.api_requests import SqlRequest
from lomas_server.errors import BudgetExceeded
from lomas_server.service.admin import AdminService
from lomas_server.service.query_kinds import Engines
from lomas_server.store import open_store
from tests.conftest import analyst_service, seed_datasets

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
        super().__init__(engines.sql, engines.opendp)
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
