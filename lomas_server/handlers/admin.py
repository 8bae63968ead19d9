"""The admin API (base path /lomas/api/v1/admin): what ``lomas-admin`` does, over HTTP.

Only callers the identity provider names admins get past ``prepare`` (a store admin with a
token, or under JupyterHub a member of the admin groups or roles); everyone else gets 403.
Each handler checks its body against the API contract and calls the same service the CLI
calls (service/admin.py, service/budget_requests.py).
"""

from __future__ import annotations

from typing import Any

from lomas_server.errors import Conflict, InvalidRequest
from lomas_server.handlers.api import checked
from lomas_server.handlers.base import LomasHandler, public_to_jupyter
from lomas_server.service.admin import AdminService
from lomas_server.service.budget_requests import BudgetRequests


class AdminHandler(LomasHandler):
    requires_admin = True

    @property
    def admin(self) -> AdminService:
        return self.settings["lomas_admin"]

    @property
    def requests(self) -> BudgetRequests:
        return self.settings["lomas_budget_requests"]

    def body(self, schema: str) -> dict[str, Any]:
        return checked(self.json_body(), schema)

    @property
    def hub_identity(self) -> bool:
        return self.settings["lomas_identity"] == "hub"


class UsersHandler(AdminHandler):
    @public_to_jupyter
    async def get(self) -> None:
        await self.reply({"users": await self.run(self.admin.user_views)})

    @public_to_jupyter
    async def post(self) -> None:
        body = self.body("NewUser")
        name, is_admin = body["name"], body.get("admin", False)
        if self.hub_identity:
            if is_admin:
                raise InvalidRequest(
                    "'admin' cannot be set here under JupyterHub: the service's admins are the "
                    "members of the Hub's admin groups or roles"
                )
            # Hub users sign in with their Hub token; a lomas token would be a second key.
            await self.run(self.admin.add_hub_user, name)
            token = None
        else:
            token = await self.run(self.admin.add_user, name, is_admin=is_admin)
        view = await self.run(self.admin.user_view, name)
        await self.reply({**view, "token": token}, 201)


class UserHandler(AdminHandler):
    @public_to_jupyter
    async def get(self, name: str) -> None:
        await self.reply(await self.run(self.admin.user_view, name))

    @public_to_jupyter
    async def patch(self, name: str) -> None:
        body = self.body("UserChange")
        await self.run(self.admin.user_view, name)  # 404 before any change
        if "may_query" in body:
            await self.run(self.admin.set_may_query, name, body["may_query"])
        await self.reply(await self.run(self.admin.user_view, name))


class UserTokenHandler(AdminHandler):
    @public_to_jupyter
    async def post(self, name: str) -> None:
        if self.hub_identity:
            raise Conflict(
                "users sign in with their JupyterHub token here; there are no lomas tokens"
            )
        await self.reply({"name": name, "token": await self.run(self.admin.rotate_token, name)})


class UserBudgetsHandler(AdminHandler):
    @public_to_jupyter
    async def get(self, name: str) -> None:
        await self.reply({"budgets": await self.run(self.admin.budgets, name)})


class UserQueriesHandler(AdminHandler):
    @public_to_jupyter
    async def get(self, name: str) -> None:
        dataset = self.get_query_argument("dataset", None)
        await self.reply({"queries": await self.run(self.admin.archive_views, name, dataset)})


class GrantHandler(AdminHandler):
    @public_to_jupyter
    async def put(self, name: str, dataset: str) -> None:
        body = self.body("Grant")
        epsilon, delta = body["epsilon"], body.get("delta", 0.0)
        await self.run(self.admin.user_view, name)  # a grant needs someone to belong to
        await self.run(self.admin.dataset_view, dataset)
        await self.run(self.admin.grant, name, dataset, epsilon, delta)
        await self.reply(
            {"user": name, "dataset": dataset, "initial": {"epsilon": epsilon, "delta": delta}}
        )


class DatasetsHandler(AdminHandler):
    @public_to_jupyter
    async def get(self) -> None:
        await self.reply({"datasets": await self.run(self.admin.dataset_views)})

    @public_to_jupyter
    async def post(self) -> None:
        body = self.body("NewDataset")
        options: dict[str, Any] = {}
        if "s3_endpoint" in body:
            options["endpoint_url"] = body["s3_endpoint"]
        if "s3_region" in body:
            options["region"] = body["s3_region"]
        record = await self.run(
            self.admin.add_dataset,
            body["name"],
            body["location"],
            body["metadata"],
            file_format=body.get("format"),
            max_query=_pair(body.get("max_query")),
            cap=_pair(body.get("cap")),
            source_options=options,
            check_data=body.get("check", True),
            accounting=body.get("accounting", "basic"),
            conversion_delta=body.get("conversion_delta", 1e-6),
            engine=body.get("engine"),
        )
        await self.reply(await self.run(self.admin.dataset_view, record.name), 201)


class DatasetLimitsHandler(AdminHandler):
    @public_to_jupyter
    async def put(self, name: str) -> None:
        body = self.body("Limits")
        await self.run(self.admin.dataset_view, name)
        await self.run(
            self.admin.set_limits,
            name,
            max_query=_pair(body.get("max_query")),
            cap=_pair(body.get("cap")),
        )
        await self.reply(await self.run(self.admin.dataset_view, name))


class BudgetRequestsHandler(AdminHandler):
    @public_to_jupyter
    async def get(self) -> None:
        found = await self.run(
            self.requests.list,
            state=self.get_query_argument("state", None),
            user=self.get_query_argument("user", None),
            dataset=self.get_query_argument("dataset", None),
        )
        await self.reply({"budget_requests": found})


class ApproveHandler(AdminHandler):
    @public_to_jupyter
    async def post(self, request_id: str) -> None:
        body = self.body("Approval")
        await self.reply(
            await self.run(
                self.requests.approve,
                request_id,
                self.lomas_user,
                epsilon=body.get("epsilon"),
                delta=body.get("delta"),
                note=body.get("note"),
            )
        )


class DenyHandler(AdminHandler):
    @public_to_jupyter
    async def post(self, request_id: str) -> None:
        body = self.body("Denial")
        await self.reply(
            await self.run(self.requests.deny, request_id, self.lomas_user, body["note"])
        )


def _pair(amount: dict[str, float] | None) -> tuple[float, float] | None:
    if amount is None:
        return None
    return float(amount["epsilon"]), float(amount.get("delta", 0.0))
