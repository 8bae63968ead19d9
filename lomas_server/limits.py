"""What one request may carry: the range of every privacy parameter, and the size of a query.

Outside these ranges a request is refused before any work. A tiny epsilon or rho asks the
engines for noise so large that calibrating it takes minutes (and gives a useless answer), and
a huge one breaks the conversions between privacy measures: nothing useful is lost. A query's
text is measured before the parser sees it, whose time grows fast with nesting. The privacy
ranges and the query's length are the API contract's (api.yaml), read from it here for the
code that needs them as numbers; docs/SECURITY.md explains them.
"""

from __future__ import annotations

from lomas_server import api_contract


def _bounds(name: str) -> tuple[float, float]:
    schema = api_contract.schema(name)
    low = schema["minimum"] if "minimum" in schema else schema["exclusiveMinimum"]
    return float(low), float(schema["maximum"])


MIN_EPSILON, MAX_QUERY_EPSILON = _bounds("Epsilon")
MIN_RHO, MAX_RHO = _bounds("Rho")
# A delta is 0 (pure DP) or in this range: below it the accounting's unit (1e-15) is reached.
MIN_DELTA, MAX_DELTA = _bounds("DeltaRange")
MIN_CONFIDENCE, MAX_CONFIDENCE = _bounds("Confidence")
MAX_HALF_WIDTH = _bounds("HalfWidth")[1]


# The delta a thresholded query gets when the analyst gives none. A group whose key is one
# person's passes the threshold with probability about delta, so over the hundreds of unique
# keys a column may hold, 1e-7 keeps that chance negligible (1e-4 showed a unique name in
# one query out of ten on a dataset of 1,000 rows); the threshold grows only with log(1/delta).
DEFAULT_DELTA = 1e-7

# SQL text (engines/sql_size.py check_size): measured by one scan before parsing.
MAX_QUERY_LENGTH: int = api_contract.schema("SqlText")["maxLength"]
MAX_TOKENS = 3_000
MAX_DEPTH = 24
MAX_NUMBER_LENGTH = 40
MAX_NAME_LENGTH = 128
