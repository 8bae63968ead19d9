"""Request bodies: JSON parsed, checked against the API contract, then typed.

Every field's type and range is the contract's (api.yaml, checked by api_contract.py); what
is left here is turning a valid body into a typed request and the rules that tie fields
together. Unknown fields are refused rather than ignored: a typo ("epsilion") must not
silently fall back to a default, and nothing a request adds (bounds, say) can ever reach the
engine.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from lomas_server import api_contract
from lomas_server.errors import InvalidRequest
from lomas_server.noise import Noise

_DUMMY = api_contract.schema("DummyRequest")["properties"]
MAX_SEED: int = _DUMMY["seed"]["maximum"]
DEFAULT_DUMMY_ROWS: int = _DUMMY["rows"]["default"]
# No request needs more than a few levels (an OpenDP filter's list of values is four deep);
# deeper JSON would only cost the validator's stack.
MAX_DEPTH = 32


@dataclass(frozen=True)
class SqlRequest:
    query: str
    epsilon: float
    # None: not given, so the server chooses (0, or the dataset's default where groups are
    # shown above a threshold, which needs delta).
    delta: float | None
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
    if _depth(value) > MAX_DEPTH:
        raise InvalidRequest(
            f"the request body is nested more than {MAX_DEPTH} levels deep", code="invalid_json"
        )
    return value


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in a JSON value (without recursing: it may be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_sql_request(body: dict[str, Any], *, for_release: bool) -> SqlRequest:
    """A query request; a release (not a cost estimate) may also carry postprocess and fresh."""
    api_contract.check("SqlRequest" if for_release else "SqlCostRequest", body)
    return SqlRequest(
        query=body["query"],
        epsilon=float(body["epsilon"]),
        delta=float(body["delta"]) if "delta" in body else None,
        postprocess=body.get("postprocess", True),
        fresh=body.get("fresh", False),
    )


def parse_dummy_request(body: dict[str, Any]) -> DummyRequest:
    api_contract.check("DummyRequest", body)
    seed = body.get("seed")
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    # JSON Schema counts 5.0 as an integer: typed here as the int it stands for.
    return DummyRequest(rows=int(body.get("rows", DEFAULT_DUMMY_ROWS)), seed=int(seed))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


@dataclass(frozen=True)
class OpenDPRequest:
    query: Any  # checked against the metadata by engines.opendp_query
    noise: Noise
    fresh: bool = False
    # False: the server chooses delta where groups are shown above a threshold.
    delta_given: bool = True
    postprocess: bool = True


def parse_opendp_request(body: dict[str, Any], *, for_release: bool) -> OpenDPRequest:
    """An OpenDP query: its description, the mechanism and the budget (or a target accuracy).

    Anything else is refused by name, serialized pipelines and plans included: the server
    builds every measurement itself.
    """
    api_contract.check("OpenDPRequest" if for_release else "OpenDPCostRequest", body)
    mechanism = body.get("mechanism", "laplace")
    name = "epsilon" if mechanism == "laplace" else "rho"
    other = "rho" if mechanism == "laplace" else "epsilon"
    if other in body:
        raise InvalidRequest(f"the {mechanism} mechanism takes '{name}', not '{other}'")
    if (name in body) == ("accuracy" in body):
        raise InvalidRequest(f"give either '{name}' or a target 'accuracy', not both or neither")
    budget = half_width = None
    confidence = 0.95
    if name in body:
        budget = float(body[name])
    else:
        half_width = float(body["accuracy"]["half_width"])
        confidence = float(body["accuracy"].get("confidence", confidence))
    delta = float(body.get("delta", 0.0))
    noise = Noise(mechanism, budget, delta or None, half_width, confidence)
    return OpenDPRequest(
        query=body["query"],
        noise=noise,
        fresh=body.get("fresh", False),
        delta_given="delta" in body,
        postprocess=body.get("postprocess", True),
    )


@dataclass(frozen=True)
class SynthRequest:
    synthesizer: str
    columns: tuple[str, ...]
    epsilon: float
    delta: float | None  # None: not given, so the server chooses
    rows: int
    bins: int
    fresh: bool = False


def parse_synth_request(body: dict[str, Any], *, for_release: bool) -> SynthRequest:
    """A synthetic-data request: the synthesizer by name, the columns, the budget, the rows.

    Anything else is refused by name, pickled or serialized synthesizers included: the server
    builds the synthesizer and its preprocessing itself, from the metadata.
    """
    api_contract.check("SynthRequest" if for_release else "SynthCostRequest", body)
    defaults = api_contract.schema("SynthQuery")["properties"]
    return SynthRequest(
        synthesizer=body["synthesizer"],
        columns=tuple(body["columns"]),
        epsilon=float(body["epsilon"]),
        delta=float(body["delta"]) if "delta" in body else None,
        rows=int(body.get("rows", defaults["rows"]["default"])),
        bins=int(body.get("bins", defaults["bins"]["default"])),
        fresh=body.get("fresh", False),
    )


@dataclass(frozen=True)
class DiffprivlibRequest:
    model: str
    features: tuple[str, ...]
    target: str | None
    epsilon: float
    options: dict[str, Any]
    scaler: bool = False
    fresh: bool = False


def parse_diffprivlib_request(body: dict[str, Any], *, for_release: bool) -> DiffprivlibRequest:
    """A DP model: its name, feature and target columns, the budget and allow-listed options.

    Anything else is refused by name, pickled or serialized pipelines included: the server
    builds the model, and every bound it needs, from the metadata.
    """
    api_contract.check("DiffprivlibRequest" if for_release else "DiffprivlibCostRequest", body)
    options = dict(body.get("options", {}))
    for name in ("max_iter", "n_clusters", "n_components"):
        if name in options:
            options[name] = int(options[name])  # JSON Schema counts 5.0 as an integer
    if "C" in options:
        options["C"] = float(options["C"])
    return DiffprivlibRequest(
        model=body["model"],
        features=tuple(body["features"]),
        target=body.get("target"),
        epsilon=float(body["epsilon"]),
        options=options,
        scaler=body.get("scaler", False),
        fresh=body.get("fresh", False),
    )
