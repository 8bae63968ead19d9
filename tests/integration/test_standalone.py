"""Stand-alone ``lomas-server`` serves the lomas API and nothing of Jupyter's own."""

from __future__ import annotations

import socket

import pytest

from tests.servers import Api, ServerProcess

JUPYTER_PATHS = [
    "/api",
    "/api/contents",
    "/api/contents/admin.sqlite",
    "/api/kernels",
    "/api/kernelspecs",
    "/api/sessions",
    "/api/terminals",
    "/api/status",
    "/api/me",
    "/api/spec.yaml",
    "/api/config/notebook",
    "/api/events",
    "/api/nbconvert",
    "/api/security/csp-report",
    "/api/shutdown",
    "/files/admin.sqlite",
    "/view/admin.sqlite",
    "/nbconvert/html/x.ipynb",
    "/kernelspecs/python3/logo-64x64.png",
    "/lab",
    "/tree",
    "/notebooks/x.ipynb",
    "/login",
    "/logout",
    "/metrics",
    "/static/style/index.css",
    "/robots.txt",
    "/",
]


@pytest.mark.parametrize("path", JUPYTER_PATHS)
@pytest.mark.parametrize("who", ["nobody", "jupyter token", "lomas token"])
def test_jupyters_services_are_not_served(server, make_user, path, who):
    token = {
        "nobody": None,
        "jupyter token": server.jupyter_token,
        "lomas token": make_user(PENGUIN=(1.0, 0.0)).token,
    }[who]
    api = Api(server.url, token)
    for reply in (api.get(path), api.post(path, {}), api.session.put(server.url + path)):
        assert reply.status_code == 404, (path, reply.status_code, reply.text[:200])
        assert reply.json()["error"] == "not_found"
        assert "/lomas/api/v1" in reply.json()["message"]


def test_no_jupyter_token_in_the_log_or_the_runtime_files(server):
    log = server.log()
    assert "lomas-server is running at" in log
    assert server.jupyter_token not in log
    # Jupyter announces its URL with "?token=..." (the token elided) when it has one.
    assert "token=..." not in log
    lines = log.splitlines()
    announced = next(i for i, line in enumerate(lines) if "lomas-server is running at" in line)
    url = lines[announced + 1]
    assert "token" not in url and url.rstrip().endswith("/lomas/api/v1"), url
    runtime = server.workdir / "runtime"
    for path in runtime.rglob("*"):
        if path.is_file():
            assert server.jupyter_token not in path.read_text(errors="replace"), path
    # Nothing about notebooks or kernels is announced either.
    assert "Serving notebooks" not in log and "Jupyter Server" not in log


def test_the_api_itself_is_served(server, make_user):
    user = make_user(PENGUIN=(1.0, 0.0))
    assert Api(server.api).get("/health").status_code == 200
    assert user.api.get("/datasets").status_code == 200


def test_an_oversized_body_is_refused_before_it_is_read(server):
    """Tornado reads a body before any handler runs: its limit is the server's, not 512 MiB."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(
            b"POST /lomas/api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 524288000\r\n\r\n"
        )
        reply = conn.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]


def test_a_body_that_never_finishes_arriving_is_dropped(tmp_path, store_path):
    server = ServerProcess(store_path, tmp_path).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as conn:
            conn.sendall(
                b"POST /lomas/api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            # The server closes the connection after its body timeout, not after an hour.
            assert conn.recv(4096) in (b"", b"HTTP/1.1 400 Bad Request\r\n\r\n")
    finally:
        server.stop()
