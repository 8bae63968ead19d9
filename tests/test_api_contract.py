"""The API contract (api.yaml): requests are checked against it in our own words, and what
the code takes from it (privacy ranges, limits) is what it says."""

from __future__ import annotations

import pytest

from lomas_server import api_contract, api_requests, limits
from lomas_server.errors import ServiceError

# Phrases of the schema validator's own messages: none may reach an analyst.
VALIDATOR_TEXT = (
    "is not valid under",
    "is a required property",
    "Additional properties",
    "Unevaluated properties",
    "is not of type",
    "is less than",
    "is greater than",
    "does not match",
    "is too long",
    "is not one of [",
)
WRONG_VALUES = [None, "x", "", [], {}, True, -1, 0, 1e300, 10**400, [1, "a"], {"a": 1}]
GOOD = {
    "SqlRequest": {"query": "SELECT COUNT(*) AS n FROM df", "epsilon": 1.0},
    "SqlCostRequest": {"query": "SELECT COUNT(*) AS n FROM df", "epsilon": 1.0},
    "OpenDPRequest": {"query": {"aggregates": [{"op": "count"}]}, "epsilon": 1.0},
    "OpenDPCostRequest": {"query": {"aggregates": [{"op": "count"}]}, "epsilon": 1.0},
    "DummyRequest": {"rows": 5},
    "SynthRequest": {"synthesizer": "mst", "columns": ["species", "sex"], "epsilon": 1.0},
    "SynthCostRequest": {"synthesizer": "aim", "columns": ["species", "sex"], "epsilon": 1.0},
    "DiffprivlibRequest": {"model": "pca", "features": ["bill_length_mm"], "epsilon": 1.0},
    "DiffprivlibCostRequest": {
        "model": "logistic_regression",
        "features": ["bill_length_mm"],
        "target": "species",
        "epsilon": 1.0,
        "options": {"C": 0.5},
    },
    "BudgetRequestBody": {"epsilon": 2.0, "delta": 1e-6, "reason": "a second wave of tables"},
    "NewUser": {"name": "alice", "admin": False},
    "UserChange": {"may_query": False},
    "Grant": {"epsilon": 2.0, "delta": 1e-5},
    "NewDataset": {
        "name": "PENGUIN",
        "location": "/data/penguin.csv",
        "metadata": {"max_ids": 1},
        "max_query": {"epsilon": 1.0, "delta": 1e-5},
        "check": True,
    },
    "Limits": {"max_query": {"epsilon": 1.0}, "cap": {"epsilon": 10.0, "delta": 1e-4}},
    "Approval": {"epsilon": 1.0, "delta": 0.0, "note": "for the survival tables"},
    "Denial": {"note": "ask for less"},
}


def test_every_operation_with_a_body_has_a_good_example_here():
    names = {
        api_contract.request_schema_name(path, method)
        for path, method, _ in api_contract.operations()
    } - {None}
    assert names == set(GOOD)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_a_good_body_passes(name):
    api_contract.check(name, GOOD[name])


def _mutations(body, path=()):
    """Bodies with one value replaced by a wrong one, or one unknown field added."""
    yield {**body, "unexpected": 1}, (*path, "unexpected")
    for key, value in body.items():
        for wrong in WRONG_VALUES:
            yield {**body, key: wrong}, (*path, key)
        if isinstance(value, dict):
            for inner, where in _mutations(value, (*path, key)):
                yield {**body, key: inner}, where
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for inner, where in _mutations(value[0], (*path, key, 0)):
                yield {**body, key: [inner]}, where


@pytest.mark.parametrize("name", sorted(GOOD))
def test_every_violation_is_one_line_in_our_words_naming_the_field(name):
    checked = 0
    for body, where in _mutations(GOOD[name]):
        try:
            api_contract.check(name, body)
        except ServiceError as err:
            checked += 1
            assert err.status == 400 and err.code in ("invalid_request", "invalid_query")
            assert "\n" not in err.message and len(err.message) < 300, err.message
            assert not any(text in err.message for text in VALIDATOR_TEXT), err.message
            named = [part for part in where if isinstance(part, str)][-1]
            assert named in err.message, (where, err.message)
    assert checked >= 10


def test_unknown_and_missing_fields_come_first():
    body = {"epsilion": 1.0, "query": 42}
    with pytest.raises(ServiceError, match="unknown field\\(s\\) 'epsilion'"):
        api_contract.check("SqlRequest", body)
    with pytest.raises(ServiceError, match="missing field 'epsilon'"):
        api_contract.check("SqlRequest", {"query": 42})


def test_a_bad_opendp_query_is_an_invalid_query():
    body = {"query": {"aggregates": [{"op": "exec"}]}, "epsilon": 1.0}
    with pytest.raises(ServiceError) as info:
        api_contract.check("OpenDPRequest", body)
    assert info.value.code == "invalid_query"
    assert "'op' is not one of count" in info.value.message
    assert "(in query.aggregates[0])" in info.value.message


def test_ranges_in_code_are_the_documents():
    assert (limits.MIN_EPSILON, limits.MAX_QUERY_EPSILON) == (
        api_contract.schema("Epsilon")["minimum"],
        api_contract.schema("Epsilon")["maximum"],
    )
    assert limits.MAX_QUERY_LENGTH == api_contract.schema("SqlText")["maxLength"]
    for value in (limits.MIN_DELTA, limits.MAX_DELTA, 0.0):
        api_contract.check("SqlCostRequest", {**GOOD["SqlCostRequest"], "delta": value})
    for value in (limits.MIN_DELTA / 2, limits.MAX_DELTA * 2):
        with pytest.raises(ServiceError, match="'delta' must be 0 or from 1e-15 to 0.1"):
            api_contract.check("SqlCostRequest", {**GOOD["SqlCostRequest"], "delta": value})


def test_defaults_come_from_the_document():
    request = api_requests.parse_dummy_request({})
    assert request.rows == api_contract.schema("DummyRequest")["properties"]["rows"]["default"]
    assert 0 <= request.seed <= api_requests.MAX_SEED


def test_document_version_is_the_packages():
    from lomas_server import __version__

    assert api_contract.document()["info"]["version"] == __version__


def test_a_reply_that_breaks_the_document_is_caught():
    path = "/datasets/{name}/budget"
    privacy = {"epsilon": 1.0, "delta": 0.0}
    good = {"initial": privacy, "spent": privacy, "remaining": privacy}
    assert api_contract.reply_problem(path, "get", 200, good) is None
    assert "remaining" in (
        api_contract.reply_problem(path, "get", 200, {**good, "remaining": 1}) or ""
    )
    assert "not documented" in (api_contract.reply_problem(path, "get", 418, {}) or "")


def test_an_output_name_ends_where_the_text_ends():
    body = {"query": {"aggregates": [{"op": "count", "as": "n\n"}]}, "epsilon": 1.0}
    with pytest.raises(ServiceError, match="plain identifier"):
        api_contract.check("OpenDPRequest", body)


def test_an_item_of_a_list_is_located_once():
    body = {"query": {"aggregates": [5]}, "epsilon": 1.0}
    with pytest.raises(ServiceError) as info:
        api_contract.check("OpenDPRequest", body)
    assert info.value.message == "item 1 of 'aggregates' must be a JSON object (in query)"
