"""The base of every API handler: identity, JSON bodies, JSON errors, off-loop execution."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado.web import HTTPError

from lomas_server.api_requests import parse_json_object
from lomas_server.errors import (
    Forbidden,
    PayloadTooLarge,
    ServiceError,
    TooManyRequests,
    Unauthorized,
)
from lomas_server.service.analyst import AnalystService

log = logging.getLogger("lomas_server.api")
T = TypeVar("T")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}

# Jupyter's own login does not guard this API: every method is marked so for jupyter_server,
# and ``prepare`` below authenticates with the lomas identity provider instead.
public_to_jupyter = allow_unauthenticated


class LomasHandler(ExtensionHandlerMixin, APIHandler):
    """jupyter_server's API handler (origin checks, JSON content type, a strict content
    security policy) with lomas's identity, error shape and worker pools."""

    requires_user = True
    # The admin API: only callers the identity provider names admins.
    requires_admin = False
    # Work that may plan, price, run a query or generate rows: it runs on its own pool, and
    # each analyst may have at most ``max_requests_per_user`` such requests at once, so that
    # nobody can hold every thread (reads, /health and other analysts keep being served).
    engine_work = False
    lomas_user: str
    lomas_admin: bool = False

    @property
    def service(self) -> AnalystService:
        return self.settings["lomas_service"]

    @property
    def executor(self) -> Executor:
        key = "lomas_executor" if self.engine_work else "lomas_read_executor"
        return self.settings[key]

    async def prepare(self) -> None:  # type: ignore[override]
        # jupyter_server's own steps (host check, its login off for these handlers), then
        # APIHandler's origin check in our words: its bare 404 would read as a wrong URL.
        await JupyterHandler.prepare(self, _redirect_to_login=False)
        if not self.check_origin():
            raise Forbidden(
                "requests from another web origin are not accepted; call the API from the "
                "notebook server's own pages or from outside a browser"
            )
        if not self.requires_user:
            return
        provider = self.settings["lomas_identity_provider"]
        user = provider.get_user(self)
        if inspect.isawaitable(user):
            user = await user
        if user is None:
            raise Unauthorized(
                "missing or invalid API token; send the header 'Authorization: token <your token>'"
            )
        self.lomas_user = user.username
        self.lomas_admin = bool(getattr(user, "admin", False))
        if getattr(user, "source", "token") == "hub":
            await self._ensure_record(user.username)
        if self.requires_admin and not self.lomas_admin:
            raise Forbidden(
                "this needs an admin of the lomas service"
                + (
                    " (a member of the Hub's admin groups or roles)"
                    if self.settings.get("lomas_identity") == "hub"
                    else ""
                )
            )

    async def _ensure_record(self, name: str) -> None:
        known: set[str] = self.settings["lomas_known_users"]
        if name in known:
            return
        loop = asyncio.get_running_loop()
        admin = self.settings["lomas_admin"]
        await loop.run_in_executor(
            self.settings["lomas_read_executor"], admin.ensure_hub_user, name
        )
        known.add(name)

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.clear_header("Server")  # no need to name the web framework and its version

    def options(self, *args: Any, **kwargs: Any) -> None:
        # No CORS preflight: identity comes only from the Authorization header, and the API
        # is called from the same origin (the notebook server) or from outside a browser.
        raise HTTPError(405)

    def check_xsrf_cookie(self) -> None:
        # Identity comes only from the Authorization header, which a browser never adds to a
        # cross-site request on its own; cookies are ignored, so there is nothing to forge.
        return None

    def json_body(self) -> dict[str, Any]:
        limit = self.settings["lomas_max_request_bytes"]
        if len(self.request.body) > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        return parse_json_object(self.request.body)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking use case on the worker pool, keeping the event loop free."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs)
        if not self.engine_work:
            return await loop.run_in_executor(self.executor, call)
        in_flight: dict[str, int] = self.settings["lomas_in_flight"]
        limit = self.settings["lomas_max_requests_per_user"]
        if in_flight.get(self.lomas_user, 0) >= limit:
            raise TooManyRequests(
                f"you already have {limit} queries, estimates or dummy-data requests running; "
                "wait for one to finish"
            )
        # Counted on the event loop, which runs one handler step at a time: no lock needed.
        in_flight[self.lomas_user] = in_flight.get(self.lomas_user, 0) + 1
        try:
            return await loop.run_in_executor(self.executor, call)
        finally:
            in_flight[self.lomas_user] -= 1
            if not in_flight[self.lomas_user]:
                del in_flight[self.lomas_user]

    async def reply(self, payload: Any, status: int = 200) -> None:
        # A large reply (100,000 dummy rows) takes a while to write as JSON: off the event loop.
        loop = asyncio.get_running_loop()
        text = await loop.run_in_executor(
            self.executor, functools.partial(json.dumps, payload, allow_nan=False)
        )
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(text)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, ServiceError):
            status, body = error.status, error.as_dict()
        elif isinstance(error, HTTPError):
            status = error.status_code
            # Tornado's and Jupyter's own texts may quote the request or name internals: give
            # the status's standard phrase instead.
            body = {"error": _HTTP_CODES.get(status, "http_error"), "message": self._reason}
        else:
            status, body = 500, {"error": "internal_error", "message": "internal server error"}
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Expected errors are one log line; only the unexpected get a traceback.
        # A failing query's cause was already logged, with its query id, where it happened.
        if isinstance(value, ServiceError):
            level = logging.INFO if value.status < 500 else logging.WARNING
            log.log(
                level,
                "%s %s -> %d %s",
                self.request.method,
                self.request.path,
                value.status,
                value.code,
            )
        else:
            super().log_exception(typ, value, tb)
