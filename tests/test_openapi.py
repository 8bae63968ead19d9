"""The OpenAPI document: valid OpenAPI 3, and every route of the server is in it."""

from __future__ import annotations

import re

import yaml
from openapi_spec_validator import validate

from lomas_server import api_contract
from lomas_server.handlers import API_PREFIX, api_routes


def test_served_document_is_valid_openapi_3(anonymous):
    document = anonymous.get("/openapi.json").json()
    validate(document)
    assert document["openapi"].startswith("3.")
    assert document["servers"] == [{"url": API_PREFIX}]


def test_every_route_is_documented_with_its_methods(anonymous):
    paths = anonymous.get("/openapi.json").json()["paths"]
    for pattern, handler in api_routes():
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern[len(API_PREFIX) :])
        if path == "/.*":
            continue  # the JSON 404 for everything else
        assert path in paths, path
        for method in ("get", "post", "put", "delete", "patch"):
            implemented = method in vars(handler)
            assert implemented == (method in paths[path]), (path, method)


def test_protected_operations_declare_the_token_and_errors(anonymous):
    document = anonymous.get("/openapi.json").json()
    assert document["security"] == [{"LomasToken": []}]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            if path in ("/health", "/openapi.json", "/openapi.yaml"):
                assert operation["security"] == []
            else:
                assert "401" in operation["responses"], (path, method)


def test_the_document_is_served_as_written(anonymous):
    as_yaml = anonymous.get("/openapi.yaml")
    assert as_yaml.status_code == 200
    assert as_yaml.headers["Content-Type"].startswith("application/yaml")
    assert as_yaml.text == api_contract.DOCUMENT_FILE.read_text(encoding="utf-8")
    as_json = anonymous.get("/openapi.json").json()
    assert {k: v for k, v in as_json.items() if k != "servers"} == {
        k: v for k, v in yaml.safe_load(as_yaml.text).items() if k != "servers"
    }


def test_undeclared_methods_are_refused_even_options(make_user):
    user = make_user()
    reply = user.api.session.options(user.api.base + "/datasets", timeout=30)
    assert reply.status_code == 405 and reply.json()["error"] == "method_not_allowed"


def _schema(document: dict, schema: dict) -> dict:
    while "$ref" in schema:  # a schema may be another's alias
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _body_schema(document: dict, operation: dict) -> dict | None:
    body = operation.get("requestBody")
    if body is None:
        return None
    return _schema(document, body["content"]["application/json"]["schema"])


def test_every_request_body_refuses_fields_it_does_not_know(anonymous):
    """So that a pickled pipeline or a smuggled option is refused by name on every operation,
    synthetic data and DP models included."""
    document = anonymous.get("/openapi.json").json()
    bodies = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            schema = _body_schema(document, operation)
            if schema is None:
                continue
            bodies += 1
            closed = (
                schema.get("unevaluatedProperties") is False
                or schema.get("additionalProperties") is False
            )
            assert closed, (method, path)
    assert bodies >= 8


def test_every_estimate_has_a_release_taking_the_same_body_and_fresh(anonymous):
    """/X/cost prices exactly what /X releases: the same body, but for 'fresh'; the estimate
    never runs a query, so only the release can answer 500 (a failure after the reservation)."""
    document = anonymous.get("/openapi.json").json()
    paths = document["paths"]
    estimates = [p for p in paths if p.endswith("/cost")]
    assert {p.rsplit("/", 2)[-2] for p in estimates} == {
        "smartnoise-sql",
        "opendp",
        "synth",
        "diffprivlib",
    }
    for path in estimates:
        estimate, release = paths[path]["post"], paths[path.removesuffix("/cost")]["post"]
        priced, released = _body_schema(document, estimate), _body_schema(document, release)
        assert priced["allOf"] == released["allOf"], path
        assert set(released.get("properties", {})) - set(priced.get("properties", {})) == {"fresh"}
        assert "500" in release["responses"] and "500" not in estimate["responses"], path
        reply = _schema(
            document, release["responses"]["200"]["content"]["application/json"]["schema"]
        )
        assert {"query_id", "result", "cost", "budget"} <= set(reply["required"]), path


def test_the_archive_holds_every_kind_of_result(anonymous):
    document = anonymous.get("/openapi.json").json()
    result = document["components"]["schemas"]["ArchiveEntry"]["properties"]["result"]
    kinds = {option.get("$ref", "").rsplit("/", 1)[-1] for option in result["anyOf"]}
    assert {"Table", "FittedModel"} <= kinds
