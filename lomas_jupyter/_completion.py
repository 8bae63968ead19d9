"""Tab completion in ``%%lomas_sql`` cells, from the dataset's public metadata.

An IPython matcher, so it works in every front end that asks the kernel (JupyterLab,
Notebook 7, VS Code, the terminal): on the magic's line, dataset names after ``--dataset``;
after FROM, the table names (``df`` and the dataset's
name); inside a quoted value compared with a column, that column's declared categories;
elsewhere, the dataset's column names and the aggregates the SQL guard accepts. Only public
metadata is read (once per dataset, then kept briefly), never data.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lomas_jupyter._client import Client
from lomas_jupyter._errors import LomasError

CELL_MAGIC = "%%lomas_sql"
METADATA_SECONDS = 60.0  # how long a dataset's metadata is reused (an admin may change it)
AGGREGATES = ("COUNT", "SUM", "AVG", "VAR", "STDDEV")
TABLE = "df"
MATCHER = "lomas_jupyter.sql"

_DATASET_OPTION = re.compile(r"(?:--dataset|-d)(?:\s+|=)(\S+)")
_TYPING_DATASET = re.compile(r"(?:--dataset|-d)(?:\s+|=)([A-Za-z0-9_.-]*)$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_AFTER_FROM = re.compile(r"\bFROM\s+([A-Za-z_][A-Za-z0-9_]*)?$", re.IGNORECASE)
# a value being typed in quotes, after `column =`, `<>`, `!=` or inside `column IN (...`
_IN_VALUE = re.compile(
    r"\b([A-Za-z_][A-Za-z0-9_]*)\s*(?:=|<>|!=|\bIN\s*\((?:\s*'[^']*'\s*,)*)\s*'([^']*)$",
    re.IGNORECASE,
)


@dataclass
class SqlCompleter:
    """Completions for the cell being typed; ``connection`` gives the magics' current client
    and default dataset (both may change between calls)."""

    connection: Callable[[], tuple[Client | None, str]]
    _columns: dict[tuple[str, str], tuple[float, list[dict[str, Any]]]] = field(
        default_factory=dict
    )
    _datasets: dict[str, tuple[float, list[str]]] = field(default_factory=dict)

    def complete(self, cell: str, line: int, column: int) -> tuple[str, list[tuple[str, str]]]:
        """(the fragment to replace, [(completion, kind)]) for the cursor at ``line`` and
        ``column`` of ``cell``; no completions outside a ``%%lomas_sql`` cell."""
        lines = cell.split("\n")
        # IPython drops blank lines before a cell magic, so the magic may follow some.
        first = next((i for i, text in enumerate(lines) if text.strip()), None)
        if first is None or not lines[first].lstrip().startswith(CELL_MAGIC):
            return "", []
        if line < first or line >= len(lines):
            return "", []
        client, default = self.connection()
        if line == first:  # the magic's own line: a dataset's name after --dataset
            option = _TYPING_DATASET.search(lines[line][:column])
            if client is None or option is None:
                return "", []
            typed = option.group(1)
            names = self._dataset_names(client)
            return typed, [(n, "dataset") for n in names if _starts(n, typed)]
        chosen = _DATASET_OPTION.search(lines[first])
        dataset = chosen.group(1) if chosen else default
        if client is None or not dataset:
            return "", []
        before = "\n".join([*lines[first + 1 : line], lines[line][:column]])
        value = _IN_VALUE.search(before)
        if value is not None:
            spec = self._column(client, dataset, value.group(1))
            typed = value.group(2)
            categories = [str(c) for c in (spec or {}).get("categories") or []]
            return typed, [(c, "category") for c in categories if c.startswith(typed)]
        word = _WORD.search(before)
        typed = word.group(0) if word else ""
        if _AFTER_FROM.search(before):
            tables = [TABLE, dataset]
            return typed, [(t, "table") for t in tables if _starts(t, typed)]
        if not typed:
            return "", []
        names = [c["name"] for c in self._columns_of(client, dataset)]
        found = [(n, "column") for n in names if _starts(n, typed)]
        found += [(a, "function") for a in AGGREGATES if _starts(a, typed)]
        return typed, found

    def _dataset_names(self, client: Client) -> list[str]:
        cached = self._datasets.get(client.url)
        if cached is not None and time.monotonic() - cached[0] < METADATA_SECONDS:
            return cached[1]
        try:
            names = [info.name for info in client.datasets()]
        except LomasError:
            return []
        self._datasets[client.url] = (time.monotonic(), names)
        return names

    def _columns_of(self, client: Client, dataset: str) -> list[dict[str, Any]]:
        key = (client.url, dataset)
        cached = self._columns.get(key)
        if cached is not None and time.monotonic() - cached[0] < METADATA_SECONDS:
            return cached[1]
        try:
            metadata = client.metadata(dataset)
        except LomasError:
            return []  # not known (yet): no completions, and no error while typing
        columns = [
            {"name": str(name), "categories": spec.get("categories")}
            for name, spec in metadata.raw.get("columns", {}).items()
            if isinstance(spec, dict)
        ]
        self._columns[key] = (time.monotonic(), columns)
        return columns

    def _column(self, client: Client, dataset: str, name: str) -> dict[str, Any] | None:
        lowered = name.lower()
        return next(
            (c for c in self._columns_of(client, dataset) if c["name"].lower() == lowered), None
        )


def _starts(candidate: str, typed: str) -> bool:
    """SQL names ignore letter case: ``spe`` finds ``species``, ``SPE`` too."""
    return candidate.lower().startswith(typed.lower()) and candidate != typed


def install(ipython: Any, completer: SqlCompleter) -> None:
    """Add the matcher to IPython's completer (once per shell)."""
    from IPython.core.completer import (
        CompletionContext,
        SimpleCompletion,
        SimpleMatcherResult,
        context_matcher,
    )

    @context_matcher(identifier=MATCHER)
    def lomas_sql_matcher(context: CompletionContext) -> SimpleMatcherResult:
        typed, found = completer.complete(
            context.full_text, context.cursor_line, context.cursor_position
        )
        completions = [SimpleCompletion(text, type=kind) for text, kind in found]
        # Inside a SQL cell, Python's names are noise: ours replace them when there are any.
        result: SimpleMatcherResult = {"completions": completions, "suppress": bool(found)}
        if found:
            result["matched_fragment"] = typed
        return result

    matchers = ipython.Completer.custom_matchers
    matchers[:] = [m for m in matchers if getattr(m, "matcher_identifier", "") != MATCHER]
    matchers.append(lomas_sql_matcher)
