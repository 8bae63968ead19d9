"""A small Python client for the lomas DP API, usable from notebooks and plain scripts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import requests

if TYPE_CHECKING:
    from lomas_jupyter.opendp_builder import OpenDPQueryBuilder

API_PREFIX = "/lomas/api/v1"
DEMO_CONNECTION = Path("lomas-demo") / "connection.json"


class LomasError(Exception):
    """An error reported by the server (or on the way to it), with the server's message."""

    def __init__(
        self, message: str, *, code: str = "client_error", status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self) -> str:
        # The server's code helps when reporting a problem; client-side errors need none.
        return f"{self.message} [{self.code}]" if self.status is not None else self.message


class Client:
    def __init__(
        self, url: str, token: str, *, timeout: float = 120.0, user: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.user = user
        self.api = self.url + API_PREFIX
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"token {token}"

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Client:
        """Connect with a connection.json as written by ``lomas-server demo``."""
        try:
            info = json.loads(Path(path).read_text())
            return cls(info["url"], info["token"], user=info.get("user"), **kwargs)
        except (OSError, ValueError, KeyError) as err:
            raise LomasError(f"cannot read connection file {path}: {err}") from err

    @classmethod
    def from_env(cls, **kwargs: Any) -> Client:
        """Connect with LOMAS_URL and LOMAS_TOKEN."""
        url, token = os.environ.get("LOMAS_URL"), os.environ.get("LOMAS_TOKEN")
        if not url or not token:
            raise LomasError("set LOMAS_URL and LOMAS_TOKEN, or pass a URL and token")
        return cls(url, token, user=os.environ.get("LOMAS_USER"), **kwargs)

    @classmethod
    def discover(cls, **kwargs: Any) -> Client:
        """Connect the way the environment says: LOMAS_URL and LOMAS_TOKEN, else the file in
        LOMAS_CONNECTION_FILE, else lomas-demo/connection.json here or in a folder above."""
        if os.environ.get("LOMAS_URL") and os.environ.get("LOMAS_TOKEN"):
            return cls.from_env(**kwargs)
        if os.environ.get("LOMAS_CONNECTION_FILE"):
            return cls.from_file(os.environ["LOMAS_CONNECTION_FILE"], **kwargs)
        for folder in (Path.cwd(), *Path.cwd().parents):
            if (folder / DEMO_CONNECTION).exists():
                return cls.from_file(folder / DEMO_CONNECTION, **kwargs)
        raise LomasError(
            "not connected: give a URL and token, or a connection.json, "
            "or set LOMAS_URL and LOMAS_TOKEN (or LOMAS_CONNECTION_FILE)"
        )

    # -- endpoints ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def datasets(self) -> list[dict[str, Any]]:
        return self._call("GET", "/datasets")["datasets"]

    def metadata(self, dataset: str) -> dict[str, Any]:
        return self._call("GET", f"/datasets/{dataset}/metadata")

    def budget(self, dataset: str) -> dict[str, Any]:
        return self._call("GET", f"/datasets/{dataset}/budget")

    def dummy(self, dataset: str, rows: int = 100, seed: int | None = None) -> pd.DataFrame:
        body: dict[str, Any] = {"rows": rows}
        if seed is not None:
            body["seed"] = seed
        return table_frame(self._call("POST", f"/datasets/{dataset}/dummy", body))

    def smartnoise_sql_cost(
        self, dataset: str, query: str, *, epsilon: float, delta: float = 0.0
    ) -> dict[str, Any]:
        body = {"query": query, "epsilon": epsilon, "delta": delta}
        return self._call("POST", f"/datasets/{dataset}/smartnoise-sql/cost", body)

    def smartnoise_sql_response(
        self,
        dataset: str,
        query: str,
        *,
        epsilon: float,
        delta: float = 0.0,
        postprocess: bool = True,
        fresh: bool = False,
    ) -> dict[str, Any]:
        """The whole reply: result, cost, budget, query id and, for a replay, ``replay_of``.

        An identical earlier request is replayed for free; ``fresh=True`` pays for a new release.
        """
        body = {
            "query": query,
            "epsilon": epsilon,
            "delta": delta,
            "postprocess": postprocess,
            "fresh": fresh,
        }
        return self._call("POST", f"/datasets/{dataset}/smartnoise-sql", body)

    def smartnoise_sql(
        self,
        dataset: str,
        query: str,
        *,
        epsilon: float,
        delta: float = 0.0,
        postprocess: bool = True,
        fresh: bool = False,
    ) -> pd.DataFrame:
        """Run a query with DP and return the noisy result."""
        reply = self.smartnoise_sql_response(
            dataset, query, epsilon=epsilon, delta=delta, postprocess=postprocess, fresh=fresh
        )
        return table_frame(reply["result"])

    # -- OpenDP ------------------------------------------------------------------------------
    def opendp(self, dataset: str) -> OpenDPQueryBuilder:
        """Start an OpenDP query: ``client.opendp("PENGUIN").count().laplace(epsilon=0.5).release()``."""
        from lomas_jupyter.opendp_builder import OpenDPQueryBuilder

        return OpenDPQueryBuilder(self, dataset)

    def opendp_cost(self, dataset: str, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/datasets/{dataset}/opendp/cost", request)

    def opendp_response(self, dataset: str, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/datasets/{dataset}/opendp", request)

    def queries(self, dataset: str | None = None) -> list[dict[str, Any]]:
        params = {"dataset": dataset} if dataset else None
        return self._call("GET", "/queries", params=params)["queries"]

    # -- transport ---------------------------------------------------------------------------
    def _call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        try:
            response = self._session.request(
                method, self.api + path, json=body, params=params, timeout=self.timeout
            )
        except requests.Timeout as err:
            raise LomasError(
                f"the server at {self.url} did not answer within {self.timeout:g} s", code="timeout"
            ) from err
        except requests.ConnectionError as err:
            raise LomasError(
                f"cannot reach the server at {self.url}", code="connection_error"
            ) from err
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            if isinstance(payload, dict) and "message" in payload:
                raise LomasError(
                    payload["message"],
                    code=payload.get("error", "error"),
                    status=response.status_code,
                )
            raise LomasError(
                f"the server answered HTTP {response.status_code}",
                code="http_error",
                status=response.status_code,
            )
        if payload is None:
            raise LomasError(
                "the server answered with something that is not JSON", code="bad_reply"
            )
        return payload


def table_frame(table: dict[str, Any]) -> pd.DataFrame:
    """A ``{"columns", "data"}`` table from the API as a DataFrame."""
    return pd.DataFrame(table["data"], columns=table["columns"])
