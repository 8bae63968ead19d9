"""A query the parser cannot read, explained in the product's words.

The parser's own message lists grammar internals ("mismatched input ... expecting {...}"); the
analyst gets instead, in this order:

1. the first construct the SQL subset leaves out, if the text holds one (WITH, UNION, a
   subquery, a window, LIKE, MEDIAN(...), placeholders, ...), with what to write instead;
2. else where the parser stopped, the token quoted and cut short, with its line and column,
   and a hint when a common cause shows: a quote not closed, text in double quotes, no FROM, a
   statement after a ';', a keyword used as a name, an alias without AS, a misspelt keyword.

Only the query's text and the parser's position are read: never data, never metadata.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lomas_server.engines import sql_advice as advice
from lomas_server.engines.snsql_adapter import SyntaxFailure, is_keyword
from lomas_server.engines.sql_advice import DOCS, quote
from lomas_server.engines.sql_size import sql_tokens

# Statements other than SELECT an analyst may try.
_STATEMENTS = {
    "INSERT",
    "UPDATE",
    "DELETE",
    "DROP",
    "CREATE",
    "ALTER",
    "TRUNCATE",
    "MERGE",
    "REPLACE",
    "UPSERT",
    "GRANT",
    "REVOKE",
    "EXPLAIN",
    "DESCRIBE",
    "DESC",
    "SHOW",
    "USE",
    "SET",
    "PRAGMA",
    "CALL",
    "EXEC",
    "EXECUTE",
    "COPY",
    "ATTACH",
    "DETACH",
    "VALUES",
    "TABLE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "VACUUM",
    "ANALYZE",
}
_SET_OPERATIONS = {"UNION", "INTERSECT", "EXCEPT", "MINUS"}
_PATTERN_WORDS = {"LIKE", "ILIKE", "RLIKE", "REGEXP", "GLOB"}
_PATTERN_SYMBOLS = {"~", "~*", "!~"}
_TYPED_LITERALS = {"DATE", "TIMESTAMP", "TIME"}
# Keywords that give a query its shape: out of place, they are misplaced, not misused names.
_STRUCTURE = {
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "HAVING",
    "ORDER",
    "LIMIT",
    "AND",
    "OR",
    "NOT",
    "AS",
    "ON",
    "JOIN",
    "IN",
    "IS",
    "BETWEEN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "DISTINCT",
    "ALL",
    "TOP",
    "ASC",
    "DESC",
    "NULL",
    "TRUE",
    "FALSE",
}
# Keywords a misspelling most likely meant.
_SPELLED = (
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "ORDER",
    "HAVING",
    "LIMIT",
    "BETWEEN",
    "DISTINCT",
    "COUNT",
    "STDDEV",
    "VARIANCE",
    "NULL",
)


@dataclass(frozen=True)
class _Token:
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def word(self) -> str:
        """The token in capitals if it is a plain word, else empty."""
        first = self.text[0]
        return self.text.upper() if first.isalpha() or first == "_" else ""

    @property
    def is_string(self) -> bool:
        return self.text[0] == "'"

    @property
    def is_number(self) -> bool:
        return self.text[0].isdigit() or (self.text[0] == "." and len(self.text) > 1)

    @property
    def is_operand(self) -> bool:
        """Whether the token can be or end a value: a name, a number, a string, a ')'."""
        if self.word:
            return self.word not in _STRUCTURE
        return self.is_number or self.is_string or self.text[0] in '")]`'


def explain(text: str, failure: BaseException) -> str:
    """The refusal of a query the parser could not read, in the product's words."""
    tokens = [_Token(m.group(), m.start()) for m in sql_tokens(text)]
    construct = unsupported_construct(tokens)
    if construct is not None:
        return construct
    if not isinstance(failure, SyntaxFailure) or failure.offset is None:
        # The parser failed without a place (its own defect on odd input).
        return f"the query cannot be read as one SELECT statement; {DOCS} shows what is accepted"
    return _at_position(text, tokens, failure, failure.offset)


