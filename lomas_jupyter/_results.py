"""The server's replies as typed values: a release, an estimate, a budget, a dataset, its
metadata, who the caller is, a budget request.

Each keeps the reply as it came in ``raw``, so that a field a newer server adds is never
out of reach. Amounts (``cost``, ``initial``, ...) are dicts with ``epsilon`` and ``delta``,
and ``rho`` beside them on datasets accounted in zero-concentrated DP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lomas_jupyter._uncertainty import half_widths, release_notes, with_uncertainty

Amount = dict[str, float]
# %lomas_datasets: one DatasetInfo.row() per dataset, in this order.
DATASET_COLUMNS = (
    "dataset",
    "epsilon left",
    "delta left",
    "epsilon spent",
    "delta spent",
    "max epsilon per query",
    "max delta per query",
)
# Estimate.accuracy_table(), in this order, then the half-width column named by its confidence.
ESTIMATE_COLUMNS = ("column", "noisy values", "epsilon")
# %lomas_budget_requests: one BudgetRequest.row() per request, in this order.
REQUEST_COLUMNS = ("id", "user", "dataset", "epsilon", "delta", "state", "reason", "asked at")
REQUEST_DECISION = ("granted epsilon", "granted delta", "decided by", "note")
# Metadata.columns, in this order.
METADATA_COLUMNS = ("column", "type", "lower", "upper", "nullable", "categories", "public keys")


def table_frame(table: Mapping[str, Any]) -> pd.DataFrame:
    """A ``{"columns", "data"}`` table from the API as a DataFrame."""
    return pd.DataFrame(table["data"], columns=table["columns"])


def _amount(value: Mapping[str, Any]) -> Amount:
    return {str(name): float(number) for name, number in value.items()}


@dataclass(frozen=True)
class LastQuery:
    """The analyst's last paid query on a dataset, as ``GET /budget`` reports it."""

    query_id: str
    cost: Amount
    queries_left: int | None  # how many more like it fit; None: it was free

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> LastQuery:
        left = reply.get("queries_left")
        return cls(
            str(reply["query_id"]), _amount(reply["cost"]), None if left is None else int(left)
        )


