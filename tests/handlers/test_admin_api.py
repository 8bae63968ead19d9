"""The admin API over HTTP, and budget requests from asking to deciding, on the real server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import sample_metadata
from tests.servers import Api

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "lomas_server" / "sample_data"


@pytest.fixture
def boss(admin, server) -> Api:
    """An admin of the service (a store admin, with a lomas token)."""
    name = f"admin-{uuid.uuid4().hex[:8]}"
    return Api(server.api, admin.add_user(name, is_admin=True))


def test_me_says_who_the_caller_is(make_user, boss):
    user = make_user(PENGUIN=(1.0, 0.0))
    assert user.api.get("/me").json() == {"user": user.name, "admin": False, "identity": "token"}
    assert boss.get("/me").json()["admin"] is True


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/users"),
        ("POST", "/admin/users"),
        ("GET", "/admin/datasets"),
        ("GET", "/admin/budget-requests"),
        ("PUT", "/admin/users/x/grants/PENGUIN"),
        ("POST", "/admin/budget-requests/0/approve"),
    ],
)
def test_the_admin_api_refuses_analysts_with_403_and_changes_nothing(
    make_user, admin, method, path
):
    user = make_user(PENGUIN=(1.0, 0.0))
    users_before = len(admin.list_users())
    reply = user.api.send(method, path, {"name": "intruder"} if method != "GET" else None)
    assert reply.status_code == 403
    assert reply.json() == {
        "error": "forbidden",
        "message": "this needs an admin of the lomas service",
    }
    assert len(admin.list_users()) == users_before


def test_an_admin_creates_grants_blocks_and_reads_a_user(boss, server):
    name = f"analyst-{uuid.uuid4().hex[:8]}"
    created = boss.post("/admin/users", {"name": name})
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("lomas_") and created.json()["admin"] is False
    analyst = Api(server.api, token)
    assert analyst.get("/datasets").json() == {"datasets": []}

    granted = boss.send("PUT", f"/admin/users/{name}/grants/PENGUIN", {"epsilon": 3, "delta": 1e-5})
    assert granted.status_code == 200
    assert [d["name"] for d in analyst.get("/datasets").json()["datasets"]] == ["PENGUIN"]
    analyst.sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", 0.5)

    budgets = boss.get(f"/admin/users/{name}/budgets").json()["budgets"]
    assert budgets[0]["dataset"] == "PENGUIN"
    assert budgets[0]["spent"]["epsilon"] == pytest.approx(0.5)
    queries = boss.get(f"/admin/users/{name}/queries", params={"dataset": "PENGUIN"}).json()
    assert [q["query"] for q in queries["queries"]] == ["SELECT COUNT(*) AS n FROM df"]

    assert (
        boss.send("PATCH", f"/admin/users/{name}", {"may_query": False}).json()["may_query"]
        is False
    )
    assert analyst.sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", 0.5).status_code == 403
    boss.send("PATCH", f"/admin/users/{name}", {"may_query": True})

    rotated = boss.post(f"/admin/users/{name}/token")
    assert rotated.status_code == 200
    assert analyst.get("/datasets").status_code == 401
    assert Api(server.api, rotated.json()["token"]).get("/datasets").status_code == 200
    listed = {u["name"]: u for u in boss.get("/admin/users").json()["users"]}
    assert listed[name]["may_query"] is True


def test_an_admin_registers_a_dataset_and_sets_its_limits(boss):
    name = f"PENGUIN_{uuid.uuid4().hex[:6]}"
    body = {
        "name": name,
        "location": str(SAMPLE_DATA / "penguin.csv"),
        "metadata": sample_metadata("penguin"),
        "max_query": {"epsilon": 2, "delta": 1e-5},
    }
    created = boss.post("/admin/datasets", body)
    assert created.status_code == 201, created.text
    assert created.json()["max_query"] == {"epsilon": 2.0, "delta": 1e-5}
    assert created.json()["spent"] == {"epsilon": 0.0, "delta": 0.0}
    assert boss.post("/admin/datasets", body).status_code == 409

    limits = boss.send(
        "PUT", f"/admin/datasets/{name}/limits", {"max_query": None, "cap": {"epsilon": 50}}
    )
    assert limits.status_code == 200
    assert limits.json()["cap"] == {"epsilon": 50.0, "delta": 0.0}
    assert limits.json()["max_query"] is None
    names = [d["name"] for d in boss.get("/admin/datasets").json()["datasets"]]
    assert name in names


def test_a_dataset_whose_rows_break_its_metadata_is_refused_over_http_too(boss):
    metadata = sample_metadata("penguin")
    metadata["columns"]["bill_length_mm"]["upper"] = 1.0  # the file's values pass it
    reply = boss.post(
        "/admin/datasets",
        {"name": "BROKEN", "location": str(SAMPLE_DATA / "penguin.csv"), "metadata": metadata},
    )
    assert reply.status_code in (400, 503)
    assert "BROKEN" not in [d["name"] for d in boss.get("/admin/datasets").json()["datasets"]]


@pytest.mark.parametrize(
    ("path", "method", "body", "named"),
    [
        ("/admin/users", "POST", {"nme": "x"}, "nme"),
        ("/admin/users", "POST", {"name": 5}, "name"),
        ("/admin/users/x/grants/PENGUIN", "PUT", {"epsilon": -1}, "epsilon"),
        ("/admin/users/x/grants/PENGUIN", "PUT", {"epsilon": 1, "delta": 1}, "delta"),
        ("/admin/datasets", "POST", {"name": "A", "location": "x"}, "metadata"),
        ("/admin/datasets/PENGUIN/limits", "PUT", {"max_query": None}, "cap"),
        ("/admin/budget-requests/abc/deny", "POST", {}, "note"),
        ("/admin/budget-requests/abc/approve", "POST", {"epsilon": "2"}, "epsilon"),
    ],
)
def test_bad_admin_bodies_are_400_naming_the_field(boss, path, method, body, named):
    reply = boss.send(method, path, body)
    assert reply.status_code == 400
    assert named in reply.json()["message"]


def test_a_grant_for_a_missing_user_or_dataset_is_404(boss, make_user):
    user = make_user()
    missing_user = boss.send("PUT", "/admin/users/nobody-here/grants/PENGUIN", {"epsilon": 1})
    assert missing_user.status_code == 404
    missing_dataset = boss.send("PUT", f"/admin/users/{user.name}/grants/NOPE", {"epsilon": 1})
    assert missing_dataset.status_code == 404


# -- budget requests ---------------------------------------------------------------------------
def test_an_analyst_asks_and_an_admin_approves_growing_the_grant(make_user, boss):
    user = make_user(PENGUIN=(1.0, 1e-5))
    asked = user.api.post(
        "/datasets/PENGUIN/budget-requests", {"epsilon": 2, "reason": "a second wave of tables"}
    )
    assert asked.status_code == 201, asked.text
    request = asked.json()
    assert request["state"] == "pending" and request["requested"]["epsilon"] == 2
    # One pending request per dataset at a time.
    again = user.api.post("/datasets/PENGUIN/budget-requests", {"epsilon": 1, "reason": "more"})
    assert again.status_code == 409

    pending = boss.get("/admin/budget-requests", params={"state": "pending", "user": user.name})
    assert [r["id"] for r in pending.json()["budget_requests"]] == [request["id"]]
    approved = boss.post(f"/admin/budget-requests/{request['id']}/approve", {"note": "fine"})
    assert approved.status_code == 200
    assert approved.json()["state"] == "approved"
    assert approved.json()["granted"]["epsilon"] == 2
    budget = user.api.get("/datasets/PENGUIN/budget").json()
    assert budget["initial"]["epsilon"] == pytest.approx(3.0)

    assert (
        boss.post(f"/admin/budget-requests/{request['id']}/deny", {"note": "x"}).status_code == 409
    )
    mine = user.api.get("/budget-requests").json()["budget_requests"]
    assert [(r["id"], r["state"], r["note"]) for r in mine] == [(request["id"], "approved", "fine")]


def test_an_admin_denies_with_a_reason_the_analyst_reads(make_user, boss):
    user = make_user(TITANIC=(1.0, 0.0))
    request = user.api.post(
        "/datasets/TITANIC/budget-requests", {"epsilon": 50, "reason": "everything"}
    ).json()
    denied = boss.post(
        f"/admin/budget-requests/{request['id']}/deny", {"note": "too much; ask for 2"}
    )
    assert denied.json()["state"] == "denied"
    assert user.api.get("/datasets/TITANIC/budget").json()["initial"]["epsilon"] == 1.0
    (mine,) = user.api.get("/budget-requests").json()["budget_requests"]
    assert mine["note"] == "too much; ask for 2" and mine["decided_by"]
    # Decided: the analyst may ask again.
    again = user.api.post("/datasets/TITANIC/budget-requests", {"epsilon": 2, "reason": "ok"})
    assert again.status_code == 201


def test_asking_on_a_dataset_not_granted_reads_exactly_like_a_missing_one(make_user):
    user = make_user(PENGUIN=(1.0, 0.0))
    body = {"epsilon": 1, "reason": "please"}
    not_mine = user.api.post("/datasets/TITANIC/budget-requests", body)
    missing = user.api.post("/datasets/NO_SUCH/budget-requests", body)
    assert not_mine.status_code == missing.status_code == 404
    assert not_mine.json()["message"].replace("TITANIC", "X") == missing.json()["message"].replace(
        "NO_SUCH", "X"
    )
    assert user.api.get("/budget-requests").json() == {"budget_requests": []}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"reason": "x"}, "epsilon"),
        ({"epsilon": 0, "reason": "x"}, "epsilon"),
        ({"epsilon": 1}, "reason"),
        ({"epsilon": 1, "reason": "   "}, "reason"),
        ({"epsilon": 1, "reason": "x" * 2001}, "reason"),
        ({"epsilon": 1, "reason": "x", "grant_to": "me"}, "grant_to"),
    ],
)
def test_bad_budget_requests_are_400_naming_the_field(make_user, body, named):
    user = make_user(PENGUIN=(1.0, 0.0))
    reply = user.api.post("/datasets/PENGUIN/budget-requests", body)
    assert reply.status_code == 400
    assert named in reply.json()["message"]


def test_the_metadata_file_round_trips_through_the_admin_api(boss):
    # The admin client sends a YAML metadata file as a JSON object: the same document.
    metadata = yaml.safe_load((SAMPLE_DATA / "titanic.yaml").read_text())
    name = f"TITANIC_{uuid.uuid4().hex[:6]}"
    reply = boss.post(
        "/admin/datasets",
        {"name": name, "location": str(SAMPLE_DATA / "titanic.csv"), "metadata": metadata},
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["columns"] == list(metadata["columns"])


def test_an_admin_decides_a_request_by_the_short_id_the_analyst_sees(make_user, boss):
    user = make_user(PENGUIN=(1.0, 0.0))
    request = user.api.post(
        "/datasets/PENGUIN/budget-requests", {"epsilon": 1, "reason": "one more table"}
    ).json()
    short = request["id"][:8]
    approved = boss.post(f"/admin/budget-requests/{short}/approve", {})
    assert approved.status_code == 200, approved.text
    assert approved.json()["id"] == request["id"]
    assert (
        boss.post(f"/admin/budget-requests/{request['id'][:7]}/deny", {"note": "x"}).status_code
        == 404
    )
