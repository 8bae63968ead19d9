"""The same API loaded as an extension into a plain ``jupyter server``."""

from __future__ import annotations

import pytest

from tests.servers import Api, ServerProcess


@pytest.fixture(scope="module")
def jupyter_server(store_path, tmp_path_factory):
    process = ServerProcess(
        store_path, tmp_path_factory.mktemp("jupyter"), as_jupyter_extension=True
    ).start()
    yield process
    process.stop()


def test_extension_serves_the_api_inside_jupyter(jupyter_server, admin):
    token = admin.add_user("inside-jupyter")
    admin.grant("inside-jupyter", "PENGUIN", 1.0, 0.0)
    api = Api(jupyter_server.api, token)
    assert api.sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", 0.5).status_code == 200
    assert api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.5


def test_jupyters_own_api_stays_behind_jupyters_token(jupyter_server, admin):
    token = admin.add_user("no-kernels-for-me")
    # a lomas token opens nothing of Jupyter's own API
    assert Api(jupyter_server.url, token).get("/api/kernels").status_code == 403
    assert (
        Api(jupyter_server.url, jupyter_server.jupyter_token).get("/api/kernels").status_code == 200
    )
    # and Jupyter's token is no lomas identity
    assert Api(jupyter_server.api, jupyter_server.jupyter_token).get("/datasets").status_code == 401


def test_package_declares_its_extension_point():
    from jupyter_server.extension.utils import validate_extension

    validate_extension("lomas_server")  # raises if Jupyter could not load it by name
