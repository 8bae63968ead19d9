"""The budget display: one bundle that every front-end can show.

``application/vnd.lomas.budget+json`` carries the numbers for the JupyterLab extension;
``text/html`` draws a bar for classic Notebook, VS Code and nbconvert; ``text/plain`` draws one
for terminal IPython. The numbers are the server's, never recomputed here.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MIME_TYPE = "application/vnd.lomas.budget+json"
BAR_WIDTH = 30


@dataclass(frozen=True)
class BudgetDisplay:
    dataset: str
    budget: dict[str, dict[str, float]]  # initial, spent, remaining: {"epsilon", "delta"}
    cost: dict[str, float] | None = None  # of the query this display accompanies
    kind: str = "budget"  # "query", "replay", "estimate" or "budget"
    query_id: str | None = None
    replay_of: str | None = None
    queries_left: int | None = None  # how many more queries like the last one still fit
    note: str | None = None
    # Whose budget on which server: the same dataset name on another server, or another
    # analyst's notebook, is another budget (the extension keeps them apart).
    server: str | None = None
    account: str | None = None  # Client.account: a hash of the token, never the token
    # When it was made (UTC, ISO 8601): the JupyterLab extension marks an output that a newer
    # one for the same dataset has superseded as "as of" rather than current.
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(), compare=False)

    def data(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "kind": self.kind,
            "initial": self.budget["initial"],
            "spent": self.budget["spent"],
            "remaining": self.budget["remaining"],
            "cost": self.cost,
            "query_id": self.query_id,
            "replay_of": self.replay_of,
            "queries_left": self.queries_left,
            "note": self.note,
            "server": self.server,
            "account": self.account,
            "at": self.at,
        }

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {MIME_TYPE: self.data(), "text/html": self.html(), "text/plain": self.text()}

    # -- text --------------------------------------------------------------------------------
    def headline(self) -> str:
        cost = self.cost or {"epsilon": 0.0, "delta": 0.0}
        if self.kind == "replay":
            return f"replay of query {_short(self.replay_of)}: nothing spent"
        if self.kind == "estimate":
            return f"would cost epsilon={_num(cost['epsilon'])}, delta={_num(cost['delta'])}"
        if self.kind == "query":
            return f"query {_short(self.query_id)} cost epsilon={_num(cost['epsilon'])}, delta={_num(cost['delta'])}"
        return "privacy budget"

    def text(self) -> str:
        lines = [f"{self.dataset}: {self.headline()}"]
        for name in ("epsilon", "delta"):
            lines.append(f"  {name:7} {self._text_bar(name)}  {self._numbers(name)}")
        lines.extend(f"  {extra}" for extra in self._extras())
        return "\n".join(lines)

    def _text_bar(self, name: str) -> str:
        spent, pending, _ = self._shares(name)
        full = round(spent * BAR_WIDTH)
        part = round(pending * BAR_WIDTH)
        return "[" + "#" * full + "+" * part + "." * (BAR_WIDTH - full - part) + "]"

    def _numbers(self, name: str) -> str:
        b = self.budget
        text = f"spent {_num(b['spent'][name])} of {_num(b['initial'][name])}, {_num(b['remaining'][name])} left"
        if self.kind == "estimate" and self.cost:
            text += f" (this query: {_num(self.cost[name])})"
        return text

    def _extras(self) -> list[str]:
        extras = []
        if self.queries_left is not None:
            extras.append(f"{self.queries_left} more queries like the last one fit")
        if self.note:
            extras.append(self.note)
        return extras

    def _shares(self, name: str) -> tuple[float, float, float]:
        """(spent, pending cost, free) as shares of the initial budget, for the bars."""
        initial = self.budget["initial"][name]
        if initial <= 0:
            return (0.0, 0.0, 1.0)
        spent = min(1.0, self.budget["spent"][name] / initial)
        pending = 0.0
        if self.kind == "estimate" and self.cost:
            pending = min(1.0 - spent, self.cost[name] / initial)
        return (spent, pending, max(0.0, 1.0 - spent - pending))

    # -- HTML --------------------------------------------------------------------------------
    def html(self) -> str:
        rows = "".join(
            f"<tr><td style='padding-right:8px'>{name}</td><td>{self._html_bar(name)}</td>"
            f"<td style='padding-left:8px'>{html.escape(self._numbers(name))}</td></tr>"
            for name in ("epsilon", "delta")
        )
        extras = "".join(f"<div>{html.escape(extra)}</div>" for extra in self._extras())
        return (
            "<div class='lomas-budget' style='font-family:sans-serif;font-size:12px;margin:4px 0'>"
            f"<div><b>{html.escape(self.dataset)}</b>: {html.escape(self.headline())}</div>"
            f"<table style='border-collapse:collapse'>{rows}</table>{extras}</div>"
        )

    def _html_bar(self, name: str) -> str:
        spent, pending, free = self._shares(name)
        segments = [(spent, "#d9534f"), (pending, "#f0ad4e"), (free, "#5cb85c")]
        inner = "".join(
            f"<div style='width:{share * 100:.2f}%;background:{color};height:100%'></div>"
            for share, color in segments
            if share > 0
        )
        return (
            f"<div style='display:flex;width:200px;height:10px;border:1px solid #999'>{inner}</div>"
        )


def _num(value: float) -> str:
    return f"{value:.6g}"


def _short(query_id: str | None) -> str:
    return (query_id or "?")[:8]
