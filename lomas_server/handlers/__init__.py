"""Tornado handlers and the URL table of the REST API."""

from __future__ import annotations

from typing import Any

from lomas_server.handlers import api

API_PREFIX = "/lomas/api/v1"
_NAME = r"(?P<name>[^/]+)"


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
        ("/queries", api.QueriesHandler),
        ("/.*", api.NotFoundHandler),
    ]
    return [(API_PREFIX + path, handler) for path, handler in routes]
