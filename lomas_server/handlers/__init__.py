"""Tornado handlers and the URL table of the REST API."""

from __future__ import annotations

from typing import Any

from lomas_server.handlers import admin, api

API_PREFIX = "/lomas/api/v1"
_NAME = r"(?P<name>[^/]+)"
_DATASET = r"(?P<dataset>[^/]+)"
_REQUEST = r"(?P<request_id>[^/]+)"


def api_routes() -> list[tuple[str, type[Any]]]:
    routes = [
        ("/health", api.HealthHandler),
        ("/openapi.json", api.OpenApiHandler),
        ("/openapi.yaml", api.OpenApiYamlHandler),
        ("/datasets", api.DatasetsHandler),
        (f"/datasets/{_NAME}/metadata", api.MetadataHandler),
        (f"/datasets/{_NAME}/budget", api.BudgetHandler),
        (f"/datasets/{_NAME}/dummy", api.DummyHandler),
        (f"/datasets/{_NAME}/smartnoise-sql/cost", api.SmartnoiseSqlCostHandler),
        (f"/datasets/{_NAME}/smartnoise-sql", api.SmartnoiseSqlHandler),
        (f"/datasets/{_NAME}/opendp/cost", api.OpenDPCostHandler),
        (f"/datasets/{_NAME}/opendp", api.OpenDPHandler),
        (f"/datasets/{_NAME}/synth/cost", api.SynthCostHandler),
        (f"/datasets/{_NAME}/synth", api.SynthHandler),
        (f"/datasets/{_NAME}/diffprivlib/cost", api.DiffprivlibCostHandler),
        (f"/datasets/{_NAME}/diffprivlib", api.DiffprivlibHandler),
        ("/queries", api.QueriesHandler),
        ("/me", api.MeHandler),
        (f"/datasets/{_NAME}/budget-requests", api.BudgetRequestHandler),
        ("/budget-requests", api.MyBudgetRequestsHandler),
        ("/admin/users", admin.UsersHandler),
        (f"/admin/users/{_NAME}", admin.UserHandler),
        (f"/admin/users/{_NAME}/token", admin.UserTokenHandler),
        (f"/admin/users/{_NAME}/budgets", admin.UserBudgetsHandler),
        (f"/admin/users/{_NAME}/queries", admin.UserQueriesHandler),
        (f"/admin/users/{_NAME}/grants/{_DATASET}", admin.GrantHandler),
        ("/admin/datasets", admin.DatasetsHandler),
        (f"/admin/datasets/{_NAME}/limits", admin.DatasetLimitsHandler),
        ("/admin/budget-requests", admin.BudgetRequestsHandler),
        (f"/admin/budget-requests/{_REQUEST}/approve", admin.ApproveHandler),
        (f"/admin/budget-requests/{_REQUEST}/deny", admin.DenyHandler),
        ("/.*", api.NotFoundHandler),
    ]
    return [(API_PREFIX + path, handler) for path, handler in routes]
