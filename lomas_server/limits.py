"""What one request may carry: the range of every privacy parameter, and the size of a query.

Outside these ranges a request is refused before any work. A tiny epsilon or rho asks the
engines for noise so large that calibrating it takes minutes (and gives a useless answer), and
a huge one breaks the conversions between privacy measures: nothing useful is lost. A query's
text is measured before the parser sees it, whose time grows fast with nesting. The OpenAPI
document and docs/SECURITY.md state the same numbers; this module is where they are defined.
"""

from __future__ import annotations

MIN_EPSILON = 1e-4
MAX_QUERY_EPSILON = 1e3
MIN_RHO = 1e-8
MAX_RHO = 1e3
# A delta is 0 (pure DP) or in this range: below it the accounting's unit (1e-15) is reached.
MIN_DELTA = 1e-15
MAX_DELTA = 0.1
MIN_CONFIDENCE = 0.5
MAX_CONFIDENCE = 0.9999
MAX_HALF_WIDTH = 1e15

RANGES: dict[str, tuple[float, float]] = {
    "epsilon": (MIN_EPSILON, MAX_QUERY_EPSILON),
    "rho": (MIN_RHO, MAX_RHO),
    "delta": (MIN_DELTA, MAX_DELTA),
    "confidence": (MIN_CONFIDENCE, MAX_CONFIDENCE),
}


def out_of_range(name: str, value: float) -> str | None:
    """Why ``value`` is not an acceptable ``name`` (epsilon, rho, delta, confidence), or None."""
    low, high = RANGES[name]
    if name == "delta":
        if value == 0 or low <= value <= high:
            return None
        return f"'delta' must be 0 or from {low:g} to {high:g}"
    if low <= value <= high:
        return None
    return f"'{name}' must be from {low:g} to {high:g}"


# SQL text (engines/sql_guard.py check_size): measured by one scan before parsing.
MAX_QUERY_LENGTH = 20_000
MAX_TOKENS = 3_000
MAX_DEPTH = 24
MAX_NUMBER_LENGTH = 40
MAX_NAME_LENGTH = 128
