"""Every class of bad input gets a 4xx with a JSON body naming the problem, and costs nothing."""

from __future__ import annotations

import pytest

SQL = "/datasets/PENGUIN/smartnoise-sql"
GOOD = {"query": "SELECT COUNT(*) AS n FROM df", "epsilon": 0.5, "delta": 0.0}
SYNTH = "/datasets/PENGUIN/synth"
DIFFPRIVLIB = "/datasets/PENGUIN/diffprivlib"
# A valid body of each operation that plans and runs queries (its path, then /cost).
GOOD_BODIES = {
    SQL: GOOD,
    "/datasets/PENGUIN/opendp": {"query": {"aggregates": [{"op": "count"}]}, "epsilon": 0.5},
    SYNTH: {"synthesizer": "mst", "columns": ["species", "sex"], "epsilon": 0.5, "rows": 5},
    DIFFPRIVLIB: {"model": "pca", "features": ["bill_length_mm"], "epsilon": 0.5},
}
QUERY_PATHS = [p + tail for p in GOOD_BODIES for tail in ("", "/cost")]


@pytest.fixture
def user(make_user):
    return make_user(PENGUIN=(5.0, 1e-4))


def _assert_nothing_spent(user):
    assert user.api.get("/datasets/PENGUIN/budget").json()["spent"] == {
        "epsilon": 0.0,
        "delta": 0.0,
    }
    assert user.api.get("/queries").json()["queries"] == []


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"query": "SELECT COUNT(*) AS n FROM df", "epsilon": NaN}', "invalid_json"),
        (b'{"query": "SELECT COUNT(*) AS n FROM df", "epsilon": Infinity}', "invalid_json"),
        (b"\xff\xfe\x00", "invalid_json"),
    ],
)
@pytest.mark.parametrize("path", QUERY_PATHS)
def test_malformed_json(user, raw, code, path):
    reply = user.api.post(path, data=raw, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert reply.json()["error"] == code
    _assert_nothing_spent(user)


@pytest.mark.parametrize("path", QUERY_PATHS)
def test_a_missing_body_or_one_that_is_not_an_object_is_a_400(user, path):
    for raw in (b"", b"null", b"[]", b'"mst"', b"42"):
        reply = user.api.post(path, data=raw, headers={"Content-Type": "application/json"})
        assert reply.status_code == 400, (raw, reply.text)
        assert reply.json()["error"] == "invalid_json"
    _assert_nothing_spent(user)


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"epsilon": 0.5}, "query"),
        ({"query": "SELECT COUNT(*) AS n FROM df"}, "epsilon"),
        ({**GOOD, "epsilion": 1.0}, "epsilion"),
        ({**GOOD, "bounds": {"body_mass_g": [0, 1]}}, "bounds"),
        ({**GOOD, "query": 42}, "query"),
        ({**GOOD, "query": "   "}, "query"),
        ({**GOOD, "epsilon": "1"}, "epsilon"),
        ({**GOOD, "epsilon": True}, "epsilon"),
        ({**GOOD, "epsilon": 0}, "epsilon"),
        ({**GOOD, "epsilon": -1}, "epsilon"),
        ({**GOOD, "epsilon": 1e308}, "epsilon"),
        ({**GOOD, "epsilon": 10**400}, "epsilon"),
        ({**GOOD, "delta": -1e-9}, "delta"),
        ({**GOOD, "delta": 1}, "delta"),
        ({**GOOD, "epsilon": 1e-5}, "'epsilon' must be from 0.0001 to 1000"),
        ({**GOOD, "epsilon": 1e-300}, "'epsilon' must be from"),
        ({**GOOD, "epsilon": 1e6}, "'epsilon' must be from"),
        ({**GOOD, "delta": 1e-300}, "'delta' must be 0 or from 1e-15 to 0.1"),
        ({**GOOD, "delta": 0.5}, "'delta' must be 0 or from"),
        ({**GOOD, "delta": None}, "delta"),
        ({**GOOD, "postprocess": "yes"}, "postprocess"),
    ],
)
def test_missing_wrong_or_unknown_fields(user, body, mentions):
    reply = user.api.post(SQL, body)
    assert reply.status_code == 400, reply.text
    payload = reply.json()
    assert payload["error"] == "invalid_request"
    assert mentions in payload["message"]
    _assert_nothing_spent(user)


