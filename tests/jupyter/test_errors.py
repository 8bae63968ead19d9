"""Every error the server can send lands in its class of the client's one error tree."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import lomas_jupyter
import lomas_server
from lomas_jupyter import (
    BudgetExceeded,
    ClientUsageError,
    Conflict,
    Forbidden,
    InvalidQuery,
    InvalidRequest,
    LomasError,
    NotFound,
    PayloadTooLarge,
    QueryFailed,
    QueryTooExpensive,
    ServerBusy,
    ServerError,
    TransportError,
    Unauthorized,
)
from lomas_jupyter._errors import _BY_CODE
from lomas_server import errors as server_errors

SERVER = Path(lomas_server.__file__).parent
_CODE = re.compile(r"^[a-z][a-z_]*$")

# What each code the server sends means to a caller, with the status it comes with.
EXPECTED = {
    ("bad_request", 400): InvalidRequest,
    ("invalid_request", 400): InvalidRequest,
    ("invalid_json", 400): InvalidRequest,
    ("method_not_allowed", 405): InvalidRequest,
    ("unsupported_media_type", 415): InvalidRequest,
    ("invalid_query", 400): InvalidQuery,
    ("query_too_expensive", 400): QueryTooExpensive,
    ("payload_too_large", 413): PayloadTooLarge,
    ("unauthorized", 401): Unauthorized,
    ("forbidden", 403): Forbidden,
    ("budget_exceeded", 403): BudgetExceeded,
    ("not_found", 404): NotFound,
    ("dataset_not_found", 404): NotFound,
    ("conflict", 409): Conflict,
    ("query_failed", 500): QueryFailed,
    ("too_many_requests", 429): ServerBusy,
    ("engine_busy", 503): ServerBusy,
    ("time_limit_exceeded", 503): ServerBusy,
    ("store_unavailable", 503): ServerBusy,
    ("hub_unavailable", 503): ServerBusy,
    ("dataset_unavailable", 503): ServerBusy,
    ("invalid_metadata", 400): ServerError,
    # A server without smartnoise-synth: no later try helps, so not ServerBusy.
    ("engine_not_installed", 503): ServerError,
    ("internal_error", 500): ServerError,
    ("http_error", 502): ServerError,
    ("http_error", 429): ServerBusy,
}


def _codes_the_server_sends() -> set[str]:
    """Every error code written in the server's source: the ``code`` of each error class,
    each ``code=...`` given where an error is raised, each ``"error": ...`` of a body the
    handlers write themselves (the standard codes of plain HTTP errors among them), and each
    ``x-error-code`` of the API contract."""
    found: set[str] = set()
    for path in SERVER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            values: list[ast.AST] = []
            if isinstance(node, ast.ClassDef):
                values += [
                    item.value
                    for item in node.body
                    if isinstance(item, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "code" for t in item.targets)
                ]
            elif isinstance(node, ast.keyword) and node.arg == "code":
                values.append(node.value)
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "error":
                        values.append(value)
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_HTTP_CODES" for t in node.targets
            ):
                assert isinstance(node.value, ast.Dict)
                values += node.value.values
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "_HTTP_CODES"
            ):
                values += node.args[1:]
            found.update(
                v.value
                for v in values
                if isinstance(v, ast.Constant) and isinstance(v.value, str) and _CODE.match(v.value)
            )
    for path in SERVER.rglob("*.yaml"):  # the API contract may name the code of a violation
        found.update(re.findall(r"x-error-code:\s*([a-z_]+)", path.read_text()))
    return found


def test_the_scan_sees_codes_of_every_kind():
    assert {
        "budget_exceeded",
        "dataset_not_found",
        "invalid_json",
        "query_too_expensive",
        "internal_error",
        "method_not_allowed",
        "http_error",
    } <= _codes_the_server_sends()


def test_every_code_the_server_sends_is_mapped():
    missing = _codes_the_server_sends() - set(_BY_CODE)
    assert not missing, f"codes with no class in lomas_jupyter/_errors.py: {sorted(missing)}"
    assert {code for code, _ in EXPECTED} == set(_BY_CODE)


@pytest.mark.parametrize(("code", "status"), sorted(EXPECTED), ids=lambda v: str(v))
def test_each_reply_lands_in_its_class(code, status):
    reply = {"error": code, "message": "what went wrong"}
    error = ServerError.from_reply(reply, status=status)
    assert type(error) is EXPECTED[code, status]
    assert (error.code, error.status, error.message) == (code, status, "what went wrong")
    assert error.reply == reply
    assert str(error) == f"what went wrong [{code}]"


def _server_error_classes() -> list[type[server_errors.ServiceError]]:
    return [
        cls
        for _, cls in inspect.getmembers(server_errors, inspect.isclass)
        if issubclass(cls, server_errors.ServiceError)
    ]


@pytest.mark.parametrize("server_class", _server_error_classes(), ids=lambda c: c.__name__)
def test_each_server_error_class_is_caught_by_its_client_class(server_class):
    """The server's own error classes, with the code and status they reply with."""
    error = ServerError.from_reply(
        {"error": server_class.code, "message": "m"}, status=server_class.status
    )
    assert type(error) is EXPECTED[server_class.code, server_class.status]


def test_an_unknown_code_falls_back_on_its_status_then_on_server_error():
    assert type(ServerError.from_reply({"error": "new", "message": "m"}, status=403)) is Forbidden
    assert type(ServerError.from_reply({"error": "new", "message": "m"}, status=503)) is ServerBusy
    assert type(ServerError.from_reply({"error": "new", "message": "m"}, status=418)) is ServerError
    assert type(ServerError.from_reply({"error": "new", "message": "m"})) is ServerError
    assert ServerError.from_reply({"message": "m"}, status=500).code == "error"


def test_a_refusal_without_http_reads_as_its_message():
    """A local dummy run applies the server's checks: same class, no status, no code shown."""
    error = ServerError.from_reply({"error": "invalid_query", "message": "SELECT * ..."})
    assert type(error) is InvalidQuery and error.status is None
    assert str(error) == "SELECT * ..."


def test_the_tree():
    for kind in (InvalidQuery, QueryTooExpensive, PayloadTooLarge):
        assert issubclass(kind, InvalidRequest)
    for kind in (
        InvalidRequest,
        Unauthorized,
        Forbidden,
        BudgetExceeded,
        NotFound,
        Conflict,
        QueryFailed,
        ServerBusy,
    ):
        assert issubclass(kind, ServerError)
    for kind in (ClientUsageError, TransportError, ServerError):
        assert issubclass(kind, LomasError)
    assert not issubclass(ClientUsageError, (TransportError, ServerError))
    assert not issubclass(TransportError, ServerError)
    exported = [getattr(lomas_jupyter, name) for name in lomas_jupyter.__all__]
    errors = {e for e in exported if isinstance(e, type) and issubclass(e, Exception)}
    assert all(issubclass(e, LomasError) for e in errors)
    assert set(EXPECTED.values()) <= errors


def test_client_side_errors_show_their_message_only():
    error = ClientUsageError("not connected yet: run %lomas_connect first")
    assert error.code == "client_error" and error.status is None
    assert str(error) == "not connected yet: run %lomas_connect first"
    timeout = TransportError("no answer within 2 s", code="timeout")
    assert str(timeout) == "no answer within 2 s"
    bare = TransportError("the server answered HTTP 502", code="http_error", status=502)
    assert str(bare) == "the server answered HTTP 502 [http_error]"