@dataclass(frozen=True)
class Budget:
    """An analyst's budget on one dataset, in (epsilon, delta); ``accounting`` describes the
    dataset's rule (and its native amounts for zCDP). ``last_query`` comes with
    ``Client.budget`` only: a budget inside a release or an estimate has none."""

    dataset: str
    initial: Amount
    spent: Amount
    remaining: Amount
    accounting: dict[str, Any] | None = None
    last_query: LastQuery | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def queries_left(self) -> int | None:
        """How many more queries like the last paid one fit (counted by the server exactly as
        its reservations count); None without a paid query."""
        return self.last_query.queries_left if self.last_query else None

    @property
    def amounts(self) -> dict[str, Amount]:
        return {"initial": self.initial, "spent": self.spent, "remaining": self.remaining}

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any], *, dataset: str) -> Budget:
        last = reply.get("last_query")
        return cls(
            dataset=str(reply.get("dataset") or dataset),
            initial=_amount(reply["initial"]),
            spent=_amount(reply["spent"]),
            remaining=_amount(reply["remaining"]),
            accounting=reply.get("accounting"),
            last_query=LastQuery.from_reply(last) if last else None,
            raw=dict(reply),
        )


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset the analyst may query, from ``Client.datasets``."""

    name: str
    engines: tuple[str, ...]
    budget: Budget
    max_query: Amount  # the most one query may cost
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> DatasetInfo:
        name = str(reply["name"])
        return cls(
            name=name,
            engines=tuple(reply.get("engines", ())),
            budget=Budget.from_reply(reply["budget"], dataset=name),
            max_query=_amount(reply["max_query"]),
            raw=dict(reply),
        )

    def row(self) -> dict[str, Any]:
        """Its row in ``%lomas_datasets`` (columns ``DATASET_COLUMNS``)."""
        remaining, spent = self.budget.remaining, self.budget.spent
        values = (
            self.name,
            remaining["epsilon"],
            remaining["delta"],
            spent["epsilon"],
            spent["delta"],
            self.max_query["epsilon"],
            self.max_query["delta"],
        )
        return dict(zip(DATASET_COLUMNS, values, strict=True))


@dataclass(frozen=True)
class Metadata:
    """A dataset's public metadata: ``columns`` has one row per column (``METADATA_COLUMNS``),
    as ``%lomas_metadata`` shows it; ``options`` the table's settings (``max_ids``,
    ``row_privacy``, ``rows``, ...); ``raw`` the whole document."""

    dataset: str
    columns: pd.DataFrame = field(repr=False, compare=False)
    options: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any], *, dataset: str) -> Metadata:
        rows = [
            (
                str(name),
                spec.get("type"),
                spec.get("lower"),
                spec.get("upper"),
                # The server's defaults for what a column does not say.
                bool(spec.get("nullable", True)),
                spec.get("categories"),
                bool(spec.get("public_keys", False)),
            )
            for name, spec in reply["columns"].items()
        ]
        return cls(
            dataset=dataset,
            columns=pd.DataFrame(rows, columns=list(METADATA_COLUMNS)),
            options={str(k): v for k, v in reply.items() if k != "columns"},
            raw=dict(reply),
        )


@dataclass(frozen=True)
class Estimate:
    """What a query would cost and how accurate it would be; getting it spent nothing.

    ``replay_of`` names an identical earlier release that running the query would return
    for free. ``query`` is the query as the server normalized (SQL) or described (OpenDP) it;
    ``noise`` (OpenDP) the mechanism and budget the server chose."""

    dataset: str
    cost: Amount
    budget: Budget
    fits: bool
    queries_left: int | None  # how many like it fit what is left; None: it would be free
    replay_of: str | None
    accuracy: dict[str, Any]
    query: str | None = None
    noise: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def free(self) -> bool:
        return self.replay_of is not None

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any], *, dataset: str) -> Estimate:
        left = reply.get("queries_left")
        return cls(
            dataset=dataset,
            cost=_amount(reply["cost"]),
            budget=Budget.from_reply(reply["budget"], dataset=dataset),
            fits=bool(reply["fits"]),
            queries_left=None if left is None else int(left),
            replay_of=reply.get("replay_of"),
            accuracy=dict(reply.get("accuracy") or {}),
            query=reply.get("normalized_query", reply.get("query_text")),
            noise=reply.get("noise"),
            raw=dict(reply),
        )

    def accuracy_table(self) -> pd.DataFrame:
        """One row per released column, as ``--estimate`` shows it; always the columns
        ``ESTIMATE_COLUMNS`` and then the interval's half-width, named by its confidence
        (``±95%``), and for a mean the half-width times its group's row count
        (``±95% × rows``: divide by a group's size): how many noisy values make the column,
        and their epsilon where the engine gives it per value (SmartNoise-SQL; empty
        otherwise)."""
        accuracy = self.accuracy
        level = f"±{accuracy['confidence']:.0%}"
        costs = {v["name"]: v.get("epsilon") for v in accuracy["noisy_values"]}
        rows = []
        for column in accuracy["columns"]:
            shares = [costs.get(name) for name in column["noisy_values"]]
            known = bool(shares) and all(share is not None for share in shares)
            epsilon = sum(float(share) for share in shares if share is not None) if known else None
            rows.append(
                (
                    column["column"],
                    len(column["noisy_values"]),
                    epsilon,
                    column["half_width"],
                    column.get("half_width_times_count"),
                )
            )
        # The same columns for every engine and query, so that code reading them and eyes
        # comparing two estimates find each where it was.
        frame = pd.DataFrame(rows, columns=[*ESTIMATE_COLUMNS, level, f"{level} × rows"])
        frame["epsilon"] = frame["epsilon"].astype(float)
        return frame


@dataclass(frozen=True)
class Release:
    """A noisy result and what it cost.

    ``epsilon`` and ``delta`` are the privacy parameters the request asked for (``epsilon``
    is None for a Gaussian or accuracy-targeted OpenDP query); ``cost`` is what this call
    charged, zero for a replay (``replay_of`` then names the release it repeats). The frame's
    ``attrs`` carry the same facts, so they travel with the DataFrame."""

    frame: pd.DataFrame = field(repr=False, compare=False)
    query_id: str
    dataset: str
    cost: Amount
    epsilon: float | None
    delta: float
    replay_of: str | None
    budget: Budget
    accuracy: dict[str, Any] | None = field(default=None, repr=False)
    request: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def df(self) -> pd.DataFrame:
        return self.frame

    @property
    def queries_left(self) -> int | None:
        """How many more queries like this one fit, counted by the server with this one
        spent; None for a replay (it was free)."""
        left = self.raw.get("queries_left")
        return None if left is None else int(left)

    @property
    def is_replay(self) -> bool:
        return self.replay_of is not None

    @classmethod
    def from_reply(
        cls, reply: Mapping[str, Any], *, dataset: str, request: Mapping[str, Any]
    ) -> Release:
        epsilon = request.get("epsilon")
        # The delta the noise used, as given or as the server chose it.
        delta = reply.get("delta_used", request.get("delta"))
        release = cls(
            frame=table_frame(reply["result"]),
            query_id=str(reply["query_id"]),
            dataset=dataset,
            cost=_amount(reply["cost"]),
            epsilon=None if epsilon is None else float(epsilon),
            delta=float(delta or 0.0),
            replay_of=reply.get("replay_of"),
            budget=Budget.from_reply(reply["budget"], dataset=dataset),
            accuracy=reply.get("accuracy"),
            request=dict(request),
            raw=dict(reply),
        )
        release.frame.attrs.update(release.facts())
        return release

    def facts(self) -> dict[str, Any]:
        """What the frame's ``attrs`` hold: what the result is, what it cost and what it is
        worth (``half_width``: per column, one number or one per row; see ``notes``)."""
        accuracy = self.accuracy or {}
        widths = half_widths(self.frame, accuracy)
        return {
            "dataset": self.dataset,
            "query_id": self.query_id,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "cost": dict(self.cost),
            "replay_of": self.replay_of,
            "accuracy": accuracy,
            "confidence": accuracy.get("confidence"),
            "half_width": widths,
            "threshold": accuracy.get("threshold"),
            "clamped": dict(self.raw.get("result", {}).get("clamped") or {}),
            "notes": self.notes(widths),
        }

    def notes(self, widths: dict[str, Any] | None = None) -> list[str]:
        """One line each: hidden groups, values kept in range, means' half-widths."""
        return release_notes(self.frame, self.raw.get("result", {}), self.accuracy, widths=widths)

    def with_uncertainty(self) -> pd.DataFrame:
        """The result with a ``± column`` (the half-width at the stated confidence) after
        each column whose accuracy is known."""
        return with_uncertainty(self.frame, self.frame.attrs.get("half_width") or {})


@dataclass(frozen=True)
class Identity:
    """Who the server takes the caller to be (``GET /me``); ``identity`` says how it knew:
    ``"token"`` (a lomas token) or ``"hub"`` (a JupyterHub token)."""

    user: str
    admin: bool
    identity: str

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> Identity:
        return cls(str(reply["user"]), bool(reply["admin"]), str(reply["identity"]))


@dataclass(frozen=True)
class BudgetRequest:
    """An analyst's request for more budget on a dataset, and the admin's decision: ``state``
    is ``pending``, ``approved`` or ``denied``; ``granted`` what an approval added (an admin
    may grant another amount than ``requested``). Times are the server's ISO 8601 (UTC)."""

    id: str
    user: str
    dataset: str
    requested: Amount
    reason: str
    state: str
    created_at: str
    decided_at: str | None = None
    decided_by: str | None = None
    note: str | None = None
    granted: Amount | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> BudgetRequest:
        granted = reply.get("granted")
        return cls(
            id=str(reply["id"]),
            user=str(reply["user"]),
            dataset=str(reply["dataset"]),
            requested=_amount(reply["requested"]),
            reason=str(reply["reason"]),
            state=str(reply["state"]),
            created_at=str(reply["created_at"]),
            decided_at=reply.get("decided_at"),
            decided_by=reply.get("decided_by"),
            note=reply.get("note"),
            granted=_amount(granted) if granted else None,
            raw=dict(reply),
        )

    def row(self) -> dict[str, Any]:
        """Its row in ``%lomas_budget_requests`` (``REQUEST_COLUMNS``, ``REQUEST_DECISION``)."""
        asked, granted = self.requested, self.granted or {}
        values: tuple[Any, ...] = (
            self.id,
            self.user,
            self.dataset,
            asked["epsilon"],
            asked.get("delta", 0.0),
        )
        values += (self.state, self.reason, self.created_at[:19], granted.get("epsilon"))
        values += (granted.get("delta"), self.decided_by, self.note)
        return dict(zip(REQUEST_COLUMNS + REQUEST_DECISION, values, strict=True))


def requests_frame(requests: list[BudgetRequest]) -> pd.DataFrame:
    """Budget requests as a table, one ``BudgetRequest.row()`` each."""
    return pd.DataFrame([r.row() for r in requests], columns=[*REQUEST_COLUMNS, *REQUEST_DECISION])
