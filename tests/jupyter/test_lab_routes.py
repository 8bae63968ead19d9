"""The JupyterLab panel's read-only routes on the analyst's own Jupyter server (a real
``jupyter server`` with the extension, on loopback), reading the real DP server."""

from __future__ import annotations

import json

import pytest
import requests

from lomas_jupyter import Client
from tests.conftest import new_user
from tests.servers import AnalystJupyter, free_port

ROUTES = "/lomas-jupyter/api"


@pytest.fixture(scope="module")
def analyst(admin, server):
    return new_user(admin, server, PENGUIN=(3.0, 1e-4), TITANIC=(2.0, 1e-3))


@pytest.fixture(scope="module")
def jupyter(analyst, server, tmp_path_factory):
    process = AnalystJupyter(
        tmp_path_factory.mktemp("analyst-jupyter"),
        {"LOMAS_URL": server.url, "LOMAS_TOKEN": analyst.token},
    ).start()
    yield process
    process.stop()


def test_datasets_with_budgets_and_no_token_in_the_page(jupyter, analyst, server):
    reply = jupyter.get(ROUTES + "/datasets")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["connected"] is True and body["url"] == server.url
    # the account as the kernel's outputs name it (a hash of the token, not the token)
    assert body["account"] == Client(server.url, analyst.token).account
    by_name = {d["name"]: d for d in body["datasets"]}
    assert set(by_name) == {"PENGUIN", "TITANIC"}
    assert by_name["PENGUIN"]["initial"] == {"epsilon": 3.0, "delta": 1e-4}
    assert by_name["PENGUIN"]["remaining"]["epsilon"] <= 3.0
    assert analyst.token not in reply.text  # the lomas token stays on the server


def test_the_routes_need_the_analysts_jupyter_login(jupyter):
    for path in ("/datasets", "/datasets/PENGUIN/columns", "/queries"):
        reply = requests.get(jupyter.url + ROUTES + path, timeout=30)
        assert reply.status_code == 403, path


def test_they_only_read(jupyter):
    for method in ("POST", "PUT", "DELETE"):
        reply = requests.request(
            method, jupyter.url + ROUTES + "/datasets", headers=jupyter.headers, timeout=30
        )
        assert reply.status_code == 405, method


def test_columns_say_what_may_be_grouped(jupyter):
    reply = jupyter.get(ROUTES + "/datasets/PENGUIN/columns")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    columns = {c["name"]: c for c in body["columns"]}
    assert body["dataset"] == "PENGUIN" and body["max_ids"] == 1
    assert columns["species"]["public_keys"] is True
    assert columns["species"]["categories"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert (columns["body_mass_g"]["lower"], columns["body_mass_g"]["upper"]) == (2000.0, 7000.0)
    json.dumps(body, allow_nan=False)  # no NaN for a missing bound


def test_an_unknown_dataset_is_the_servers_404(jupyter):
    reply = jupyter.get(ROUTES + "/datasets/NOPE/columns")
    assert reply.status_code == 404
    assert reply.json()["error"] == "dataset_not_found" and "NOPE" in reply.json()["message"]


def test_recent_queries_newest_first_with_replay_marks(jupyter, analyst):
    for epsilon in (0.1, 0.2):
        body = {"query": "SELECT COUNT(*) AS n FROM df", "epsilon": epsilon}
        assert analyst.api.post("/datasets/PENGUIN/smartnoise-sql", body).status_code == 200
    queries = jupyter.get(ROUTES + "/queries", params={"dataset": "PENGUIN"}).json()["queries"]
    assert [q["cost"]["epsilon"] for q in queries[:2]] == [0.2, 0.1]
    assert all(q["replayable"] for q in queries[:2])  # each would replay for free
    assert len(jupyter.get(ROUTES + "/queries", params={"limit": "1"}).json()["queries"]) == 1
    bad = jupyter.get(ROUTES + "/queries", params={"limit": "0"})
    assert bad.status_code == 400 and "'limit'" in bad.json()["message"]


def test_without_a_connection_the_panel_is_told_so(tmp_path):
    alone = AnalystJupyter(tmp_path, {}).start()
    try:
        body = alone.get(ROUTES + "/datasets").json()
        assert body["connected"] is False and body["reason"] == "not_configured"
        assert "LOMAS_URL" in body["message"] and "%lomas_connect" in body["message"]
        reply = alone.get(ROUTES + "/datasets/PENGUIN/columns")
        assert reply.status_code == 503 and reply.json()["error"] == "not_connected"
    finally:
        alone.stop()


def test_a_dp_server_that_does_not_answer_is_one_line(tmp_path):
    gone = f"http://127.0.0.1:{free_port()}"
    alone = AnalystJupyter(tmp_path, {"LOMAS_URL": gone, "LOMAS_TOKEN": "x"}).start()
    try:
        body = alone.get(ROUTES + "/datasets").json()
        assert body["connected"] is False and body["reason"] == "unreachable"
        assert "\n" not in body["message"]
        assert alone.get(ROUTES + "/queries").status_code == 502
    finally:
        alone.stop()


def test_the_demo_connection_file_in_the_root_folder_is_found(tmp_path, analyst, server):
    (tmp_path / "lomas-demo").mkdir()
    (tmp_path / "lomas-demo" / "connection.json").write_text(
        json.dumps({"url": server.url, "token": analyst.token, "user": analyst.name})
    )
    alone = AnalystJupyter(tmp_path, {}).start()
    try:
        body = alone.get(ROUTES + "/datasets").json()
        assert body["connected"] is True and body["user"] == analyst.name
    finally:
        alone.stop()


def test_under_jupyterhub_the_panel_connects_with_the_servers_hub_token(tmp_path, analyst, server):
    """A Hub single-user server has the same Hub token as its kernels; a lomas server in
    token identity takes a lomas token in its place, which stands in for a Hub here."""
    hub = {
        "JUPYTERHUB_API_TOKEN": analyst.token,
        "JUPYTERHUB_USER": analyst.name,
        "LOMAS_URL": server.url,
    }
    alone = AnalystJupyter(tmp_path, hub).start()
    try:
        body = alone.get(ROUTES + "/datasets").json()
        assert body["connected"] is True and body["user"] == analyst.name
        assert {d["name"] for d in body["datasets"]} == {"PENGUIN", "TITANIC"}
    finally:
        alone.stop()


def test_a_hub_that_does_not_say_where_lomas_is_tells_its_admin(tmp_path):
    alone = AnalystJupyter(tmp_path, {"JUPYTERHUB_API_TOKEN": "hub-token"}).start()
    try:
        body = alone.get(ROUTES + "/datasets").json()
        assert body["connected"] is False and body["reason"] == "not_configured"
        assert "LOMAS_URL" in body["message"] and "c.Spawner.environment" in body["message"]
    finally:
        alone.stop()
