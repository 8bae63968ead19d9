"""lomas-server as a JupyterHub service, end to end: a real JupyterHub 5+/6 with
configurable-http-proxy, the dummy authenticator and local single-user servers, on loopback.

Analysts connect from their own kernels with no token (the kernel's Hub token is their
identity); their spends are charged to their Hub user; another analyst sees none of it; a Hub
user outside the service's group gets 403; an admin (a member of ``lomas-admins``) grants
budgets and decides budget requests from their own kernel through the admin API.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from lomas_server.service.admin import AdminService
from lomas_server.store import open_store
from tests.conftest import seed_datasets
from tests.jupyterhub import PROXY, JupyterHubProcess, RemoteKernel

pytestmark = pytest.mark.skipif(
    not PROXY.exists(), reason="configurable-http-proxy is not installed (scripts/setup)"
)
ROOT = Path(__file__).resolve().parents[2]
ANALYSTS, ADMIN, OUTSIDER = ("alice", "bob"), "carol", "dave"


@pytest.fixture(scope="module")
def store_url(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("hub-store")
    url = f"sqlite:///{folder / 'admin.sqlite'}"
    store = open_store(url)
    seed_datasets(AdminService(store), folder / "data")
    store.close()
    return url


@pytest.fixture(scope="module")
def hub(tmp_path_factory, store_url) -> Iterator[JupyterHubProcess]:
    process = JupyterHubProcess(
        tmp_path_factory.mktemp("hub"),
        store_url,
        groups={"lomas-users": [*ANALYSTS, ADMIN], "lomas-admins": [ADMIN]},
        lomas_args=("--HubIdentityProvider.analyst_groups=lomas-users",),
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def kernels(hub) -> Iterator[dict[str, RemoteKernel]]:
    """One kernel in each user's own single-user server, with the magics loaded."""
    started = {}
    try:
        for user in (*ANALYSTS, ADMIN):
            kernel = RemoteKernel(hub.start_server(user), hub.user_token(user))
            loaded = kernel.run("%load_ext lomas_jupyter")
            assert loaded["error"] is None, loaded
            started[user] = kernel
        yield started
    finally:
        for kernel in started.values():
            kernel.shutdown()


def _ok(reply: dict) -> dict:
    assert reply["error"] is None, reply
    return reply


def _value(kernel: RemoteKernel, expression: str):
    """A JSON-able value computed in the kernel."""
    reply = _ok(kernel.run(f"import json as _j; print(_j.dumps({expression}))"))
    return json.loads(reply["text"].strip().splitlines()[-1])


def _spent(store_url: str, user: str, dataset: str) -> float:
    store = open_store(store_url)
    try:
        return store.spent(user, dataset).epsilon
    finally:
        store.close()


def test_an_analyst_connects_from_their_kernel_with_no_token(kernels):
    reply = _ok(kernels["alice"].run("%lomas_connect"))
    shown = reply["text"] + json.dumps(reply["data"])
    assert "alice" in shown
    # No lomas token exists anywhere: the kernel's own Hub token is the identity.
    assert _value(kernels["alice"], "__import__('os').environ.get('LOMAS_TOKEN')") is None
    me = _value(kernels["alice"], "__import__('lomas_jupyter').Client.discover().me().user")
    assert me == "alice"


def test_a_hub_user_without_a_grant_sees_no_dataset(kernels):
    _ok(kernels["bob"].run("%lomas_connect"))
    assert (
        _value(
            kernels["bob"],
            "[d.name for d in __import__('lomas_jupyter').Client.discover().datasets()]",
        )
        == []
    )


def test_the_admin_grants_from_their_notebook_and_the_spend_is_the_analysts(kernels, store_url):
    admin = kernels[ADMIN]
    _ok(admin.run("from lomas_jupyter import AdminClient\nadmin = AdminClient.discover()"))
    _ok(admin.run("admin.grant('alice', 'PENGUIN', 3.0, 1e-5)"))

    alice = kernels["alice"]
    _ok(alice.run("%lomas_connect"))
    reply = _ok(
        alice.run(
            "%%lomas_sql --dataset PENGUIN --epsilon 0.5\n"
            "SELECT species, COUNT(*) AS n FROM df GROUP BY species"
        )
    )
    assert reply["data"], "the result is displayed"
    assert _spent(store_url, "alice", "PENGUIN") == pytest.approx(0.5)
    assert _spent(store_url, "bob", "PENGUIN") == 0.0
    # Bob sees neither the dataset nor alice's archive.
    bob = "__import__('lomas_jupyter').Client.discover()"
    assert _value(kernels["bob"], f"[q.query_id for q in {bob}.queries()]") == []
    assert _value(kernels["bob"], f"[d.name for d in {bob}.datasets()]") == []


