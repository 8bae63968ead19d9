"""The range of every privacy parameter a request may carry.

Outside these ranges a request is refused before any work: a tiny epsilon or rho asks the
engines for noise so large that calibrating it takes minutes (and gives a useless answer),
and a huge one breaks the conversions between privacy measures. Every such value is pointless
for an analysis, so nothing useful is lost. The OpenAPI document and docs/SECURITY.md state
the same ranges; this module is where they are defined.
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
