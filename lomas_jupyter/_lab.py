"""What the JupyterLab extension's panel reads, served by the analyst's own Jupyter server.

The panel shows the analyst's datasets, budgets, columns and recent queries. It reads them
here, from the Jupyter server the page already talks to, rather than from the DP server: the
lomas token then never enters the page (the Jupyter server's own login protects these routes,
and it reads the connection settings the client reads: LOMAS_URL and LOMAS_TOKEN, else
LOMAS_CONNECTION_FILE, else, in a JupyterHub single-user server, its Hub token, else
``lomas-demo/connection.json`` in its root folder or above). Every
route only reads (GET): nothing here can spend budget.

This module is loaded by the Jupyter server only (``_jupyter_server_extension_points`` in the
package); a kernel never imports it, so it may use tornado and jupyter_server.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from lomas_jupyter._client import Client
from lomas_jupyter._errors import ClientUsageError, LomasError, ServerError, TransportError

NAMESPACE = "lomas-jupyter"
RECENT_QUERIES = 20  # the panel's default list
NOT_SET = (
    "This Jupyter server has no lomas connection: start it with LOMAS_URL and LOMAS_TOKEN (or "
    "LOMAS_CONNECTION_FILE) set, or put lomas-demo/connection.json in its root folder. "
    "%lomas_connect in a notebook connects that notebook only."
)
MAX_QUERIES = 200

T = TypeVar("T")


class _PanelHandler(APIHandler):
    """Reads through a Client made for each request from the connection settings, off the
    Jupyter server's event loop (the client's calls block)."""

    async def _read(self, work: Callable[[Client], T]) -> T:
        root = self.settings.get("server_root_dir") or "."

        def call() -> T:
            with Client.discover(folder=Path(root).expanduser()) as client:
                return work(client)

        return await asyncio.to_thread(call)

    def _fail(self, err: LomasError) -> None:
        if isinstance(err, ClientUsageError):
            status, code = 503, "not_connected"
        elif isinstance(err, TransportError):
            status, code = 502, "unreachable"
        elif isinstance(err, ServerError) and err.status is not None and err.status < 500:
            status, code = err.status, err.code  # the DP server's own words for the analyst
        else:
            status, code = 502, "server_error"
        self.set_status(status)
        self.finish({"error": code, "message": err.message})


class DatasetsHandler(_PanelHandler):
    @web.authenticated
    async def get(self) -> None:
        def datasets(client: Client) -> dict[str, Any]:
            return {
                "connected": True,
                "url": client.url,
                "user": client.user,
                "account": client.account,
                "datasets": [
                    {
                        "name": info.name,
                        "engines": list(info.engines),
                        "initial": info.budget.initial,
                        "spent": info.budget.spent,
                        "remaining": info.budget.remaining,
                        "max_query": info.max_query,
                    }
                    for info in client.datasets()
                ],
            }

        try:
            self.finish(await self._read(datasets))
        except ClientUsageError as err:
            # Not connected is a state the panel shows, not a failure; what the kernel's
            # message would say (give a URL and token) cannot be done from the panel. Under
            # a Hub it says what the Hub's admin must set, which is the fix.
            hub = bool(os.environ.get("JUPYTERHUB_API_TOKEN"))
            message = err.message if hub else NOT_SET
            self.finish({"connected": False, "reason": "not_configured", "message": message})
        except TransportError as err:
            self.finish({"connected": False, "reason": "unreachable", "message": err.message})
        except LomasError as err:
            self._fail(err)


class ColumnsHandler(_PanelHandler):
    @web.authenticated
    async def get(self, dataset: str) -> None:
        def columns(client: Client) -> dict[str, Any]:
            metadata = client.metadata(dataset)
            rows = [
                {
                    "name": row["column"],
                    "type": row["type"],
                    "nullable": bool(row["nullable"]),
                    "lower": _plain(row["lower"]),
                    "upper": _plain(row["upper"]),
                    "categories": row["categories"],
                    "public_keys": bool(row["public keys"]),
                }
                for row in metadata.columns.to_dict(orient="records")
            ]
            return {
                "dataset": metadata.dataset,
                "max_ids": metadata.options.get("max_ids", 1),
                "columns": rows,
            }

        try:
            self.finish(await self._read(columns))
        except LomasError as err:
            self._fail(err)


class QueriesHandler(_PanelHandler):
    @web.authenticated
    async def get(self) -> None:
        dataset = self.get_query_argument("dataset", None) or None
        limit_text = self.get_query_argument("limit", str(RECENT_QUERIES))
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_QUERIES:
            self.set_status(400)
            self.finish(
                {
                    "error": "invalid_request",
                    "message": f"'limit' must be a whole number from 1 to {MAX_QUERIES}",
                }
            )
            return
        limit = int(limit_text)

        def queries(client: Client) -> dict[str, Any]:
            records = client.queries(dataset, limit=limit)
            return {
                "queries": [
                    {
                        "query_id": r.query_id,
                        "dataset": r.dataset,
                        "engine": r.engine,
                        "query": r.query,
                        "cost": r.cost,
                        "status": r.status,
                        "created_at": r.created_at.isoformat(),
                        "replayable": r.replayable,
                        "repeats": r.repeats,
                    }
                    for r in reversed(records)  # newest first
                ]
            }

        try:
            self.finish(await self._read(queries))
        except LomasError as err:
            self._fail(err)


def _plain(value: Any) -> Any:
    """A bound as JSON has it: a missing one (NaN in the metadata's table) as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _load_jupyter_server_extension(serverapp: Any) -> None:
    base = url_path_join(serverapp.web_app.settings["base_url"], NAMESPACE, "api")
    serverapp.web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "datasets"), DatasetsHandler),
            (url_path_join(base, "datasets", r"([^/]+)", "columns"), ColumnsHandler),
            (url_path_join(base, "queries"), QueriesHandler),
        ],
    )
