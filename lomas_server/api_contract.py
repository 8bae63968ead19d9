"""The API contract: ``api.yaml``, loaded once, and requests checked against it.

The document is the one description of the API: the server serves it, validates every
request body against the operation's schema here, and reads its privacy ranges from it
(limits.py). A violation is worded by this module from the schema itself (the field, what it
must be), never with the validator's own text, and names one problem: the first unknown or
missing field, else the first wrong value.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from lomas_server.errors import InvalidQuery, InvalidRequest, ServiceError

DOCUMENT_FILE = Path(__file__).with_name("api.yaml")
_URI = "urn:lomas:api"
_ERROR_CLASSES: dict[str, type[ServiceError]] = {
    "invalid_request": InvalidRequest,
    "invalid_query": InvalidQuery,
}
# Unknown and missing fields are named before wrong values: a typo explains what follows.
# A schema's ``x-error`` words a wrong kind or form of value; a value past a limit is worded
# with the limit itself.
_MEASURED = {
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "maxLength",
    "maxItems",
}
# Violations worded from the schema's own keyword values.
_SIMPLE = {
    "maxLength": "is longer than {maxLength} characters",
    "minLength": "must not be empty",
    "maxItems": "takes at most {maxItems} entries",
    "minItems": "takes at least {minItems} entries",
    "pattern": "is not in the accepted form",
}
_FIRST = {"additionalProperties": 0, "unevaluatedProperties": 0, "required": 1}


@functools.cache
def document_text() -> str:
    return DOCUMENT_FILE.read_text(encoding="utf-8")


@functools.cache
def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(document_text())
    return loaded


def document() -> dict[str, Any]:
    """A fresh copy of the document, for a caller that changes it (the served ``servers``)."""
    copied: dict[str, Any] = json.loads(json.dumps(_document()))
    return copied


def schema(name: str) -> dict[str, Any]:
    """A schema of ``components/schemas`` (read-only)."""
    found: dict[str, Any] = _document()["components"]["schemas"][name]
    return found


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every (path, method, operation) of the document."""
    for path, item in _document()["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation


def request_schema_name(path: str, method: str) -> str | None:
    """The name of the schema an operation's JSON body must follow, if it takes one."""
    operation = _document()["paths"][path][method]
    body = operation.get("requestBody")
    if body is None:
        return None
    ref: str = body["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[1]


@functools.cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(_document(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_URI, resource)
    return registry


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """A validator for the schema ``name`` (a reference, so ``$ref``s inside resolve)."""
    return Draft202012Validator(
        {"$ref": f"{_URI}#/components/schemas/{name}"}, registry=_registry()
    )


def check(name: str, body: Any) -> None:
    """Raise the worded error for the first way ``body`` breaks schema ``name``, if any."""
    # A failing ``allOf`` branch drops the names it would have allowed, so an
    # ``unevaluatedProperties`` error may name no field that is really unknown: those are noise.
    try:
        errors = [e for e in validator(name).iter_errors(body) if not _spurious(e)]
    except RecursionError:
        raise InvalidRequest("the request body is nested too deeply", code="invalid_json") from None
    if not errors:
        return
    error = min(errors, key=lambda e: (_FIRST.get(str(e.validator), 2), len(e.path)))
    properties = _properties(schema(name))
    top = error.path[0] if error.path else None
    code = properties.get(top, {}).get("x-error-code", "invalid_request") if top else None
    raise _ERROR_CLASSES[code or "invalid_request"](_wording(error))


def reply_problem(path: str, method: str, status: int, payload: Any) -> str | None:
    """Why a JSON reply does not fit the document (for tests), or None."""
    operation = _document()["paths"][path][method]
    response = operation["responses"].get(str(status))
    if response is None:
        return f"status {status} is not documented for {method.upper()} {path}"
    if "$ref" in response:
        response = _resolve(response["$ref"])
    content = response.get("content", {}).get("application/json")
    if content is None:
        return None
    found = Draft202012Validator(_with_base(content["schema"]), registry=_registry())
    error = next(iter(found.iter_errors(payload)), None)
    if error is None:
        return None
    return f"at {'/'.join(map(str, error.path)) or 'the top'}: {error.message[:300]}"


# -- wording -----------------------------------------------------------------------------------


def _unknown(error: ValidationError) -> list[str]:
    own = error.schema if isinstance(error.schema, dict) else {}
    if not isinstance(error.instance, dict):
        return []
    return sorted(set(error.instance) - set(_properties(own)))


def _spurious(error: ValidationError) -> bool:
    return error.validator == "unevaluatedProperties" and not _unknown(error)


def _wording(error: ValidationError) -> str:
    kind = str(error.validator)
    own = error.schema if isinstance(error.schema, dict) else {}
    where = _where(list(error.path))
    if kind in ("additionalProperties", "unevaluatedProperties"):
        allowed = sorted(_properties(own))
        unknown = ", ".join(repr(_short(name)) for name in _unknown(error))
        return f"unknown field(s) {unknown}{_inside(where)}; expected {', '.join(allowed)}"
    if kind == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return f"missing field {missing[0]!r}{_inside(where)}"
    path = list(error.path)
    field = _field(path)
    # "item 2 of 'group_by'" already names the list it is in.
    parent = _inside(_where(path[:-2] if path and isinstance(path[-1], int) else path[:-1]))
    if "x-error" in own and kind not in _MEASURED:
        return f"{field} {own['x-error']}{parent}"
    return f"{field} {_must(kind, own, error.instance)}{parent}"


def _must(kind: str, own: dict[str, Any], value: Any) -> str:
    types = own.get("type")
    if types == "integer" or (kind == "type" and types == "integer"):
        return "must be a whole number" + _range(own, whole=True)
    if kind == "type":
        return {
            "number": "must be a number",
            "boolean": "must be true or false",
            "string": "must be a string",
            "object": "must be a JSON object",
            "array": "must be a list",
        }.get(str(types), f"must be of type {types}")
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number" + _range(own)
        return "must be" + _range(own)
    if kind == "anyOf":
        return "must be " + " or ".join(_choice(branch) for branch in own["anyOf"])
    if kind == "enum":
        return f"is not one of {', '.join(map(str, own['enum']))}"
    if kind in _SIMPLE:
        return _SIMPLE[kind].format(**own)
    return "is not in an accepted form"


def _range(own: dict[str, Any], *, whole: bool = False) -> str:
    low, high = own.get("minimum"), own.get("maximum")
    above, below = own.get("exclusiveMinimum"), own.get("exclusiveMaximum")
    text = _number if not whole else str
    if low is not None and high is not None:
        return f" from {text(low)} to {text(high)}"
    if above is not None and high is not None:
        return f" above {text(above)} and at most {text(high)}"
    if above is not None and below is not None:
        return f" above {text(above)} and below {text(below)}"
    if low is not None and below is not None:
        return f" at least {text(low)} and below {text(below)}"
    if low is not None:
        return f", {text(low)} or more"
    if high is not None:
        return f", at most {text(high)}"
    return ""


def _choice(branch: dict[str, Any]) -> str:
    if "$ref" in branch:
        branch = _resolve(branch["$ref"])
    if "const" in branch:
        return _number(branch["const"])
    return _range(branch).strip(" ,") or "of another form"


def _short(text: str) -> str:
    """What the request said, cut short: a message quotes it, never at any length."""
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: float) -> str:
    return format(value, "g")


def _field(path: list[Any]) -> str:
    """'name' for a field, "item 2 of 'group_by'" for a list's entry."""
    if not path:
        return "the request body"
    if isinstance(path[-1], int):
        named = [p for p in path if isinstance(p, str)]
        return f"item {path[-1] + 1} of {named[-1]!r}" if named else f"item {path[-1] + 1}"
    return repr(path[-1])


def _where(path: list[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _inside(where: str) -> str:
    return f" (in {where})" if where else ""


def _properties(own: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The properties a schema allows, through ``allOf`` and ``$ref``s."""
    if "$ref" in own:
        own = {**_resolve(own["$ref"]), **{k: v for k, v in own.items() if k != "$ref"}}
    found: dict[str, dict[str, Any]] = {}
    for part in own.get("allOf", []):
        found.update(_properties(part))
    found.update(own.get("properties", {}))
    return found


def _resolve(ref: str) -> dict[str, Any]:
    node: Any = _document()
    for part in re.sub(r"^.*#/", "", ref).split("/"):
        node = node[part]
    found: dict[str, Any] = node
    return found


def _with_base(node: Any) -> Any:
    """A schema of the document with its local ``$ref``s pointed at the registered document."""
    if isinstance(node, dict):
        return {
            k: (f"{_URI}{v}" if k == "$ref" and v.startswith("#") else _with_base(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_with_base(v) for v in node]
    return node
