"""A small Python client for the lomas DP API, usable from notebooks and plain scripts."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from lomas_jupyter._archive import QueryRecord, archive_records
from lomas_jupyter._errors import ClientUsageError
from lomas_jupyter._model_release import ModelRelease, model_body
from lomas_jupyter._opendp import OpenDPQueryBuilder
from lomas_jupyter._results import (
    Budget,
    BudgetRequest,
    DatasetInfo,
    Estimate,
    Identity,
    Metadata,
    Release,
    table_frame,
)
from lomas_jupyter._synth import synth_body
from lomas_jupyter._transport import Transport

DEMO_CONNECTION = Path("lomas-demo") / "connection.json"
DEMO_ADMIN_CONNECTION = Path("lomas-demo") / "admin-connection.json"
HUB_TOKEN_SOURCE = "your JupyterHub token (JUPYTERHUB_API_TOKEN)"


class Client(Transport):
    """One analyst's connection to a lomas server (``with Client(...) as client:`` closes it).

    Every method raises a ``LomasError``: ``ServerError`` (as its subclass) when the server
    refuses, ``TransportError`` when there is no usable reply."""

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Client:
        """Connect with a connection.json as written by ``lomas-server demo``."""
        try:
            info = json.loads(Path(path).read_text())
            kwargs.setdefault("token_source", f"the token in {path}")
            return cls(info["url"], info["token"], user=info.get("user"), **kwargs)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ClientUsageError(f"cannot read connection file {path}: {err}") from err

    @classmethod
    def from_env(cls, **kwargs: Any) -> Client:
        """Connect with LOMAS_URL and LOMAS_TOKEN."""
        url, token = os.environ.get("LOMAS_URL"), os.environ.get("LOMAS_TOKEN")
        if not url or not token:
            raise ClientUsageError("set LOMAS_URL and LOMAS_TOKEN, or pass a URL and token")
        kwargs.setdefault("token_source", "LOMAS_TOKEN")
        return cls(url, token, user=os.environ.get("LOMAS_USER"), **kwargs)

    @classmethod
    def from_hub(cls, **kwargs: Any) -> Client:
        """Connect from a JupyterHub single-user server with its own Hub token: a lomas service
        in ``hub`` identity asks the Hub whose token it is. The service is at LOMAS_URL, else
        at the Hub's public address under ``services/lomas/`` (LOMAS_SERVICE_NAME)."""
        token = os.environ.get("JUPYTERHUB_API_TOKEN")
        if not token:
            raise ClientUsageError("not in a JupyterHub server: JUPYTERHUB_API_TOKEN is not set")
        kwargs.setdefault("token_source", HUB_TOKEN_SOURCE)
        url = hub_service_url(os.environ)
        return cls(url, token, user=os.environ.get("JUPYTERHUB_USER"), **kwargs)

    @classmethod
    def discover(
        cls,
        *,
        folder: str | Path | None = None,
        demo_file: Path = DEMO_CONNECTION,
        **kwargs: Any,
    ) -> Client:
        """Connect the way the environment says: LOMAS_URL and LOMAS_TOKEN, else the file in
        LOMAS_CONNECTION_FILE, else (in a JupyterHub server) the Hub token, else
        lomas-demo/connection.json in ``folder`` (default: the working folder) or above."""
        if os.environ.get("LOMAS_URL") and os.environ.get("LOMAS_TOKEN"):
            return cls.from_env(**kwargs)
        # Before the Hub token: every Hub server has one, and a file set on purpose (a lomas
        # service in token identity under a Hub) must not be shadowed by it.
        if os.environ.get("LOMAS_CONNECTION_FILE"):
            return cls.from_file(os.environ["LOMAS_CONNECTION_FILE"], **kwargs)
        if os.environ.get("JUPYTERHUB_API_TOKEN"):
            return cls.from_hub(**kwargs)
        start = Path(folder).resolve() if folder is not None else Path.cwd()
        for place in (start, *start.parents):
            if (place / demo_file).exists():
                return cls.from_file(place / demo_file, **kwargs)
        raise ClientUsageError(
            "not connected: give a URL and token, or a connection.json, "
            "or set LOMAS_URL and LOMAS_TOKEN (or LOMAS_CONNECTION_FILE)"
        )

    def __repr__(self) -> str:
        who = f" user={self.user!r}" if self.user else ""
        return f"<Client {self.url}{who}>"

    # -- reading -----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._json(self._call("GET", "/health"))

    def me(self) -> Identity:
        """Who the server takes you to be, and whether you administer it."""
        reply = self._call("GET", "/me")
        return self._typed(lambda: Identity.from_reply(reply))

    def datasets(self) -> list[DatasetInfo]:
        """The datasets you may query, each with your budget on it."""
        reply = self._call("GET", "/datasets")
        return self._typed(lambda: [DatasetInfo.from_reply(d) for d in reply["datasets"]])

    def metadata(self, dataset: str) -> Metadata:
        """The dataset's public metadata: its columns (types, bounds, categories) as a
        DataFrame, its options, and the whole document in ``raw``."""
        reply = self._call("GET", f"/datasets/{dataset}/metadata")
        return self._typed(lambda: Metadata.from_reply(reply, dataset=dataset))

    def budget(self, dataset: str) -> Budget:
        """Your budget on a dataset, and how many more queries like your last one fit."""
        reply = self._call("GET", f"/datasets/{dataset}/budget")
        return self._typed(lambda: Budget.from_reply(reply, dataset=dataset))

    def dummy(self, dataset: str, rows: int = 100, seed: int | None = None) -> pd.DataFrame:
        """Synthetic rows with the dataset's schema, made from metadata only: free."""
        body: dict[str, Any] = {"rows": rows}
        if seed is not None:
            body["seed"] = seed
        reply = self._call("POST", f"/datasets/{dataset}/dummy", body)
        return self._typed(lambda: table_frame(reply))

    def queries(self, dataset: str | None = None, *, limit: int | None = None) -> list[QueryRecord]:
        """Your archive, oldest first: each query, its parameters, cost, status and result,
        and which release a rerun of it replays; ``limit``: the newest that many only."""
        params: dict[str, Any] = {}
        if dataset:
            params["dataset"] = dataset
        if limit is not None:
            params["limit"] = limit
        reply = self._call("GET", "/queries", params=params or None)
        return self._typed(lambda: archive_records(reply["queries"]))

    # -- budget requests ---------------------------------------------------------------------
    def request_budget(
        self, dataset: str, epsilon: float, *, delta: float | None = None, reason: str
    ) -> BudgetRequest:
        """Ask the service's admins for more budget on a dataset; they approve (perhaps
        another amount) or deny it, with a note. One request per dataset may be pending."""
        body = _without_none({"epsilon": epsilon, "delta": delta, "reason": reason})
        reply = self._call("POST", f"/datasets/{dataset}/budget-requests", body)
        return self._typed(lambda: BudgetRequest.from_reply(reply))

    def budget_requests(self) -> list[BudgetRequest]:
        """Your budget requests, oldest first, with their state and the admin's note."""
        reply = self._call("GET", "/budget-requests")
        return self._typed(lambda: [BudgetRequest.from_reply(r) for r in reply["budget_requests"]])

    # -- SmartNoise-SQL ----------------------------------------------------------------------
    def smartnoise_sql_cost(
        self,
        dataset: str,
        query: str,
        *,
        epsilon: float,
        delta: float | None = None,
        postprocess: bool = True,
    ) -> Estimate:
        """The exact cost and accuracy of a query, and whether it would be a free replay
        (``postprocess`` is part of what makes two requests the same)."""
        body = _without_none(
            {"query": query, "epsilon": epsilon, "delta": delta, "postprocess": postprocess}
        )
        return self._estimate(dataset, "smartnoise-sql", body)

    def smartnoise_sql_response(
        self,
        dataset: str,
        query: str,
        *,
        epsilon: float,
        delta: float | None = None,
        postprocess: bool = True,
        fresh: bool = False,
    ) -> Release:
        """The release: the result, its cost, the budget after it, the query id and, for a
        replay, ``replay_of``.

        An identical earlier request is replayed for free; ``fresh=True`` pays for a new release.
        """
        body = _without_none(
            {
                "query": query,
                "epsilon": epsilon,
                "delta": delta,
                "postprocess": postprocess,
                "fresh": fresh,
            }
        )
        return self._release(dataset, "smartnoise-sql", body)

    def smartnoise_sql(
        self,
        dataset: str,
        query: str,
        *,
        epsilon: float,
        delta: float | None = None,
        postprocess: bool = True,
        fresh: bool = False,
    ) -> pd.DataFrame:
        """Run a query with DP and return the noisy result (its ``attrs`` say what it cost)."""
        return self.smartnoise_sql_response(
            dataset, query, epsilon=epsilon, delta=delta, postprocess=postprocess, fresh=fresh
        ).frame

    # -- OpenDP ------------------------------------------------------------------------------
    def opendp(self, dataset: str) -> OpenDPQueryBuilder:
        """Start an OpenDP query: ``client.opendp("PENGUIN").count().laplace(epsilon=0.5).release()``."""
        return OpenDPQueryBuilder(self, dataset)

    def opendp_cost(self, dataset: str, request: dict[str, Any]) -> Estimate:
        """The cost and accuracy of an OpenDP request body (docs/opendp.md); spends nothing."""
        return self._estimate(dataset, "opendp", request)

    def opendp_response(self, dataset: str, request: dict[str, Any]) -> Release:
        """Run an OpenDP request body; ``"fresh": True`` in it pays for a new release."""
        return self._release(dataset, "opendp", request)

    # -- synthetic data (SmartNoise-Synth) -------------------------------------------------------
    def synth_cost(
        self,
        dataset: str,
        synthesizer: str,
        columns: Sequence[str],
        *,
        epsilon: float,
        delta: float | None = None,
        rows: int = 1000,
        bins: int = 10,
    ) -> Estimate:
        """What synthetic rows would cost, whether it would be a free replay, and each column's
        public domain (``domain_table``); spends nothing."""
        body = synth_body(synthesizer, columns, epsilon=epsilon, delta=delta, rows=rows, bins=bins)
        return self._estimate(dataset, "synth", body)

    def synth_response(
        self,
        dataset: str,
        synthesizer: str,
        columns: Sequence[str],
        *,
        epsilon: float,
        delta: float | None = None,
        rows: int = 1000,
        bins: int = 10,
        fresh: bool = False,
    ) -> Release:
        """The release of synthetic rows: as ``smartnoise_sql_response``, its frame the rows."""
        body = synth_body(
            synthesizer, columns, epsilon=epsilon, delta=delta, rows=rows, bins=bins, fresh=fresh
        )
        return self._release(dataset, "synth", body)

    def synth(
        self,
        dataset: str,
        synthesizer: str,
        columns: Sequence[str],
        *,
        epsilon: float,
        delta: float | None = None,
        rows: int = 1000,
        bins: int = 10,
        fresh: bool = False,
    ) -> pd.DataFrame:
        """``rows`` synthetic rows of ``columns`` from a synthesizer (``"mst"`` or ``"aim"``)
        the server fits with DP; their ``attrs`` say what they cost. Each value is one the
        metadata declares (numbers: within one of ``bins`` equal-width bins)."""
        return self.synth_response(
            dataset,
            synthesizer,
            columns,
            epsilon=epsilon,
            delta=delta,
            rows=rows,
            bins=bins,
            fresh=fresh,
        ).frame

    # -- DP models (DiffPrivLib) --------------------------------------------------------------
    def diffprivlib_cost(
        self,
        dataset: str,
        model: str,
        features: Sequence[str],
        target: str | None = None,
        *,
        epsilon: float,
        scaler: bool = False,
        options: Mapping[str, Any] | None = None,
    ) -> Estimate:
        """What fitting a model would cost (``raw["budget_split"]``: how it is spent);
        spends nothing."""
        body = model_body(model, features, target, epsilon=epsilon, scaler=scaler, options=options)
        return self._estimate(dataset, "diffprivlib", body)

    def diffprivlib_response(
        self,
        dataset: str,
        model: str,
        features: Sequence[str],
        target: str | None = None,
        *,
        epsilon: float,
        scaler: bool = False,
        options: Mapping[str, Any] | None = None,
        fresh: bool = False,
    ) -> ModelRelease:
        """The fitted model with its cost, budget and query id; an identical earlier fit is
        replayed for free, ``fresh=True`` pays for a new one."""
        body = model_body(
            model, features, target, epsilon=epsilon, scaler=scaler, options=options, fresh=fresh
        )
        reply = self._call("POST", f"/datasets/{dataset}/diffprivlib", body)
        return self._typed(lambda: ModelRelease.from_reply(reply, dataset=dataset, request=body))

    def diffprivlib(
        self,
        dataset: str,
        model: str,
        features: Sequence[str],
        target: str | None = None,
        *,
        epsilon: float,
        scaler: bool = False,
        options: Mapping[str, Any] | None = None,
        fresh: bool = False,
    ) -> Any:
        """A model (``logistic_regression`` or ``pca``) fitted with DP on the server, as a
        scikit-learn estimator to use on your own rows; ``scaler=True`` makes it a pipeline
        that standardizes them first. Its ``lomas_release_`` says which query made it and
        what it cost. The server withdrew ``linear_regression``, ``gaussian_nb`` and
        ``k_means``: asking for one raises ``InvalidQuery`` with the reason."""
        return self.diffprivlib_response(
            dataset,
            model,
            features,
            target,
            epsilon=epsilon,
            scaler=scaler,
            options=options,
            fresh=fresh,
        ).model

    # -- transport ---------------------------------------------------------------------------
    def _estimate(self, dataset: str, engine: str, body: dict[str, Any]) -> Estimate:
        reply = self._call("POST", f"/datasets/{dataset}/{engine}/cost", body)
        return self._typed(lambda: Estimate.from_reply(reply, dataset=dataset))

    def _release(self, dataset: str, engine: str, body: dict[str, Any]) -> Release:
        reply = self._call("POST", f"/datasets/{dataset}/{engine}", body)
        return self._typed(lambda: Release.from_reply(reply, dataset=dataset, request=body))


