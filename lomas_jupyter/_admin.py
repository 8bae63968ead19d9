"""Administering the lomas service from Python: ``AdminClient``, over the server's /admin API.

For an admin of the service (a user with the admin flag; under JupyterHub, a member of the
service's admin group or role): users, datasets, grants, the archive and budget requests.
It connects as ``Client`` does (``AdminClient.discover()``) and sends through a ``Client``,
so that errors, timeouts and the token's origin are worded the same. Listings come back as
DataFrames, to be read in a notebook (one row per record); a single record (a user, a
dataset, a decided budget request) comes back typed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pandas as pd
import yaml

from lomas_jupyter._archive import archive_records, history_frame
from lomas_jupyter._client import DEMO_ADMIN_CONNECTION, Client, _without_none
from lomas_jupyter._errors import ClientUsageError, Forbidden
from lomas_jupyter._results import Amount, BudgetRequest, Identity, _amount, requests_frame

# (epsilon, delta), or {"epsilon": .., "delta": ..} as the API has it.
Limit = tuple[float, float] | Mapping[str, float]
USER_COLUMNS = ("name", "admin", "may_query", "created_at")
DATASET_COLUMNS = ("name", "source", "accounting", "max_query", "cap", "spent", "created_at")
BUDGET_COLUMNS = ("dataset", "initial", "spent", "remaining")
EPSILON_DELTA = ("epsilon", "delta")
T = TypeVar("T")


@dataclass(frozen=True)
class AdminUser:
    """A user of the service; ``token`` only in the reply that created it (token identity)."""

    name: str
    admin: bool
    may_query: bool
    created_at: str | None = None
    token: str | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> AdminUser:
        return cls(
            name=str(reply["name"]),
            admin=bool(reply["admin"]),
            may_query=bool(reply["may_query"]),
            created_at=reply.get("created_at"),
            token=reply.get("token"),
            raw={k: v for k, v in reply.items() if k != "token"},
        )


@dataclass(frozen=True)
class AdminDataset:
    """A dataset as its admin sees it: where its rows are (credentials masked), its rule,
    its per-query maximum and dataset-wide cap (None: the server's default, no cap), and
    what all users together have spent on it."""

    name: str
    source: dict[str, Any]
    accounting: dict[str, Any]
    max_query: Amount | None
    cap: Amount | None
    spent: Amount
    created_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> AdminDataset:
        max_query, cap = reply.get("max_query"), reply.get("cap")
        return cls(
            name=str(reply["name"]),
            source=dict(reply["source"]),
            accounting=dict(reply["accounting"]),
            max_query=_amount(max_query) if max_query else None,
            cap=_amount(cap) if cap else None,
            spent=_amount(reply["spent"]),
            created_at=reply.get("created_at"),
            raw=dict(reply),
        )


class AdminClient:
    """An admin's connection to a lomas service (``with AdminClient(...) as admin:``).

    ``client`` is the ``Client`` it sends through: the same account's analyst side. A call
    by an account that is no admin raises ``Forbidden``."""

    def __init__(self, url: str, token: str, **kwargs: Any) -> None:
        self.client = Client(url, token, **kwargs)

    @classmethod
    def around(cls, client: Client) -> AdminClient:
        """An admin client sending through ``client`` (and closing it when closed)."""
        admin = cls.__new__(cls)
        admin.client = client
        return admin

    @classmethod
    def discover(cls, **kwargs: Any) -> AdminClient:
        """Connect as ``Client.discover`` does: LOMAS_URL and LOMAS_TOKEN, LOMAS_CONNECTION_FILE,
        the JupyterHub token, or the demo's admin, lomas-demo/admin-connection.json."""
        kwargs.setdefault("demo_file", DEMO_ADMIN_CONNECTION)
        return cls.around(Client.discover(**kwargs))

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> AdminClient:
        return cls.around(Client.from_file(path, **kwargs))

    @classmethod
    def from_env(cls, **kwargs: Any) -> AdminClient:
        return cls.around(Client.from_env(**kwargs))

    @property
    def url(self) -> str:
        return self.client.url

    def __repr__(self) -> str:
        who = f" user={self.client.user!r}" if self.client.user else ""
        return f"<AdminClient {self.url}{who}>"

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def me(self) -> Identity:
        return self.client.me()

    # -- users -------------------------------------------------------------------------------
    def users(self) -> pd.DataFrame:
        """Every user: whether an admin, whether allowed to query, since when."""
        reply = self._call("GET", "/users")
        users = self._typed(lambda: [AdminUser.from_reply(u) for u in reply["users"]])
        return pd.DataFrame([_fields(u, USER_COLUMNS) for u in users], columns=list(USER_COLUMNS))

    def add_user(self, name: str, admin: bool = False) -> str | None:
        """Add a user; their token, shown this once (only its hash is kept), or None where
        users sign in through JupyterHub and have none."""
        reply = self._call("POST", "/users", {"name": name, "admin": admin})
        return self._typed(lambda: AdminUser.from_reply(reply)).token

    def rotate_token(self, name: str) -> str:
        """A new token for a user; the old one stops working (token identity only)."""
        reply = self._call("POST", f"/users/{name}/token")
        return self._typed(lambda: str(reply["token"]))

    def block(self, name: str) -> AdminUser:
        """Refuse the user's queries from now on (what they spent stays spent)."""
        return self._set_may_query(name, False)

    def unblock(self, name: str) -> AdminUser:
        return self._set_may_query(name, True)

    def budgets(self, user: str) -> pd.DataFrame:
        """A user's budget on each granted dataset: initial, spent and remaining, as
        ``epsilon`` and ``delta`` columns of each."""
        reply = self._call("GET", f"/users/{user}/budgets")

        def rows() -> list[dict[str, Any]]:
            return [
                {"dataset": b["dataset"]}
                | {
                    f"{part} {n}": float(b[part][n])
                    for part in BUDGET_COLUMNS[1:]
                    for n in EPSILON_DELTA
                }
                for b in reply["budgets"]
            ]

        columns = ["dataset"] + [f"{p} {n}" for p in BUDGET_COLUMNS[1:] for n in EPSILON_DELTA]
        return pd.DataFrame(self._typed(rows), columns=columns)

    def queries(self, user: str, dataset: str | None = None) -> pd.DataFrame:
        """A user's archive, oldest first, as ``%lomas_history`` shows one's own."""
        params = {"dataset": dataset} if dataset else None
        reply = self._call("GET", f"/users/{user}/queries", params=params)
        return history_frame(self._typed(lambda: archive_records(reply["queries"])))

    def grant(self, user: str, dataset: str, epsilon: float, delta: float = 0.0) -> Amount:
        """Set a user's initial budget on a dataset (what they spent stays spent); the
        budget as the server now holds it."""
        body = {"epsilon": epsilon, "delta": delta}
        reply = self._call("PUT", f"/users/{user}/grants/{dataset}", body)
        return self._typed(lambda: _amount(reply["initial"]))

    # -- datasets ----------------------------------------------------------------------------
    def datasets(self) -> pd.DataFrame:
        """Every dataset: its source, rule, limits and what all users spent on it."""
        reply = self._call("GET", "/datasets")
        found = self._typed(lambda: [AdminDataset.from_reply(d) for d in reply["datasets"]])
        rows = [_fields(d, DATASET_COLUMNS) for d in found]
        return pd.DataFrame(rows, columns=list(DATASET_COLUMNS))

    def add_dataset(
        self,
        name: str,
        location: str | Path,
        metadata: Mapping[str, Any] | str | Path,
        **options: Any,
    ) -> AdminDataset:
        """Register a dataset: ``location`` as the server reads it (a path on the server, an
        s3://, https:// or postgresql:// URL), ``metadata`` a dict or a YAML file read here.
        ``options``: format, engine, accounting, conversion_delta, max_query and cap (each
        (epsilon, delta) or a dict), check."""
        body: dict[str, Any] = {"name": name, "location": str(location)}
        body["metadata"] = _metadata(metadata)
        for limit in ("max_query", "cap"):
            if options.get(limit) is not None:
                options[limit] = _limit(options[limit])
        reply = self._call("POST", "/datasets", body | _without_none(options))
        return self._typed(lambda: AdminDataset.from_reply(reply))

    def set_limits(
        self, dataset: str, max_query: Limit | None = None, cap: Limit | None = None
    ) -> AdminDataset:
        """Set both limits of a dataset: the most one query may cost (None: the server's
        default) and what all users together may spend (None: no cap)."""
        body = {
            "max_query": None if max_query is None else _limit(max_query),
            "cap": None if cap is None else _limit(cap),
        }
        reply = self._call("PUT", f"/datasets/{dataset}/limits", body)
        return self._typed(lambda: AdminDataset.from_reply(reply))

    # -- budget requests ---------------------------------------------------------------------
    def budget_requests(
        self, state: str | None = "pending", user: str | None = None, dataset: str | None = None
    ) -> pd.DataFrame:
        """Analysts' budget requests, oldest first (``state=None``: whatever their state);
        the ``id`` column is what ``approve`` and ``deny`` take."""
        params = _without_none({"state": state, "user": user, "dataset": dataset})
        reply = self._call("GET", "/budget-requests", params=params or None)
        found = self._typed(lambda: [BudgetRequest.from_reply(r) for r in reply["budget_requests"]])
        return requests_frame(found)

    def approve(
        self,
        request_id: str,
        epsilon: float | None = None,
        delta: float | None = None,
        note: str | None = None,
    ) -> BudgetRequest:
        """Grant a pending request: what it asked for, or ``epsilon``/``delta`` instead.
        The user's grant on the dataset grows by that much."""
        body = _without_none({"epsilon": epsilon, "delta": delta, "note": note})
        return self._decide(request_id, "approve", body)

    def deny(self, request_id: str, note: str) -> BudgetRequest:
        """Refuse a pending request; the note (required) tells the analyst why."""
        return self._decide(request_id, "deny", {"note": note})

    # -- transport ---------------------------------------------------------------------------
    def _decide(self, request_id: str, decision: str, body: dict[str, Any]) -> BudgetRequest:
        reply = self._call("POST", f"/budget-requests/{request_id}/{decision}", body)
        return self._typed(lambda: BudgetRequest.from_reply(reply))

    def _set_may_query(self, name: str, may_query: bool) -> AdminUser:
        reply = self._call("PATCH", f"/users/{name}", {"may_query": may_query})
        return self._typed(lambda: AdminUser.from_reply(reply))

    def _typed(self, build: Callable[[], T]) -> T:
        return self.client._typed(build)

    def _call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        try:
            return self.client._call(method, "/admin" + path, body, params)
        except Forbidden as err:
            if err.code != "forbidden":
                raise
            # The server's words are for any HTTP client; here it is this account that is not
            # an admin, and the fix is another account (or the admin flag on this one).
            who = self.client.user or "this account"
            raise Forbidden(
                f"this needs an admin of the lomas service at {self.url}: {who} is not one",
                code=err.code,
                status=err.status,
                reply=err.reply,
            ) from err


def _fields(record: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(record, name) for name in names}


def _limit(value: Limit) -> dict[str, float]:
    if isinstance(value, Mapping):
        return {str(k): float(v) for k, v in value.items()}
    epsilon, delta = value
    return {"epsilon": float(epsilon), "delta": float(delta)}


def _metadata(metadata: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """The metadata document: as given, or read from a YAML (or JSON) file on this machine."""
    if isinstance(metadata, Mapping):
        return dict(metadata)
    path = Path(os.path.expanduser(metadata))
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        # YAML's messages run over several lines; an error here is one.
        reason = " ".join(str(err).split())
        raise ClientUsageError(f"cannot read metadata file {path}: {reason}") from None
    if not isinstance(document, dict):
        raise ClientUsageError(f"metadata file {path} does not hold a YAML mapping")
    return document
