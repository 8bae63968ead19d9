"""Parse each of SmartNoise-SQL's XPath selectors once, instead of at every use.

SmartNoise-SQL finds nodes of a query's syntax tree with XPath selectors such as
``//NamedExpression[@name='n']``, and parses the selector text with ANTLR every time: about a
quarter of the time it spends rewriting and executing a small query. A parsed selector is
never changed by evaluating it (evaluation only builds new result lists), so the parse of
each text is kept and reused. A selector that fails to parse is not remembered.
"""

from __future__ import annotations

from typing import Any

from lomas_server.engines.memo import BoundedMemo
from lomas_server.engines.snsql_adapter import XPath

MAX_ENTRIES = 4096
_parsed: BoundedMemo[str, Any] = BoundedMemo(MAX_ENTRIES)
_installed = False


def _remembering(parse: Any) -> Any:
    def remembered(self: Any, statement: str) -> Any:
        known = _parsed.get(statement)
        if known is not None:
            return known
        result = parse(self, statement)
        _parsed.put(statement, result)
        return result

    remembered.__wrapped__ = parse  # type: ignore[attr-defined]
    return remembered


def remember_xpaths() -> None:
    """Install the memo on SmartNoise-SQL's XPath parser (once per process)."""
    global _installed
    if _installed:
        return
    XPath.parse = _remembering(XPath.parse)
    _installed = True


def forget_xpaths() -> None:
    """Undo ``remember_xpaths`` (for measurements of SmartNoise-SQL on its own)."""
    global _installed
    if not _installed:
        return
    XPath.parse = XPath.parse.__wrapped__
    _parsed.clear()
    _installed = False
