"""The REST API, one handler per resource (base path /lomas/api/v1)."""

from __future__ import annotations

from typing import Any

from lomas_server import __version__, api_contract
from lomas_server.api_requests import (
    parse_diffprivlib_request,
    parse_dummy_request,
    parse_opendp_request,
    parse_sql_request,
    parse_synth_request,
)
from lomas_server.errors import InvalidRequest, NotFound, ServiceError
from lomas_server.handlers.base import LomasHandler, public_to_jupyter


class HealthHandler(LomasHandler):
    requires_user = False

    @public_to_jupyter
    async def get(self) -> None:
        try:
            await self.run(self.service.store.ping)
        except ServiceError as err:
            await self.reply(
                {"status": "unhealthy", "version": __version__, "reason": err.message}, 503
            )
            return
        await self.reply({"status": "ok", "version": __version__})


class OpenApiHandler(LomasHandler):
    """The contract as JSON, its server URL behind Jupyter's base URL where there is one."""

    requires_user = False

    @public_to_jupyter
    async def get(self) -> None:
        document = api_contract.document()
        base = self.settings.get("base_url", "/").rstrip("/")
        document["servers"] = [{"url": f"{base}{document['servers'][0]['url']}"}]
        await self.reply(document)


class OpenApiYamlHandler(LomasHandler):
    """The contract as written (api.yaml)."""

    requires_user = False

    @public_to_jupyter
    async def get(self) -> None:
        self.set_header("Content-Type", "application/yaml; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(
            api_contract.document_text(), set_content_type="application/yaml; charset=UTF-8"
        )


class DatasetsHandler(LomasHandler):
    @public_to_jupyter
    async def get(self) -> None:
        await self.reply({"datasets": await self.run(self.service.list_datasets, self.lomas_user)})


class MetadataHandler(LomasHandler):
    @public_to_jupyter
    async def get(self, name: str) -> None:
        await self.reply(await self.run(self.service.metadata, self.lomas_user, name))


class BudgetHandler(LomasHandler):
    @public_to_jupyter
    async def get(self, name: str) -> None:
        await self.reply(await self.run(self.service.budget, self.lomas_user, name))


class DummyHandler(LomasHandler):
    engine_work = True

    @public_to_jupyter
    async def post(self, name: str) -> None:
        request = parse_dummy_request(self.json_body())
        await self.reply(
            await self.run(self.service.dummy, self.lomas_user, name, request.rows, request.seed)
        )


class SmartnoiseSqlCostHandler(LomasHandler):
    engine_work = True

    @public_to_jupyter
    async def post(self, name: str) -> None:
        request = parse_sql_request(self.json_body(), for_release=False)
        await self.reply(await self.run(self.service.estimate, self.lomas_user, name, request))


class SmartnoiseSqlHandler(LomasHandler):
    engine_work = True

    @public_to_jupyter
    async def post(self, name: str) -> None:
        request = parse_sql_request(self.json_body(), for_release=True)
        await self.reply(await self.run(self.service.release, self.lomas_user, name, request))


class OpenDPCostHandler(LomasHandler):
    engine_work = True

    @public_to_jupyter
    async def post(self, name: str) -> None:
        request = parse_opendp_request(self.json_body(), for_release=False)
        await self.reply(await self.run(self.service.estimate, self.lomas_user, name, request))


class OpenDPHandler(LomasHandler):
    engine_work = True

    @public_to_jupyter
    async def post(self, name: str) -> None:
        request = parse_opendp_request(self.json_body(), for_release=True)
        await self.reply(await self.run(self.service.release, self.lomas_user, name, request))


class SynthCostHandler(LomasHandler):
    engine_work = True

    @public_to_jupyter
    async def post(self, name: str) -> None:
        request = parse_synth_request(self.json_body(), for_release=False)
        await self.reply(await self.run(self.service.estimate, self.lomas_user, name, request))


class SynthHandler(LomasHandler):
    engine_work = True

    @public_to_jupyter
    async def post(self, name: str) -> None:
        request = parse_synth_request(self.json_body(), for_release=True)
        await self.reply(await self.run(self.service.release, self.lomas_user, name, request))


class DiffprivlibCostHandler(LomasHandler):
    engine_work = True

    @public_to_jupyter
    async def post(self, name: str) -> None:
        request = parse_diffprivlib_request(self.json_body(), for_release=False)
        await self.reply(await self.run(self.service.estimate, self.lomas_user, name, request))


class DiffprivlibHandler(LomasHandler):
    engine_work = True

    @public_to_jupyter
    async def post(self, name: str) -> None:
        request = parse_diffprivlib_request(self.json_body(), for_release=True)
        await self.reply(await self.run(self.service.release, self.lomas_user, name, request))


MAX_ARCHIVE_LIMIT = 10_000  # as api.yaml says


class QueriesHandler(LomasHandler):
    @public_to_jupyter
    async def get(self) -> None:
        dataset = self.get_query_argument("dataset", None)
        limit_text = self.get_query_argument("limit", None)
        limit = None
        if limit_text is not None:
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_ARCHIVE_LIMIT:
                raise InvalidRequest(
                    f"'limit' must be a whole number from 1 to {MAX_ARCHIVE_LIMIT}"
                )
            limit = int(limit_text)
        queries = await self.run(self.service.queries, self.lomas_user, dataset)
        await self.reply({"queries": queries if limit is None else queries[-limit:]})


class MeHandler(LomasHandler):
    """Who the server takes the caller to be: what ``%lomas_connect`` confirms."""

    @public_to_jupyter
    async def get(self) -> None:
        await self.reply(
            {
                "user": self.lomas_user,
                "admin": self.lomas_admin,
                "identity": self.settings["lomas_identity"],
            }
        )


class BudgetRequestHandler(LomasHandler):
    @public_to_jupyter
    async def post(self, name: str) -> None:
        body = checked(self.json_body(), "BudgetRequestBody")
        await self.reply(
            await self.run(
                self.service.request_budget,
                self.lomas_user,
                name,
                body["epsilon"],
                body.get("delta", 0.0),
                body["reason"],
            ),
            201,
        )


class MyBudgetRequestsHandler(LomasHandler):
    @public_to_jupyter
    async def get(self) -> None:
        requests = await self.run(self.service.my_budget_requests, self.lomas_user)
        await self.reply({"budget_requests": requests})


def checked(body: dict[str, Any], schema: str) -> dict[str, Any]:
    """A request body, checked against its schema in the API contract."""
    api_contract.check(schema, body)
    return body


class NotFoundHandler(LomasHandler):
    """Anything else under the API prefix: a JSON 404 instead of an HTML page."""

    requires_user = False

    def _missing(self, *args: str) -> None:
        raise NotFound(f"no API endpoint {self.request.method} {self.request.path}")

    get = post = put = delete = patch = public_to_jupyter(_missing)
