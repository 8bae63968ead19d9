"""The OpenAPI document: valid OpenAPI 3, and every route of the server is in it."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

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
