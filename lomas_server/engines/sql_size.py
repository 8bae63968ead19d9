"""The size of a query's text, checked by one linear scan before the parser sees it.

The parser's time grows fast with nesting (thousands of levels take tens of seconds), so the
limits of limits.py are enforced on the raw text: parentheses and CASE open a level, runs of
NOT or signs count as levels too, and each number and name is short.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from lomas_server.errors import InvalidQuery
from lomas_server.limits import (
    MAX_DEPTH,
    MAX_NAME_LENGTH,
    MAX_NUMBER_LENGTH,
    MAX_QUERY_LENGTH,
    MAX_TOKENS,
)

_UNARY = {"NOT", "-", "+", "~"}
# One token of SQL text: blanks, comments, quoted text and names, numbers, words, symbols.
_TOKEN = re.compile(
    r"""\s+|--[^\n]*|/\*.*?(?:\*/|$)|'(?:[^']|'')*'?|"(?:[^"]|"")*"?|\[[^\]]*\]?|`[^`]*`?"""
    r"""|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|\w+|<>|!=|<=|>=|\|\||.""",
    re.DOTALL,
)


def sql_tokens(text: str) -> Iterator[re.Match[str]]:
    """The words, names, values and symbols of SQL text, blanks and comments left out; an
    unclosed quote runs to the end of the text."""
    for match in _TOKEN.finditer(text):
        token = match.group()
        if not (token[0].isspace() or token.startswith(("--", "/*"))):
            yield match


def check_size(text: str) -> None:
    """Refuse a query too long, too deep or with too many tokens."""
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidQuery(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    depth = run = tokens = 0
    for match in sql_tokens(text):
        token = match.group()
        tokens += 1
        if tokens > MAX_TOKENS:
            raise InvalidQuery(f"the query has more than {MAX_TOKENS} words and symbols")
        upper = token.upper()
        if token == "(" or upper == "CASE":
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidQuery(f"the query is nested more than {MAX_DEPTH} levels deep")
        elif token == ")" or upper == "END":
            depth = max(depth - 1, 0)
        run = run + 1 if upper in _UNARY else 0
        if run > MAX_DEPTH:
            raise InvalidQuery(f"the query repeats NOT or a sign more than {MAX_DEPTH} times")
        if token[0].isdigit() or (token[0] == "." and len(token) > 1):
            if len(token) > MAX_NUMBER_LENGTH:
                raise InvalidQuery(
                    f"number {token[:20]}... is longer than {MAX_NUMBER_LENGTH} characters"
                )
        elif token[0] in '"[`' and len(token) > MAX_NAME_LENGTH + 2:
            raise InvalidQuery(f"a quoted name is longer than {MAX_NAME_LENGTH} characters")
        elif (token[0].isalpha() or token[0] == "_") and len(token) > MAX_NAME_LENGTH:
            raise InvalidQuery(f"a name is longer than {MAX_NAME_LENGTH} characters")
