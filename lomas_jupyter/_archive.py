"""The analyst's archive as typed records: ``Client.queries`` and ``%lomas_history``.

The server keeps one entry per paid release (a replay adds none). Which entry a rerun would
replay is worked out here from the requests, as the server matches them: the same dataset,
engine, query (SQL after parsing, OpenDP as its canonical document) and noise parameters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from lomas_jupyter._errors import ClientUsageError
from lomas_jupyter._results import Amount, _amount, table_frame

# %lomas_history: one QueryRecord.row() per archived query, in this order.
HISTORY_COLUMNS = (
    "at",
    "query_id",
    "dataset",
    "engine",
    "query",
    "parameters",
    "cost epsilon",
    "cost delta",
    "status",
    "replay",
)
ENGINES = {
    "smartnoise_sql": "SQL",
    "opendp": "OpenDP",
    "smartnoise_synth": "Synth",
    "diffprivlib": "DiffPrivLib",
}
_LINE_BREAKS = re.compile(r"\s*\n\s*")


@dataclass(frozen=True)
class QueryRecord:
    """One archived query.

    ``query`` is the SQL as sent, or the one-line description of an OpenDP query, synthetic
    rows or a model (its document is in ``opendp``, or ``raw["synth"]``,
    ``raw["diffprivlib"]``); ``epsilon``, ``rho`` and ``delta`` are what the request asked
    for, ``cost`` what it was charged. ``created_at`` and ``finished_at`` are in UTC.
    ``result`` is the released table (synthetic rows included); a DP model's release is in
    ``model`` instead, its numbers as the server sent them (``estimator()`` rebuilds it).
    ``replayable`` is true for the release an identical request now replays for free;
    ``repeats`` names that release on a later, paid (``fresh``) release of the same request.
    """

    query_id: str
    dataset: str
    engine: str
    query: str | None
    epsilon: float | None
    delta: float
    rho: float | None
    cost: Amount
    status: str
    created_at: datetime
    finished_at: datetime | None
    postprocess: bool | None = None
    mechanism: str | None = None  # OpenDP only: laplace or gaussian
    normalized_query: str | None = None
    opendp: dict[str, Any] | None = field(default=None, repr=False)
    result: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    model: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    replayable: bool = False
    repeats: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> QueryRecord:
        finished = reply.get("finished_at")
        result = reply.get("result")
        opendp = reply.get("opendp")
        # A table has columns and rows; a fitted model (DiffPrivLib) has parameters.
        table = result if result and "data" in result else None
        model = result if result and "parameters" in result else None
        return cls(
            query_id=str(reply["query_id"]),
            dataset=str(reply["dataset"]),
            engine=str(reply["engine"]),
            query=reply.get("query"),
            epsilon=_number(reply.get("epsilon")),
            delta=float(reply.get("delta") or 0.0),
            rho=_number(reply.get("rho")),
            cost=_amount(reply.get("cost") or {"epsilon": 0.0, "delta": 0.0}),
            status=str(reply["status"]),
            created_at=_utc(reply["created_at"]),
            finished_at=_utc(finished) if finished else None,
            postprocess=reply.get("postprocess"),
            mechanism=reply.get("mechanism"),
            normalized_query=reply.get("normalized_query"),
            opendp=dict(opendp) if opendp is not None else None,
            result=table_frame(table) if table else None,
            model=dict(model) if model else None,
            raw=dict(reply),
        )

    @property
    def request_key(self) -> tuple[Any, ...]:
        """Equal for requests that the server takes as identical (a rerun replays)."""
        query: str | None = self.normalized_query or self.query
        documents = [self.opendp, self.raw.get("synth"), self.raw.get("diffprivlib")]
        document = next((d for d in documents if d is not None), None)
        if document is not None:
            query = json.dumps(document, sort_keys=True)
        return (
            self.dataset,
            self.engine,
            query,
            self.mechanism,
            self.epsilon,
            self.rho,
            self.delta,
            self.postprocess,
        )

    def row(self) -> dict[str, Any]:
        """Its row in ``%lomas_history`` (columns ``HISTORY_COLUMNS``): the time in the
        kernel's local time to the second, the query on one line, the noise asked for."""
        values = (
            self.created_at.astimezone().replace(tzinfo=None, microsecond=0),
            self.query_id[:8],
            self.dataset,
            ENGINES.get(self.engine, self.engine),
            _LINE_BREAKS.sub(" ", (self.query or "").strip()),
            self.parameters(),
            self.cost.get("epsilon", 0.0),
            self.cost.get("delta", 0.0),
            self.status,
            self._replay_mark(),
        )
        return dict(zip(HISTORY_COLUMNS, values, strict=True))

    def estimator(self) -> Any:
        """The archived model as a scikit-learn estimator (as ``Client.diffprivlib`` returns
        it): an earlier fit, used again without paying for it again."""
        from lomas_jupyter._models import estimator

        if self.model is None:
            raise ClientUsageError(f"query {self.query_id[:8]} released no model")
        return estimator(self.model)

    def parameters(self) -> str:
        """The noise the request asked for, e.g. ``epsilon=0.5, delta=1e-06``."""
        parts = []
        if self.rho is not None:
            parts.append(f"rho={self.rho:g}")
        elif self.epsilon is not None:
            parts.append(f"epsilon={self.epsilon:g}")
        if self.delta:
            parts.append(f"delta={self.delta:g}")
        if self.postprocess is False:
            parts.append("no postprocess")
        return ", ".join(parts)

    def _replay_mark(self) -> str:
        if self.repeats:
            return f"fresh repeat of {self.repeats[:8]}"
        return "free to rerun" if self.replayable else ""


def archive_records(replies: Iterable[Mapping[str, Any]]) -> list[QueryRecord]:
    """The archive's entries in the server's order (oldest first, as it looks for a release
    to replay), each marked as the server would replay it: the first completed release of a
    request is what its reruns return."""
    records = [QueryRecord.from_reply(reply) for reply in replies]
    first: dict[tuple[Any, ...], str] = {}
    marked = []
    for record in records:
        if record.status != "done":
            marked.append(record)
            continue
        earlier = first.setdefault(record.request_key, record.query_id)
        if earlier == record.query_id:
            marked.append(replace(record, replayable=True))
        else:
            marked.append(replace(record, repeats=earlier))
    return marked


def history_frame(records: Iterable[QueryRecord]) -> pd.DataFrame:
    """What ``%lomas_history`` shows: one row per record."""
    return pd.DataFrame([r.row() for r in records], columns=list(HISTORY_COLUMNS))


def _utc(text: Any) -> datetime:
    moment = datetime.fromisoformat(str(text))
    # The server writes UTC; a time without its zone (an imported archive) is taken as such.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
