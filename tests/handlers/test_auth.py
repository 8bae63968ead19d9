"""Who may call what: tokens, other users' datasets, blocked users."""

from __future__ import annotations

import pytest

from tests.servers import Api

PROTECTED = [
    ("GET", "/datasets"),
    ("GET", "/datasets/PENGUIN/metadata"),
    ("GET", "/datasets/PENGUIN/budget"),
    ("POST", "/datasets/PENGUIN/dummy"),
    ("POST", "/datasets/PENGUIN/smartnoise-sql/cost"),
    ("POST", "/datasets/PENGUIN/smartnoise-sql"),
    ("GET", "/queries"),
]
SQL_BODY = {"query": "SELECT COUNT(*) AS n FROM df", "epsilon": 0.1}


def _call(api: Api, method: str, path: str):
    return api.get(path) if method == "GET" else api.post(path, SQL_BODY if "sql" in path else {})


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_no_token_is_401_with_json_error(anonymous, method, path):
    reply = _call(anonymous, method, path)
    assert reply.status_code == 401
    assert reply.json()["error"] == "unauthorized"
    assert "Authorization: token" in reply.json()["message"]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_wrong_token_is_401(server, method, path):
    reply = _call(Api(server.api, "lomas_not-a-real-token"), method, path)
    assert reply.status_code == 401


def test_bearer_scheme_is_accepted_too(server, make_user):
    user = make_user(PENGUIN=(1.0, 0.0))
    api = Api(server.api)
    api.session.headers["Authorization"] = f"Bearer {user.token}"
    assert api.get("/datasets").status_code == 200


def test_token_in_query_string_is_not_accepted(server, make_user):
    user = make_user(PENGUIN=(1.0, 0.0))
    reply = Api(server.api).get("/datasets", params={"token": user.token})
    assert reply.status_code == 401


def test_jupyter_server_token_is_not_a_lomas_identity(server):
    # The Jupyter server's own token opens Jupyter's APIs, not the DP API.
    reply = Api(server.api, server.jupyter_token).get("/datasets")
    assert reply.status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [p for p in PROTECTED if "/datasets/PENGUIN" in p[1]],
)
def test_dataset_of_someone_else_looks_like_no_dataset(make_user, method, path):
    outsider = make_user(TITANIC=(1.0, 1e-5))  # no grant on PENGUIN
    reply = _call(outsider.api, method, path)
    assert reply.status_code == 404
    assert reply.json()["error"] == "dataset_not_found"
    unknown = _call(outsider.api, method, path.replace("PENGUIN", "NO_SUCH_DATASET"))
    assert unknown.status_code == 404
    assert unknown.json()["message"].replace("NO_SUCH_DATASET", "X") == reply.json()[
        "message"
    ].replace("PENGUIN", "X")


def test_archive_shows_only_own_queries(make_user):
    alice, bob = make_user(PENGUIN=(1.0, 0.0)), make_user(PENGUIN=(1.0, 0.0))
    assert alice.api.sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", 0.1).status_code == 200
    assert len(alice.api.get("/queries").json()["queries"]) == 1
    assert bob.api.get("/queries").json()["queries"] == []
    assert bob.api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.0


def test_rotated_token_replaces_the_old_one(make_user, admin, server):
    user = make_user(PENGUIN=(1.0, 0.0))
    new_token = admin.rotate_token(user.name)
    assert user.api.get("/datasets").status_code == 401
    assert Api(server.api, new_token).get("/datasets").status_code == 200


def test_blocked_user_cannot_query_but_can_read_budget(make_user, admin):
    user = make_user(PENGUIN=(1.0, 0.0))
    admin.set_may_query(user.name, False)
    reply = user.api.sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", 0.1)
    assert reply.status_code == 403 and reply.json()["error"] == "forbidden"
    assert user.api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.0


def test_health_and_openapi_need_no_token(anonymous):
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/openapi.json").status_code == 200