def unsupported_construct(tokens: list[_Token]) -> str | None:
    """The first construct of the text the subset leaves out, worded with what to do instead."""
    if not tokens:
        return None
    first = tokens[0].word
    if first == "WITH":
        return advice.WITH
    if first in _STATEMENTS:
        return advice.statement_refusal(first)
    for i, token in enumerate(tokens):
        word = token.word
        before = tokens[i - 1] if i > 0 else None
        after = tokens[i + 1] if i + 1 < len(tokens) else None
        following = after.word if after is not None else ""
        opens = after is not None and after.text == "("
        if word in _SET_OPERATIONS and (
            word in ("UNION", "INTERSECT") or following in ("SELECT", "ALL", "DISTINCT") or opens
        ):
            # UNION and INTERSECT are keywords of the parser: never names, wherever they stand.
            return f"{word} is not supported: {advice.ONE_QUERY}"
        if word == "SELECT" and before is not None and before.text == "(":
            return advice.SUBQUERY
        if word == "JOIN":
            return advice.JOIN
        if word == "OVER":  # a keyword of the parser, never a name
            return advice.WINDOW
        if word == "FILTER" and opens and before is not None and before.text == ")":
            return "FILTER on an aggregate is not supported; put the condition in WHERE"
        if word in _PATTERN_WORDS or (word == "SIMILAR" and following == "TO"):
            return advice.PATTERN
        if token.text in _PATTERN_SYMBOLS and after is not None and after.is_string:
            return advice.PATTERN
        if token.text == "?" or (token.text in ("$", "@") and after is not None):
            return advice.PLACEHOLDER
        if token.text == ":":
            if after is not None and after.text == ":":
                return advice.CAST
            if after is not None and after.word:
                return advice.PLACEHOLDER
        if word in _TYPED_LITERALS and after is not None and after.is_string:
            return advice.TYPED_LITERAL
        if word == "INTERVAL":
            return f"date arithmetic (INTERVAL) is not supported; {advice.COMPARE_DATES}"
        if word in ("OFFSET", "FETCH"):
            return f"{word} is not supported; use LIMIT n or TOP n"
        if word == "COLLATE":
            return f"COLLATE is not supported; {advice.COMPARE_VALUES}"
        if token.text == "||":
            return f"'||' (joining text) is not supported; {advice.COMPARE_VALUES}"
        if word == "CASE":
            return advice.function_refusal("CASE")
        if word in ("ROUND", "TRUNC", "TRUNCATE") and opens and _arguments(tokens, i + 1) == 1:
            # SmartNoise-SQL's parser fails on these without the digits.
            if word == "ROUND":
                return "ROUND needs its number of decimals: write ROUND(x, 0)"
            return advice.function_refusal(word)
        if word and opens and advice.known_function(word):
            return advice.function_refusal(word)
    return None


def _arguments(tokens: list[_Token], open_at: int) -> int:
    """How many arguments the call whose '(' is at ``open_at`` has (0 if it is not closed)."""
    depth, count = 0, 1
    for token in tokens[open_at:]:
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
            if depth == 0:
                return count
        elif token.text == "," and depth == 1:
            count += 1
    return 0


def _at_position(text: str, tokens: list[_Token], failure: SyntaxFailure, offset: int) -> str:
    where = f"line {failure.line}, column {failure.column + 1}"
    before = [t for t in tokens if t.end <= offset]
    covering = next((t for t in tokens if t.start < offset < t.end), None)
    later = [t for t in tokens if t.start >= offset]
    previous = before[-1] if before else None
    if failure.at_end:
        if previous is None:
            return "the query is empty: write one SELECT statement"
        head = f"the query ends too early, after {quote(previous.text)} ({where})"
        hint = _hint_at_end(tokens)
    else:
        if failure.token is None:  # the lexer: show the characters it could not read
            shown = later[0].text if later and later[0].start == offset else text[offset:]
        else:
            shown = failure.token
        head = f"the query cannot be read near {quote(shown)} ({where})"
        hint = _hint(text, tokens, failure, offset, previous, covering, later)
    return f"{head}: {hint}" if hint else f"{head}; {DOCS} shows what is accepted"


def _hint_at_end(tokens: list[_Token]) -> str | None:
    last = tokens[-1].text
    if last[0] in _CLOSING and (len(last) == 1 or last[-1] != _CLOSING[last[0]]):
        return f"a {quote(last[0])} is not closed"
    if not any(t.word == "FROM" for t in tokens):
        return _NO_FROM
    balance = _parentheses(tokens)
    if balance > 0:
        return "a '(' is not closed"
    return None


_NO_FROM = "the query has no FROM; write FROM df after the SELECT list"
# Quoted names as the text's tokens hold them: one left open runs to the end of the text.
_CLOSING = {'"': '"', "[": "]", "`": "`"}


def _hint(
    text: str,
    tokens: list[_Token],
    failure: SyntaxFailure,
    offset: int,
    previous: _Token | None,
    covering: _Token | None,
    later: list[_Token],
) -> str | None:
    if any(t.text == ";" for t in tokens if t.end <= offset):
        return advice.SEVERAL_STATEMENTS
    char = text[offset] if offset < len(text) else ""
    token = later[0] if later and later[0].start == offset else None
    quoting = _quoting_hint(text, failure, offset, char, token, covering)
    if quoting is not None or failure.token is None:
        return quoting or f"the character {quote(char)} has no meaning in a query"
    if tokens[0].word != "SELECT":
        return "did you mean SELECT?" if _misspelt(tokens[0].text) == "SELECT" else _STARTS
    if token is None:
        return None
    after = later[1] if len(later) > 1 else None
    return _token_hint(tokens, offset, token, previous, after)


_STARTS = "a query starts with SELECT"
# Text in quotes that holds clauses: a quote opened by mistake ran on to the next one.
_SWALLOWED = re.compile(r"\b(?:FROM|WHERE|SELECT|GROUP BY)\b", re.IGNORECASE)
_CLAUSES = {"WHERE", "GROUP", "HAVING", "ORDER", "LIMIT"}