def hub_service_url(env: Mapping[str, str]) -> str:
    """Where a JupyterHub single-user server reaches the lomas service: LOMAS_URL, else the
    Hub's public address with ``services/<LOMAS_SERVICE_NAME or lomas>/``."""
    if env.get("LOMAS_URL"):
        return env["LOMAS_URL"]
    # The Hub's internal API URL (JUPYTERHUB_API_URL) reaches the Hub only, never its
    # services: those are behind the proxy, whose address only the public URL gives.
    public = urlsplit(env.get("JUPYTERHUB_PUBLIC_HUB_URL") or "")
    if not (public.scheme and public.netloc):
        raise ClientUsageError(
            "this JupyterHub does not say where the lomas service is: ask its administrator "
            "to set LOMAS_URL (e.g. https://hub.example.org/services/lomas/) in the Hub's "
            "c.Spawner.environment"
        )
    base = env.get("JUPYTERHUB_BASE_URL") or public.path.removesuffix("hub/") or "/"
    name = env.get("LOMAS_SERVICE_NAME") or "lomas"
    path = "/".join(part for part in (base.strip("/"), "services", name) if part)
    return f"{public.scheme}://{public.netloc}/{path}/"


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    """The body without the fields left to the server (a delta not given, say)."""
    return {key: value for key, value in body.items() if value is not None}
