"""Request bodies: parsed, type-checked and range-checked before any use case sees them.

Unknown fields are refused rather than ignored: a typo ("epsilion") must not silently fall back
to a default, and nothing a request adds (bounds, say) can ever reach the engine.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass
from typing import Any

from lomas_server.errors import InvalidRequest
from lomas_server.limits import MAX_HALF_WIDTH, MAX_QUERY_LENGTH, out_of_range
from lomas_server.noise import Noise

MAX_SEED = 2**32 - 1
DEFAULT_DUMMY_ROWS = 100


@dataclass(frozen=True)
class SqlRequest:
    query: str
    epsilon: float
    delta: float
    postprocess: bool = True
    fresh: bool = False


@dataclass(frozen=True)
class DummyRequest:
    rows: int
    seed: int


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise InvalidRequest("the request needs a JSON object body", code="invalid_json")
    # The parser's own messages name Python internals: each failure is worded here instead.
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InvalidRequest("the request body is not UTF-8 text", code="invalid_json") from err
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as err:
        raise InvalidRequest("the request body is nested too deeply", code="invalid_json") from err
    except json.JSONDecodeError as err:
        raise InvalidRequest(
            f"the request body is not valid JSON (line {err.lineno}, column {err.colno})",
            code="invalid_json",
        ) from err
    except ValueError as err:  # NaN or Infinity, or a number with thousands of digits
        raise InvalidRequest(
            "the request body holds a number JSON does not allow (NaN, Infinity) or one with "
            "too many digits",
            code="invalid_json",
        ) from err
    try:
        # A lone surrogate (an escape such as "\ud800") is no text any engine can store.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidRequest(
            "the request body holds a string that is not valid Unicode (a lone surrogate)",
            code="invalid_json",
        ) from err
    if not isinstance(value, dict):
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")
    return value


def parse_sql_request(body: dict[str, Any], *, for_release: bool) -> SqlRequest:
    """A query request; a release (not a cost estimate) may also carry postprocess and fresh."""
    allowed = {"query", "epsilon", "delta"} | ({"postprocess", "fresh"} if for_release else set())
    _only(body, allowed)
    query = _required(body, "query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("'query' must be a non-empty string holding one SELECT statement")
    if len(query) > MAX_QUERY_LENGTH:
        raise InvalidRequest(f"'query' is longer than {MAX_QUERY_LENGTH} characters")
    epsilon = _in_range(body, "epsilon")
    delta = _in_range(body, "delta", default=0.0)
    flags = {
        name: body.get(name, default) for name, default in (("postprocess", True), ("fresh", False))
    }
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise InvalidRequest(f"'{name}' must be true or false")
    return SqlRequest(query=query, epsilon=epsilon, delta=delta, **flags)


def parse_dummy_request(body: dict[str, Any]) -> DummyRequest:
    _only(body, {"rows", "seed"})
    rows = body.get("rows", DEFAULT_DUMMY_ROWS)
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise InvalidRequest("'rows' must be a whole number, 0 or more")
    seed = body.get("seed")
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidRequest(f"'seed' must be a whole number from 0 to {MAX_SEED}")
    return DummyRequest(rows=rows, seed=seed)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(
            f"unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(sorted(allowed))}"
        )


def _required(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise InvalidRequest(f"missing field '{name}'")
    return body[name]


def _in_range(body: dict[str, Any], name: str, *, default: float | None = None) -> float:
    """A privacy parameter, within its documented range (limits.py)."""
    value = _number(body, name, default=default)
    problem = out_of_range(name, value)
    if problem is not None:
        raise InvalidRequest(problem)
    return value


def _number(body: dict[str, Any], name: str, *, default: float | None = None) -> float:
    value = body.get(name, default) if default is not None else _required(body, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"'{name}' must be a number")
    try:
        value = float(value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise InvalidRequest(f"'{name}' must be a finite number")
    return value


@dataclass(frozen=True)
class OpenDPRequest:
    query: Any  # checked against the metadata by engines.opendp_query
    noise: Noise
    fresh: bool = False


def parse_opendp_request(body: dict[str, Any], *, for_release: bool) -> OpenDPRequest:
    """An OpenDP query: its description, the mechanism and the budget (or a target accuracy).

    Anything else is refused by name, serialized pipelines and plans included: the server
    builds every measurement itself.
    """
    allowed = {"query", "mechanism", "epsilon", "rho", "delta", "accuracy"} | (
        {"fresh"} if for_release else set()
    )
    _only(body, allowed)
    query = _required(body, "query")
    mechanism = body.get("mechanism", "laplace")
    if mechanism not in ("laplace", "gaussian"):
        raise InvalidRequest("'mechanism' is 'laplace' (with epsilon) or 'gaussian' (with rho)")
    name = "epsilon" if mechanism == "laplace" else "rho"
    other = "rho" if mechanism == "laplace" else "epsilon"
    if other in body:
        raise InvalidRequest(f"the {mechanism} mechanism takes '{name}', not '{other}'")
    if (name in body) == ("accuracy" in body):
        raise InvalidRequest(f"give either '{name}' or a target 'accuracy', not both or neither")
    budget = half_width = None
    confidence = 0.95
    if name in body:
        budget = _in_range(body, name)
    else:
        accuracy = body["accuracy"]
        if not isinstance(accuracy, dict):
            raise InvalidRequest('\'accuracy\' is {"half_width": W, "confidence": 0.95}')
        _only(accuracy, {"half_width", "confidence"})
        half_width = _number(accuracy, "half_width")
        if not 0 < half_width <= MAX_HALF_WIDTH:
            raise InvalidRequest(f"'half_width' must be above 0 and at most {MAX_HALF_WIDTH:g}")
        confidence = _in_range(accuracy, "confidence", default=0.95)
    delta = _in_range(body, "delta", default=0.0)
    fresh = body.get("fresh", False)
    if not isinstance(fresh, bool):
        raise InvalidRequest("'fresh' must be true or false")
    noise = Noise(mechanism, budget, delta or None, half_width, confidence)
    return OpenDPRequest(query=query, noise=noise, fresh=fresh)