def _quoting_hint(
    text: str,
    failure: SyntaxFailure,
    offset: int,
    char: str,
    token: _Token | None,
    covering: _Token | None,
) -> str | None:
    """Quotes not closed, quotes inside text, and the ways of writing values the parser lacks."""
    if char == "'" and failure.token is None:
        if "\\" in text[offset:]:
            return "a quote (') is not closed; a backslash before a quote makes it part of the text"
        return "a quote (') is not closed; text values are written 'like this'"
    if covering is not None and covering.is_string:
        return "a quote inside a text value ('') is not supported"
    if token is not None and token.is_string and _SWALLOWED.search(token.text):
        return "the text in quotes runs on to the next quote: is a quote (') missing or misplaced?"
    if covering is not None and covering.is_number and "e" in covering.text:
        return "write a power of ten with a capital E (1E9), or the number in full"
    closed = token is not None and len(token.text) > 1 and token.text[-1] == '"'
    if char == '"' and not closed:
        return (
            "a double quote is not closed; double quotes name columns, and text values are "
            "written in single quotes ('like this')"
        )
    if "/*" in text[:offset] and "*/" not in text:
        return "a comment (/*) is not closed; end it with */"
    if char in "[`" and failure.token is None:
        return f"a {quote(char)} is not closed"
    return None


def _token_hint(
    tokens: list[_Token],
    offset: int,
    token: _Token,
    previous: _Token | None,
    after: _Token | None,
) -> str | None:
    """A common cause of the parser stopping at ``token``, if one shows."""
    keyword = bool(token.word) and is_keyword(token.text)
    if previous is not None and token.word and token.word == previous.word:
        return f"{token.word} is written twice"
    if keyword and previous is not None and previous.word == "AS":
        if token.word == "FROM" and sum(t.word == "FROM" for t in tokens) == 1:
            return "a name is missing after AS"
        return _keyword_as_name(token)
    if token.text == "(" and previous is not None and previous.word:
        if _misspelt(previous.text) is not None:
            return f"did you mean {_misspelt(previous.text)}?"
        if not is_keyword(previous.text):
            return advice.function_refusal(previous.text)
    if token.word and not keyword and _misspelt(token.text) is not None:
        return f"did you mean {_misspelt(token.text)}?"
    if not any(t.word == "FROM" for t in tokens):
        return _NO_FROM
    balance = _parentheses(tokens)
    if token.text == ")" and balance < 0:
        return "this ')' closes no '('"
    if previous is None:
        return None
    if keyword and token.word not in _STRUCTURE and not previous.is_operand:
        if after is None or after.text != "(":
            return _keyword_as_name(token)
    if previous.word in ("LIMIT", "TOP"):
        return f"{previous.word} takes a whole number of rows"
    if token.is_string and previous.end == offset and len(previous.text) == 1 and previous.word:
        return f"a letter before a quote ({previous.text}'...') is not supported; remove it"
    if token.is_operand and previous.is_operand:
        return _two_operands(tokens, offset, token, previous, after)
    if previous.text == "-" and token.word:
        return "a minus sign goes before numbers only; write 0 - x instead of -x"
    if balance > 0:
        return "a '(' is not closed"
    if token.word == "FROM" and previous.text == ",":
        return "the SELECT list ends with a comma"
    return None


def _two_operands(
    tokens: list[_Token], offset: int, token: _Token, previous: _Token, after: _Token | None
) -> str:
    """Two values in a row: an alias without AS, or a missing operator."""
    following = after.word if after is not None else ""
    index = tokens.index(previous)
    aliased = index > 0 and tokens[index - 1].word == "AS"
    if (
        token.word
        and not aliased
        and (after is None or after.text == "," or following in _CLAUSES | {"FROM"})
    ):
        in_select = not any(t.word == "FROM" for t in tokens if t.end <= offset)
        if in_select or _after_table(tokens, previous):
            return f"write AS before the alias {quote(token.text)}"
    return f"is an operator, a comma or AND missing before {quote(token.text)}?"


def _keyword_as_name(token: _Token) -> str:
    return (
        f"{token.word} is a keyword; choose another name, or write it in double quotes "
        f'("{token.text}")'
    )


def _after_table(tokens: list[_Token], previous: _Token) -> bool:
    """Whether ``previous`` is the table name right after FROM."""
    index = tokens.index(previous)
    return index > 0 and tokens[index - 1].word == "FROM"


def _parentheses(tokens: list[_Token]) -> int:
    return sum(t.text == "(" for t in tokens) - sum(t.text == ")" for t in tokens)


def _misspelt(word: str) -> str | None:
    """The keyword ``word`` is one letter away from (added, left out, changed or swapped)."""
    upper = word.upper()
    if len(upper) < 4 or upper in _SPELLED:
        return None
    for keyword in _SPELLED:
        if _one_edit(upper, keyword):
            return keyword
    return None


def _one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and a[diffs[0]] == b[diffs[1]]
            and a[diffs[1]] == b[diffs[0]]
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))