OPENDP_COST = "/datasets/PENGUIN/opendp/cost"
COUNT_QUERY = {"aggregates": [{"op": "count"}]}


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        # Each of these once held the engine for minutes or answered 500.
        ({"mechanism": "gaussian", "rho": 1e-300}, "'rho' must be from 1e-08 to 1000"),
        ({"mechanism": "gaussian", "rho": 1e-20}, "'rho' must be from"),
        ({"mechanism": "gaussian", "rho": 1e6}, "'rho' must be from"),
        ({"epsilon": 1e-300}, "'epsilon' must be from"),
        ({"epsilon": 1e6}, "'epsilon' must be from"),
        ({"epsilon": 1.0, "delta": 1e-300}, "'delta' must be 0 or from"),
        ({"accuracy": {"half_width": 1e-300, "confidence": 1.5}}, "'confidence' must be from"),
        ({"accuracy": {"half_width": 5, "confidence": 0.999999}}, "'confidence' must be from"),
        ({"accuracy": {"half_width": 1e300}}, "'half_width' must be above 0 and at most"),
        ({"accuracy": {"half_width": 0}}, "'half_width'"),
    ],
)
@pytest.mark.parametrize("path", [OPENDP_COST, "/datasets/PENGUIN/opendp"])
def test_privacy_parameters_outside_their_range(user, path, body, mentions):
    reply = user.api.post(path, {"query": COUNT_QUERY, **body})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "invalid_request"
    assert mentions in reply.json()["message"]
    _assert_nothing_spent(user)


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        (
            "SELECT COUNT(*) AS n FROM df WHERE " + "(" * 3000 + "species = 'Adelie'" + ")" * 3000,
            "nested more than 24 levels deep",
        ),
        (
            "SELECT COUNT(*) AS n FROM df WHERE " + "NOT " * 4000 + "species = 'Adelie'",
            "repeats NOT or a sign",
        ),
        (
            "SELECT COUNT(*) AS n FROM df WHERE body_mass_g > " + "- " * 30 + "1",
            "repeats NOT or a sign",
        ),
        (
            "SELECT "
            + "CASE WHEN species = 'Adelie' THEN " * 30
            + "1"
            + " END" * 30
            + " AS x FROM df",
            "nested more than 24 levels deep",
        ),
        (
            "SELECT COUNT(*) AS n FROM df WHERE body_mass_g IN (" + "1," * 3000 + "1)",
            "more than 3000 words and symbols",
        ),
        (
            "SELECT COUNT(*) AS n FROM df WHERE body_mass_g > " + "1" * 400,
            "longer than 40 characters",
        ),
        (
            "SELECT COUNT(*) AS n FROM df WHERE body_mass_g > 0." + "0" * 400 + "1",
            "longer than 40 characters",
        ),
        ("SELECT COUNT(*) AS n FROM df WHERE " + "x" * 200 + " = 1", "name is longer than"),
        # Long but shallow: reaches the parser and the allow-list, refused there by type.
        ("SELECT COUNT(*) AS n FROM df WHERE body_mass_g > 12345678901234567890", "out of range"),
    ],
)
def test_oversized_queries_are_refused_before_parsing(user, query, mentions):
    for path in (SQL + "/cost", SQL):
        reply = user.api.post(path, {**GOOD, "query": query})
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"] == "invalid_query"
        assert mentions in reply.json()["message"]
    _assert_nothing_spent(user)