def test_a_budget_request_is_asked_in_one_notebook_and_approved_in_the_admin_notebook(kernels):
    """alice asks from her kernel; carol runs examples/admin.ipynb in hers, whose policy
    approves what fits one study; alice then reads the decision."""
    alice, admin = kernels["alice"], kernels[ADMIN]
    _ok(alice.run("%lomas_connect"))
    _ok(
        admin.run(
            "from lomas_jupyter import AdminClient\nAdminClient.discover().grant('alice', 'TITANIC', 1.0)"
        )
    )
    reason = f"survival tables {uuid.uuid4().hex[:6]}"
    asked = _ok(alice.run(f'%lomas_request_budget TITANIC --epsilon 2 --reason "{reason}"'))
    assert "pending" in asked["text"] + json.dumps(asked["data"])

    notebook = json.loads((ROOT / "examples" / "admin.ipynb").read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            _ok(admin.run("".join(cell["source"])))

    budget = _value(
        alice, "__import__('lomas_jupyter').Client.discover().budget('TITANIC').initial['epsilon']"
    )
    assert budget == pytest.approx(3.0)
    listed = _ok(alice.run("%lomas_budget_requests"))
    assert "approved" in listed["text"] + json.dumps(listed["data"])
    mine = _value(
        alice,
        "[(r.state, r.decided_by) for r in "
        "__import__('lomas_jupyter').Client.discover().budget_requests()]",
    )
    assert mine == [["approved", ADMIN]]


def test_a_hub_user_outside_the_services_group_gets_403(hub):
    # dave holds the access scope, as every Hub user does, but is in no group the service
    # allows.
    token = hub.user_token(OUTSIDER, scopes=["access:services!service=lomas"])
    reply = requests.get(
        f"{hub.lomas_url}lomas/api/v1/datasets",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert reply.status_code == 403
    assert reply.json()["error"] == "forbidden"
    assert "lomas-users" in reply.json()["message"]


def test_a_token_without_the_access_scope_is_refused_even_an_admins(hub):
    """Any token a user owns names them to the Hub (an OAuth token another service got, say):
    only those that carry access:services!service=lomas may act for them here."""
    narrow = hub.user_token(ADMIN, scopes=["read:users:name!user"])
    for path in ("admin/users", "datasets", "me"):
        reply = requests.get(
            f"{hub.lomas_url}lomas/api/v1/{path}",
            headers={"Authorization": f"token {narrow}"},
            timeout=30,
        )
        assert reply.status_code == 403, path
        assert "access:services!service=lomas" in reply.json()["message"]


def test_an_analyst_is_refused_the_admin_api_and_bad_tokens_are_401(hub):
    analyst = hub.user_token("alice")
    admin_api = f"{hub.lomas_url}lomas/api/v1/admin/users"
    refused = requests.get(admin_api, headers={"Authorization": f"token {analyst}"}, timeout=30)
    assert refused.status_code == 403
    for header in (f"token {uuid.uuid4().hex}", f"token {hub.driver_token}", None):
        headers = {"Authorization": header} if header else {}
        reply = requests.get(f"{hub.lomas_url}lomas/api/v1/datasets", headers=headers, timeout=30)
        assert reply.status_code == 401, header
    admin = hub.user_token(ADMIN)
    users = requests.get(admin_api, headers={"Authorization": f"token {admin}"}, timeout=30)
    assert users.status_code == 200
    names = {u["name"] for u in users.json()["users"]}
    assert {"alice", "carol"} <= names


def test_under_the_hub_an_admin_creates_users_without_tokens_and_no_store_admins(hub):
    admin = {"Authorization": f"token {hub.user_token(ADMIN)}"}
    api = f"{hub.lomas_url}lomas/api/v1/admin/users"
    name = f"erin-{uuid.uuid4().hex[:6]}"
    created = requests.post(api, json={"name": name}, headers=admin, timeout=30)
    assert created.status_code == 201
    assert created.json()["token"] is None  # Hub users sign in with their Hub token
    refused = requests.post(
        api, json={"name": name + "x", "admin": True}, headers=admin, timeout=30
    )
    assert refused.status_code == 400
    assert "admin groups" in refused.json()["message"]
    rotate = requests.post(f"{api}/{name}/token", headers=admin, timeout=30)
    assert rotate.status_code == 409
