"""Who gets what: every endpoint of the served OpenAPI document x every kind of caller.

``EXPECTED`` is the table (one row per endpoint, one column per kind of caller, the status
each must get); a served endpoint without a row fails ``test_every_served_endpoint_has_a_row``.
Every cell sends the same request (a valid one, so only the caller decides the answer) and
checks, besides its status:

- the status is one the served OpenAPI document lists for that operation, and every 4xx is a
  JSON ``{"error", "message"}``;
- nothing of other users is in the reply: their names, tokens, query ids, an alias only the
  victim's archived query used, or the victim's noisy results;
- a refused request spends nothing (ledger and archive unchanged);
- a 401 is the same bytes whoever asks and whatever dataset is named (a rotated-out token looks
  like any wrong token, an existing dataset like a missing one);
- "exists but is not yours" is byte-identical to "does not exist" (names and ids removed),
  headers included;
- another user's identical earlier queries are neither replayed nor announced (``replay_of``)
  to the caller, and the archive shows only the caller's own queries;
- the public endpoints (health, the OpenAPI document) answer every caller the same bytes and
  name no dataset or user.

``python -m tests.handlers.test_authorization_matrix`` prints the table as Markdown.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import requests

SCENARIOS = (
    "owner",
    "no_token",
    "malformed_token",
    "wrong_token",
    "rotated_token",
    "blocked_user",
    "not_granted",
    "missing_dataset",
    "others_archive",
)
DESCRIPTIONS = {
    "owner": "the user, on a dataset granted to them (the baseline)",
    "no_token": "no Authorization header",
    "malformed_token": "a header that is not 'token <T>' / 'Bearer <T>' (even around a valid token)",
    "wrong_token": "a well-formed token no user has",
    "rotated_token": "a user's token after the admin rotated it",
    "blocked_user": "a user the admin blocked from querying (set_may_query False), own dataset",
    "not_granted": "a user asking for another user's dataset they have no grant on",
    "missing_dataset": "a user asking for a dataset that does not exist",
    "others_archive": "a user sharing the dataset with another user who ran the same queries "
    "first; /queries asks for the other's archive",
}
# Status per endpoint, in SCENARIOS order.
# fmt: off
EXPECTED: dict[tuple[str, str], tuple[int, ...]] = {
    ("GET", "/health"):                               (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/openapi.json"):                         (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/openapi.yaml"):                         (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/datasets"):                             (200, 401, 401, 401, 401, 200, 200, 200, 200),
    ("GET", "/datasets/{name}/metadata"):             (200, 401, 401, 401, 401, 200, 404, 404, 200),
    ("GET", "/datasets/{name}/budget"):               (200, 401, 401, 401, 401, 200, 404, 404, 200),
    ("POST", "/datasets/{name}/dummy"):               (200, 401, 401, 401, 401, 200, 404, 404, 200),
    ("POST", "/datasets/{name}/smartnoise-sql/cost"): (200, 401, 401, 401, 401, 403, 404, 404, 200),
    ("POST", "/datasets/{name}/smartnoise-sql"):      (200, 401, 401, 401, 401, 403, 404, 404, 200),
    ("POST", "/datasets/{name}/opendp/cost"):         (200, 401, 401, 401, 401, 403, 404, 404, 200),
    ("POST", "/datasets/{name}/opendp"):              (200, 401, 401, 401, 401, 403, 404, 404, 200),
    ("POST", "/datasets/{name}/synth/cost"):          (200, 401, 401, 401, 401, 403, 404, 404, 200),
    ("POST", "/datasets/{name}/synth"):               (200, 401, 401, 401, 401, 403, 404, 404, 200),
    ("POST", "/datasets/{name}/diffprivlib/cost"):    (200, 401, 401, 401, 401, 403, 404, 404, 200),
    ("POST", "/datasets/{name}/diffprivlib"):         (200, 401, 401, 401, 401, 403, 404, 404, 200),
    ("GET", "/queries"):                              (200, 401, 401, 401, 401, 200, 404, 404, 200),
    ("GET", "/me"):                                   (200, 401, 401, 401, 401, 200, 200, 200, 200),
    ("POST", "/datasets/{name}/budget-requests"):     (201, 401, 401, 401, 401, 201, 404, 404, 201),
    ("GET", "/budget-requests"):                      (200, 401, 401, 401, 401, 200, 200, 200, 200),
    **{
        key: (403, 401, 401, 401, 401, 403, 403, 403, 403)
        for key in (
            ("GET", "/admin/users"),
            ("POST", "/admin/users"),
            ("GET", "/admin/users/{name}"),
            ("PATCH", "/admin/users/{name}"),
            ("POST", "/admin/users/{name}/token"),
            ("GET", "/admin/users/{name}/budgets"),
            ("GET", "/admin/users/{name}/queries"),
            ("PUT", "/admin/users/{name}/grants/{dataset}"),
            ("GET", "/admin/datasets"),
            ("POST", "/admin/datasets"),
            ("PUT", "/admin/datasets/{name}/limits"),
            ("GET", "/admin/budget-requests"),
            ("POST", "/admin/budget-requests/{request_id}/approve"),
            ("POST", "/admin/budget-requests/{request_id}/deny"),
        )
    },
}
# fmt: on
DATASET = "PENGUIN"
MISSING = "NO_SUCH_DATASET"
PUBLIC = {("GET", "/health"), ("GET", "/openapi.json"), ("GET", "/openapi.yaml")}
RELEASES = {
    ("POST", "/datasets/{name}/smartnoise-sql"),
    ("POST", "/datasets/{name}/opendp"),
    ("POST", "/datasets/{name}/synth"),
    ("POST", "/datasets/{name}/diffprivlib"),
}
ESTIMATES = {
    ("POST", "/datasets/{name}/smartnoise-sql/cost"),
    ("POST", "/datasets/{name}/opendp/cost"),
    ("POST", "/datasets/{name}/synth/cost"),
    ("POST", "/datasets/{name}/diffprivlib/cost"),
}
SHARED_ALIAS = "shared_alias"  # the victim and the others send these very queries
SQL = {"query": f"SELECT AVG(body_mass_g) AS {SHARED_ALIAS} FROM df", "epsilon": 0.5}
OPENDP = {
    "query": {"aggregates": [{"op": "mean", "column": "body_mass_g", "as": SHARED_ALIAS}]},
    "epsilon": 0.5,
}
# Synthetic rows of two small public domains (the quickest fit), and a model.
SYNTH = {"synthesizer": "mst", "columns": ["species", "sex"], "epsilon": 0.5, "rows": 10}
DIFFPRIVLIB = {"model": "pca", "features": ["bill_length_mm", "body_mass_g"], "epsilon": 0.5}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/datasets/{name}/dummy"): {"rows": 3, "seed": 1},
    ("POST", "/datasets/{name}/smartnoise-sql/cost"): SQL,
    ("POST", "/datasets/{name}/smartnoise-sql"): SQL,
    ("POST", "/datasets/{name}/opendp/cost"): OPENDP,
    ("POST", "/datasets/{name}/opendp"): OPENDP,
    ("POST", "/datasets/{name}/synth/cost"): SYNTH,
    ("POST", "/datasets/{name}/synth"): SYNTH,
    ("POST", "/datasets/{name}/diffprivlib/cost"): DIFFPRIVLIB,
    ("POST", "/datasets/{name}/diffprivlib"): DIFFPRIVLIB,
    ("POST", "/datasets/{name}/budget-requests"): {"epsilon": 1, "reason": "more tables"},
    # Valid admin requests: only the caller (never an admin here) decides the answer.
    ("POST", "/admin/users"): {"name": "made-by-a-non-admin"},
    ("PATCH", "/admin/users/{name}"): {"may_query": True},
    ("PUT", "/admin/users/{name}/grants/{dataset}"): {"epsilon": 1000},
    ("POST", "/admin/datasets"): {"name": "X", "location": "/etc/passwd", "metadata": {}},
    ("PUT", "/admin/datasets/{name}/limits"): {"max_query": None, "cap": None},
    ("POST", "/admin/budget-requests/{request_id}/approve"): {"epsilon": 1000},
    ("POST", "/admin/budget-requests/{request_id}/deny"): {"note": "no"},
}
QUERY_ID = re.compile(r"\b[0-9a-f]{32}\b")


def markdown_table() -> str:
    lines = [
        "| endpoint | " + " | ".join(SCENARIOS) + " |",
        "| --- | " + " | ".join("---" for _ in SCENARIOS) + " |",
    ]
    for (method, path), row in EXPECTED.items():
        shown = path + ("?dataset={name}" if path == "/queries" else "")
        lines.append(f"| `{method} {shown}` | " + " | ".join(map(str, row)) + " |")
    lines.append("")
    lines.extend(f"- `{name}`: {text}" for name, text in DESCRIPTIONS.items())
    return "\n".join(lines)


@dataclass
class Member:
    name: str
    token: str


@dataclass
class Cast:
    owner: Member
    victim: Member
    blocked: Member
    rotated: Member  # token: the one rotated out
    outsider: Member  # granted TITANIC only
    victim_ids: set[str]
    victim_only_alias: str
    victim_numbers: set[float]

    def members(self) -> list[Member]:
        return [self.owner, self.victim, self.blocked, self.rotated, self.outsider]


def _user(admin, **grants: tuple[float, float]) -> Member:
    name = f"authz-{uuid.uuid4().hex[:10]}"
    token = admin.add_user(name)
    for dataset, (epsilon, delta) in grants.items():
        admin.grant(name, dataset, epsilon, delta)
    return Member(name, token)


def _numbers(value: Any) -> set[float]:
    """Every non-whole number in a JSON value (noisy results are)."""
    if isinstance(value, bool):
        return set()
    if isinstance(value, float):
        return {value} if value != int(value) else set()
    if isinstance(value, dict):
        return set().union(*map(_numbers, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(_numbers, value)) if value else set()
    return set()


@pytest.fixture(scope="module")
def served(server) -> dict[str, Any]:
    return requests.get(server.api + "/openapi.json", timeout=30).json()


@pytest.fixture(scope="module")
def cast(admin, server) -> Cast:
    owner = _user(admin, PENGUIN=(100.0, 1e-3), TITANIC=(100.0, 1e-3))
    victim = _user(admin, PENGUIN=(100.0, 1e-3))
    blocked = _user(admin, PENGUIN=(100.0, 1e-3))
    admin.set_may_query(blocked.name, False)
    rotated = _user(admin, PENGUIN=(100.0, 1e-3))
    admin.rotate_token(rotated.name)
    outsider = _user(admin, TITANIC=(100.0, 1e-3))
    # The victim's archive: the shared queries, and one only the victim ever sends.
    alias = f"victim_only_{uuid.uuid4().hex[:8]}"
    own_sql = {"query": f"SELECT AVG(flipper_length_mm) AS {alias} FROM df", "epsilon": 0.5}
    session = requests.Session()
    session.headers["Authorization"] = f"token {victim.token}"
    ids, numbers = set(), set()
    sent = (
        ("smartnoise-sql", SQL),
        ("opendp", OPENDP),
        ("synth", SYNTH),
        ("diffprivlib", DIFFPRIVLIB),
        ("smartnoise-sql", own_sql),
    )
    for path, body in sent:
        reply = session.post(f"{server.api}/datasets/{DATASET}/{path}", json=body, timeout=120)
        assert reply.status_code == 200, reply.text
        ids.add(reply.json()["query_id"])
        numbers |= _numbers(reply.json()["result"])
    assert len(ids) == len(sent) and numbers, "the victim's queries must be real releases"
    return Cast(owner, victim, blocked, rotated, outsider, ids, alias, numbers)


@dataclass
class Call:
    """One request: who (an Authorization header or none), which dataset name."""

    header: str | None
    name: str
    caller: Member | None


def _caller(scenario: str, cast: Cast, admin) -> list[Call]:
    token = cast.owner.token
    if scenario == "owner":
        return [Call(f"token {token}", DATASET, cast.owner)]
    if scenario == "no_token":
        return [Call(None, DATASET, None)]
    if scenario == "malformed_token":
        basic = base64.b64encode(f"{cast.owner.name}:{token}".encode()).decode()
        headers = [
            "token",
            "Bearer",
            token,
            f"Basic {basic}",
            f"token {token} extra",
            f"tokens {token}",
            f"token,{token}",
            f"Cookie token={token}",
        ]
        return [Call(header, DATASET, None) for header in headers]
    if scenario == "wrong_token":
        return [Call(f"token lomas_{uuid.uuid4().hex}", DATASET, None)]
    if scenario == "rotated_token":
        return [Call(f"Bearer {cast.rotated.token}", DATASET, None)]
    if scenario == "blocked_user":
        return [Call(f"token {cast.blocked.token}", DATASET, cast.blocked)]
    if scenario == "not_granted":
        return [Call(f"token {cast.outsider.token}", DATASET, cast.outsider)]
    if scenario == "missing_dataset":
        return [Call(f"token {token}", MISSING, cast.owner)]
    if scenario == "others_archive":
        other = _user(admin, PENGUIN=(100.0, 1e-3))  # fresh: nothing of its own to replay
        return [Call(f"token {other.token}", DATASET, other)]
    raise AssertionError(scenario)


def _send(server, method: str, path: str, call: Call, **params: str) -> requests.Response:
    headers = {} if call.header is None else {"Authorization": call.header}
    url = server.api + path.replace("{name}", call.name)
    if path == "/queries":
        params = {"dataset": call.name, **params}
    body = BODIES.get((method, path))
    return requests.request(method, url, headers=headers, json=body, params=params, timeout=120)


def _state(admin, member: Member | None) -> Any:
    store = admin.store
    totals = tuple(store.dataset_spent(d) for d in ("PENGUIN", "TITANIC"))
    if member is None:
        return totals
    mine = tuple(store.spent(member.name, d) for d in ("PENGUIN", "TITANIC"))
    return totals, mine, len(store.archive(member.name))


def _comparable(reply: requests.Response, name: str) -> tuple[Any, ...]:
    """A reply with the dataset name and ids taken out: status, headers, bytes."""
    text = reply.content.decode()
    body = QUERY_ID.sub("<id>", text.replace(name, "<dataset>") if name else text)
    skip = {"date", "content-length", "etag"}
    headers = sorted((k.lower(), v) for k, v in reply.headers.items() if k.lower() not in skip)
    return reply.status_code, headers, body


def _assert_reveals_nothing(reply: requests.Response, cast: Cast, caller: Member | None) -> None:
    text = reply.content.decode("utf-8", errors="replace")
    for member in cast.members():
        assert member.token not in text, "a token is in the reply"
        if caller is None or member.name != caller.name:
            assert member.name not in text, f"another user's name ({member.name}) is in the reply"
    for query_id in cast.victim_ids:
        assert query_id not in text, "another user's query id is in the reply"
    assert cast.victim_only_alias not in text, "another user's query is in the reply"
    if reply.headers.get("Content-Type", "").startswith("application/json"):
        leaked = _numbers(reply.json()) & cast.victim_numbers
        assert not leaked, f"another user's noisy results {leaked} are in the reply"


def test_every_served_endpoint_has_a_row(served):
    operations = {
        (method.upper(), path)
        for path, item in served["paths"].items()
        for method in item
        if method.lower() in {"get", "post", "put", "patch", "delete"}
    }
    assert operations - set(EXPECTED) == set(), "served endpoints without a row in EXPECTED"
    assert set(EXPECTED) - operations == set(), "rows in EXPECTED for endpoints not served"
    public = {
        key for key in operations if served["paths"][key[1]][key[0].lower()].get("security") == []
    }
    assert public == PUBLIC, "the public endpoints are /health and the OpenAPI document only"
    assert all(EXPECTED[key] == (200,) * len(SCENARIOS) for key in PUBLIC)


CELLS = [
    pytest.param(method, path, scenario, status, id=f"{method} {path} | {scenario}")
    for (method, path), row in EXPECTED.items()
    for scenario, status in zip(SCENARIOS, row, strict=True)
]


@pytest.mark.parametrize(("method", "path", "scenario", "status"), CELLS)
def test_cell(server, admin, cast, served, method, path, scenario, status):
    calls = _caller(scenario, cast, admin)
    replies = []
    for call in calls:
        before = _state(admin, call.caller)
        reply = _send(server, method, path, call)
        replies.append(reply)
        context = f"{method} {path} as {scenario} ({call.header and call.header[:6]}...)"
        assert reply.status_code == status, f"{context}: {reply.status_code} {reply.text[:300]}"
        if reply.status_code >= 400:
            payload = reply.json()
            assert isinstance(payload.get("error"), str) and isinstance(payload.get("message"), str)
            assert _state(admin, call.caller) == before, f"{context}: a refusal changed budgets"
        _assert_reveals_nothing(reply, cast, call.caller)
        if (method, path) not in PUBLIC and call.header is not None and status == 200:
            assert reply.headers["Content-Type"].startswith("application/json")
    first = replies[0]
    key = (method, path)

    # 401s: one answer, whatever the header and whether the dataset exists.
    if status == 401:
        assert first.json()["error"] == "unauthorized"
        reference = _comparable(_send(server, method, path, Call(None, MISSING, None)), MISSING)
        for call, reply in zip(calls, replies, strict=True):
            assert _comparable(reply, call.name) == reference, f"401 differs for {call.header!r}"

    # Exists but is not yours == does not exist, byte for byte.
    if scenario == "not_granted" and status == 404:
        missing = _send(server, method, path, Call(calls[0].header, MISSING, cast.outsider))
        assert _comparable(first, DATASET) == _comparable(missing, MISSING)
        assert first.json()["error"] == "dataset_not_found"
    if scenario == "not_granted" and path == "/datasets":
        assert [d["name"] for d in first.json()["datasets"]] == ["TITANIC"]

    if scenario == "blocked_user" and status == 403:
        assert first.json()["error"] == "forbidden"

    # Public endpoints: the same bytes for everyone, no dataset or user named.
    if key in PUBLIC:
        anonymous = _send(server, method, path, Call(None, DATASET, None))
        for reply in replies:
            assert _comparable(reply, DATASET) == _comparable(anonymous, DATASET)
        for word in ("PENGUIN", "TITANIC", MISSING):
            assert word not in first.text

    if scenario == "others_archive":
        _check_others_archive(server, admin, cast, key, calls[0], first)

    # The status is one the served document lists for the operation.
    documented = served["paths"][path][method.lower()]["responses"]
    assert str(status) in documented, f"{status} is not documented for {method} {path}"


def _check_others_archive(server, admin, cast: Cast, key, call: Call, reply) -> None:
    """The other user's identical earlier queries stay theirs."""
    me = call.caller
    assert me is not None
    if not reply.headers["Content-Type"].startswith("application/json"):
        return  # the document as YAML: no archive in it
    body = reply.json()
    if key in RELEASES:
        assert body["replay_of"] is None, "another user's release was replayed"
        assert body["query_id"] not in cast.victim_ids
        assert body["cost"]["epsilon"] > 0
    if key in ESTIMATES:
        assert body["replay_of"] is None, "the cost announced another user's release"
    if key == ("GET", "/datasets/{name}/budget"):
        assert body["spent"] == {"epsilon": 0.0, "delta": 0.0}
    if key == ("GET", "/datasets"):
        assert [d["budget"]["spent"]["epsilon"] for d in body["datasets"]] == [0.0]
    if key == ("GET", "/queries"):
        assert body["queries"] == []
        # Ways one might ask for someone else's archive: none of them answers it.
        for params in ({"user": cast.victim.name}, {"owner": cast.victim.name}):
            for named in (Call(call.header, DATASET, me), Call(call.header, "", me)):
                other = _send(server, "GET", "/queries", named, **params)
                assert other.status_code in (200, 404)
                _assert_reveals_nothing(other, cast, me)
                if other.status_code == 200:
                    assert other.json()["queries"] == []


def test_a_query_id_is_no_address(server, cast):
    """No URL reads a query by its id: another user's id answers as a made-up one does."""
    session = requests.Session()
    session.headers["Authorization"] = f"token {cast.owner.token}"
    victim_id = sorted(cast.victim_ids)[0]
    made_up = uuid.uuid4().hex
    for template in ("/queries/{}", "/queries/{}/result", "/datasets/PENGUIN/queries/{}"):
        for method in ("GET", "POST", "DELETE"):
            real = session.request(method, server.api + template.format(victim_id), timeout=30)
            fake = session.request(method, server.api + template.format(made_up), timeout=30)
            assert real.status_code == 404 and real.json()["error"] == "not_found"
            assert _comparable(real, DATASET) == _comparable(fake, DATASET)


if __name__ == "__main__":
    print(markdown_table())