def test_deeply_nested_json_is_a_400(user):
    reply = user.api.post(
        OPENDP_COST, data=b"[" * 60_000, headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "invalid_json"
    _assert_nothing_spent(user)


@pytest.mark.parametrize("path", QUERY_PATHS)
def test_epsilon_above_the_per_query_maximum(user, path):
    body = GOOD_BODIES[path.removesuffix("/cost")]
    reply = user.api.post(path, {**body, "epsilon": 20.0})
    assert reply.status_code == 400
    assert reply.json()["error"] == "query_too_expensive"
    _assert_nothing_spent(user)


@pytest.mark.parametrize("path", [SYNTH, SYNTH + "/cost", DIFFPRIVLIB, DIFFPRIVLIB + "/cost"])
def test_unknown_fields_of_synth_and_models_are_refused_by_name(user, path):
    body = GOOD_BODIES[path.removesuffix("/cost")]
    for extra in ("epsilion", "pipeline", "model_pickle", "bounds", "random_state"):
        reply = user.api.post(path, {**body, extra: 1})
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"] == "invalid_request"
        assert f"unknown field(s) '{extra}'" in reply.json()["message"]
    _assert_nothing_spent(user)


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("DELETE FROM df", "only SELECT queries"),
        ("DROP TABLE df", "only SELECT queries"),
        ("SELECT COUNT(*) FROM df; SELECT COUNT(*) FROM df", "one SELECT"),
        ("SELECT COUNT(*) FROM other_table", "unknown table"),
        ("SELECT COUNT(nope) FROM df", "unknown column 'nope'"),
        ("SELECT SUM(species) FROM df", "numeric"),
        ("SELECT species FROM df", "GROUP BY"),
        ("SELECT * FROM df", "SELECT *"),
        ("SELECT COUNT(*) FROM df WHERE body_mass_g / (flipper_length_mm - 200) > 1", "WHERE"),
    ],
)
def test_refused_sql(user, query, mentions):
    reply = user.api.post(SQL, {**GOOD, "query": query})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "invalid_query"
    assert mentions in reply.json()["message"]
    _assert_nothing_spent(user)


def test_oversized_body_is_413(user):
    huge = {**GOOD, "query": "SELECT COUNT(*) AS n FROM df " + "-" * 100_000}
    reply = user.api.post(SQL, huge)
    assert reply.status_code == 413
    assert reply.json()["error"] == "payload_too_large"
    _assert_nothing_spent(user)


@pytest.mark.parametrize("path", [SYNTH, SYNTH + "/cost", DIFFPRIVLIB, DIFFPRIVLIB + "/cost"])
def test_an_oversized_synth_or_model_body_is_413(user, path):
    """A pipeline smuggled as a long string (or a long list of columns) never reaches a
    parser: the body is refused by its size alone."""
    body = GOOD_BODIES[path.removesuffix("/cost")]
    reply = user.api.post(path, {**body, "pipeline": "A" * 100_000})
    assert reply.status_code == 413
    assert reply.json()["error"] == "payload_too_large"
    _assert_nothing_spent(user)


def test_dummy_bad_rows_and_seed(user):
    for body, mentions in (
        ({"rows": -1}, "rows"),
        ({"rows": 10**9}, "rows"),
        ({"rows": 1.5}, "rows"),
        ({"seed": -3}, "seed"),
        ({"seed": "x"}, "seed"),
        ({"rows": 5, "color": "red"}, "color"),
    ):
        reply = user.api.post("/datasets/PENGUIN/dummy", body)
        assert reply.status_code == 400, body
        assert mentions in reply.json()["message"]


def test_unknown_endpoint_and_wrong_method_answer_json(user):
    missing = user.api.get("/no/such/thing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = user.api.get(SQL)
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize("path", QUERY_PATHS)
def test_deeply_nested_json_is_refused_in_our_words(user, path):
    for depth in (40, 975):
        raw = b'{"x": ' + b"[" * depth + b"]" * depth + b"}"
        reply = user.api.post(path, data=raw, headers={"Content-Type": "application/json"})
        assert reply.status_code == 400, reply.text
        assert reply.json() == {
            "error": "invalid_json",
            "message": "the request body is nested more than 32 levels deep",
        }
    _assert_nothing_spent(user)


def test_what_a_message_quotes_from_the_request_is_cut_short(user):
    reply = user.api.post(SQL, {**GOOD, "k" * 5000: 1})
    assert reply.status_code == 400 and len(reply.json()["message"]) < 200
    opendp = {"query": {"aggregates": [{"op": "mean", "column": "c" * 5000}]}, "epsilon": 1.0}
    reply = user.api.post("/datasets/PENGUIN/opendp/cost", opendp)
    assert reply.status_code == 400 and "unknown column" in reply.json()["message"]
    assert len(reply.json()["message"]) < 200


def test_a_request_from_another_web_origin_is_refused_by_name(user):
    reply = user.api.get("/datasets", headers={"Origin": "https://evil.example"})
    assert reply.status_code == 403
    assert reply.json()["error"] == "forbidden" and "origin" in reply.json()["message"]
