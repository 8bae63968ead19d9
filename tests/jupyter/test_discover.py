"""How a kernel finds the lomas service with no arguments, inside and outside JupyterHub.

A Hub single-user server's environment is only variables (JUPYTERHUB_API_TOKEN, ..._USER,
..._PUBLIC_HUB_URL, ...): these tests set them as a Hub would. The service itself is a real
server on loopback, also served under a path prefix as a Hub service is (/services/lomas/).
Under ``hub`` identity the server asks the Hub whose token it is; a server in ``token``
identity takes a lomas token in the same header, which is what lets these tests check the
client's side without a Hub (tests/hub/ runs a real one).
"""

from __future__ import annotations

import json

import pytest
from IPython.core.interactiveshell import InteractiveShell

import lomas_jupyter
from lomas_jupyter import Client, ClientUsageError, Unauthorized
from lomas_jupyter._client import HUB_TOKEN_SOURCE, hub_service_url
from lomas_server.service.admin import AdminService
from lomas_server.store.sqlite import SqliteStore
from tests.conftest import seed_datasets
from tests.servers import ServerProcess

PREFIX = "/services/lomas/"
COUNT = "SELECT COUNT(*) AS n FROM df"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Only what a test sets says where the service is: not the runner's own settings."""
    import os

    for name in list(os.environ):
        if name.startswith(("LOMAS_", "JUPYTERHUB_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory):
    """A lomas server of its own under /services/lomas/, and a token holding a budget."""
    folder = tmp_path_factory.mktemp("prefixed")
    store = SqliteStore(folder / "admin.sqlite")
    admin = AdminService(store)
    seed_datasets(admin, folder / "data")
    token = admin.add_user("hub-alice")
    admin.grant("hub-alice", "PENGUIN", 3.0, 1e-5)
    store.close()
    process = ServerProcess(
        folder / "admin.sqlite", folder, extra_args=(f"--ServerApp.base_url={PREFIX}",)
    ).start()
    yield process, token
    process.stop()


def under_hub(monkeypatch, token: str, **env: str) -> None:
    """The variables a Hub's spawner sets in a single-user server (jupyterhub/spawner.py)."""
    hub = {
        "JUPYTERHUB_API_TOKEN": token,
        "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
        "JUPYTERHUB_USER": "hub-alice",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/hub-alice/",
        **env,
    }
    for name, value in hub.items():
        monkeypatch.setenv(name, value)


def test_lomas_url_and_lomas_token_come_first_even_under_a_hub(monkeypatch):
    under_hub(monkeypatch, "hub-token", LOMAS_URL="http://lomas.example/")
    monkeypatch.setenv("LOMAS_TOKEN", "lomas-token")
    client = Client.discover()
    assert client.token_source == "LOMAS_TOKEN"
    assert client._session.headers["Authorization"] == "token lomas-token"


def test_under_a_hub_the_kernels_hub_token_goes_to_lomas_url(monkeypatch):
    under_hub(monkeypatch, "hub-token", LOMAS_URL="https://hub.example.org/services/lomas/")
    client = Client.discover()
    assert client.url == "https://hub.example.org/services/lomas"
    assert client.api == "https://hub.example.org/services/lomas/lomas/api/v1"
    assert client._session.headers["Authorization"] == "token hub-token"
    assert (
        client.token_source == HUB_TOKEN_SOURCE == ("your JupyterHub token (JUPYTERHUB_API_TOKEN)")
    )
    assert client.user == "hub-alice"
    assert client.account == Client("x", "hub-token").account  # the token's hash, as ever


@pytest.mark.parametrize(
    ("env", "url"),
    [
        (
            {
                "JUPYTERHUB_PUBLIC_HUB_URL": "https://hub.example.org/hub/",
                "JUPYTERHUB_BASE_URL": "/",
            },
            "https://hub.example.org/services/lomas/",
        ),
        (
            {
                "JUPYTERHUB_PUBLIC_HUB_URL": "https://example.org/jhub/hub/",
                "JUPYTERHUB_BASE_URL": "/jhub/",
            },
            "https://example.org/jhub/services/lomas/",
        ),
        # an older Hub, or one whose base URL the variable alone says
        (
            {"JUPYTERHUB_PUBLIC_HUB_URL": "https://example.org/jhub/hub/"},
            "https://example.org/jhub/services/lomas/",
        ),
        (
            {"JUPYTERHUB_PUBLIC_HUB_URL": "http://10.0.0.1:8000/hub/", "LOMAS_SERVICE_NAME": "dp"},
            "http://10.0.0.1:8000/services/dp/",
        ),
        (
            {"LOMAS_URL": "http://lomas:8080/", "JUPYTERHUB_PUBLIC_HUB_URL": "https://h/hub/"},
            "http://lomas:8080/",
        ),
    ],
)
def test_without_lomas_url_the_hubs_public_address_says_where_the_service_is(env, url):
    assert hub_service_url(env) == url


def test_a_hub_that_does_not_say_where_the_service_is_is_one_line_for_its_admin(monkeypatch):
    # A Hub without public_url sets JUPYTERHUB_PUBLIC_HUB_URL empty; its API URL reaches the
    # Hub, never the proxy in front of its services.
    under_hub(monkeypatch, "hub-token", JUPYTERHUB_PUBLIC_HUB_URL="")
    with pytest.raises(ClientUsageError) as info:
        Client.discover()
    message = str(info.value)
    assert "\n" not in message and "LOMAS_URL" in message and "c.Spawner.environment" in message


def test_a_connection_file_set_on_purpose_wins_over_the_hub_token(monkeypatch, tmp_path):
    path = tmp_path / "connection.json"
    path.write_text(
        json.dumps({"url": "http://lomas.example", "token": "from-file", "user": "bob"})
    )
    under_hub(monkeypatch, "hub-token", LOMAS_URL="http://lomas.example")
    monkeypatch.setenv("LOMAS_CONNECTION_FILE", str(path))
    client = Client.discover()
    assert client._session.headers["Authorization"] == "token from-file" and client.user == "bob"


def test_outside_a_hub_the_demo_file_is_found_as_before(tmp_path):
    (tmp_path / "lomas-demo").mkdir()
    (tmp_path / "lomas-demo" / "connection.json").write_text(
        json.dumps({"url": "http://lomas.example", "token": "demo-token"})
    )
    client = Client.discover(folder=tmp_path / "lomas-demo")
    assert client._session.headers["Authorization"] == "token demo-token"
    with pytest.raises(ClientUsageError, match="not connected"):
        Client.discover(folder=tmp_path.parent / "elsewhere-empty")


def test_admin_client_finds_the_demo_admins_file_and_client_the_analysts(tmp_path):
    folder = tmp_path / "lomas-demo"
    folder.mkdir()
    for name, token in (("connection.json", "analyst"), ("admin-connection.json", "admin")):
        (folder / name).write_text(json.dumps({"url": "http://lomas.example", "token": token}))
    admin = lomas_jupyter.AdminClient.discover(folder=folder)
    assert admin.client._session.headers["Authorization"] == "token admin"
    analyst = Client.discover(folder=folder)
    assert analyst._session.headers["Authorization"] == "token analyst"


def test_every_call_works_under_a_path_prefix(prefixed, monkeypatch):
    process, token = prefixed
    under_hub(monkeypatch, token, LOMAS_URL=process.url + PREFIX)
    with Client.discover() as client:
        assert client.health()["status"] == "ok"
        assert [d.name for d in client.datasets()] == ["PENGUIN"]
        assert "species" in set(client.metadata("PENGUIN").columns["column"])
        assert len(client.dummy("PENGUIN", rows=5, seed=1)) == 5
        assert client.smartnoise_sql_cost("PENGUIN", COUNT, epsilon=0.5).fits
        release = client.smartnoise_sql_response("PENGUIN", COUNT, epsilon=0.5)
        opendp = client.opendp("PENGUIN").count().laplace(epsilon=0.5).response()
        assert client.budget("PENGUIN").spent["epsilon"] == pytest.approx(1.0)
        assert [q.query_id for q in client.queries("PENGUIN", limit=5)] == [
            release.query_id,
            opendp.query_id,
        ]


def test_without_the_prefix_nothing_is_there(prefixed):
    process, token = prefixed
    with pytest.raises(lomas_jupyter.LomasError) as info:
        Client(process.url, token).datasets()
    assert info.value.status == 404


def test_a_refused_hub_token_names_it(prefixed, monkeypatch):
    process, _ = prefixed
    under_hub(monkeypatch, "not-a-token-the-service-knows", LOMAS_URL=process.url + PREFIX)
    with pytest.raises(Unauthorized) as info:
        Client.discover().datasets()
    assert "check your JupyterHub token (JUPYTERHUB_API_TOKEN)" in str(info.value)


def test_lomas_connect_with_no_arguments_under_a_hub(prefixed, monkeypatch, capsys):
    process, token = prefixed
    under_hub(monkeypatch, token, LOMAS_URL=process.url + PREFIX)
    shell = InteractiveShell.instance()
    shell.config.pop("LomasMagic", None)
    lomas_jupyter.load_ipython_extension(shell)
    capsys.readouterr()
    shell.run_line_magic("lomas_connect", "")
    out = capsys.readouterr().out
    assert out.startswith(f"Connected to {process.url}/services/lomas as hub-alice")
    assert "default dataset: PENGUIN" in out
