"""The Jupyter server under stand-alone ``lomas-server``: the lomas API and nothing else.

A stock Jupyter server also serves contents (the files of its folder, the admin store's
included), kernels, kernelspecs, sessions and more; with its token they run code on the data
owner's machine. Stand-alone, the server is a DP service only, so none of Jupyter's services
are loaded, no other extension is found, Jupyter's own identity provider recognises nobody
(so no Jupyter token exists to be printed or leaked), and its few built-in pages that remain
(the version at ``/api``, static files, ``/metrics``) are removed from the routes. Loading
the extension into an existing Jupyter server instead is a choice that keeps all of that
(docs/SECURITY.md says what it exposes).
"""

from __future__ import annotations

import json
import os
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.serverapp import ServerApp
from tornado.web import RequestHandler
from traitlets import default, validate

from lomas_server.handlers import API_PREFIX

# Largest request the HTTP server reads (the API's own limit, max_request_bytes, is 64 KiB by
# default; raise both together).
MAX_BODY_BYTES = 1024 * 1024
BODY_TIMEOUT_SECONDS = 30.0
IDLE_TIMEOUT_SECONDS = 60.0


class NoJupyterIdentity(IdentityProvider):
    """Jupyter's own login, turned off: no token, no login page, no Jupyter user.

    The lomas API identifies its callers itself (identity.py); nothing else is served.
    """

    @default("token")
    def _token_default(self) -> str:
        self.token_generated = False
        return ""

    @validate("token")
    def _no_token(self, proposal: dict[str, Any]) -> str:
        # A token given in configuration would open nothing here; holding none means none
        # is written to the log or the server's runtime file either.
        return ""

    @default("need_token")
    def _need_token_default(self) -> bool:
        return False

    def get_user(self, handler: RequestHandler) -> User | None:
        return None

    def get_handlers(self) -> list[tuple[str, object]]:
        return []

    @property
    def login_available(self) -> bool:
        return False


class LomasOnlyServerApp(ServerApp):
    """A Jupyter server that serves the lomas API only."""

    name = "lomas-server"
    default_services = ()  # type: ignore[assignment]  # none of Jupyter's services

    @default("identity_provider_class")
    def _default_identity_provider_class(self) -> type[IdentityProvider]:
        return NoJupyterIdentity

    @default("open_browser")
    def _default_open_browser(self) -> bool:
        return False

    # Tornado reads a whole body before any handler (and its token check) runs: Jupyter's
    # 512 MiB default let anyone hold that much memory per connection.
    @default("max_body_size")
    def _default_max_body_size(self) -> int:
        return MAX_BODY_BYTES

    @default("max_buffer_size")
    def _default_max_buffer_size(self) -> int:
        return MAX_BODY_BYTES

    @default("base_url")
    def _default_base_url(self) -> str:
        # A JupyterHub-managed service is reached through the Hub's proxy under this prefix
        # (/services/<name>/), which the proxy passes on unchanged.
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"

    def init_httpserver(self) -> None:
        super().init_httpserver()
        # A client that trickles its request in, or keeps an idle connection, holds it and its
        # buffer: bounded (Tornado's header timeout is also its keep-alive idle timeout).
        server: Any = self._http_server
        server.conn_params.header_timeout = IDLE_TIMEOUT_SECONDS
        server.conn_params.body_timeout = BODY_TIMEOUT_SECONDS

    def init_webapp(self) -> None:
        super().init_webapp()
        # The base handlers every Jupyter server adds (version, static files, metrics,
        # trailing-slash redirects) are not part of the API: keep only the lomas routes.
        router: Any = self.web_app.wildcard_router
        router.rules = [rule for rule in router.rules if _is_lomas(rule)]
        self.web_app.settings["default_handler_class"] = NotAnApiPath

    def running_server_info(self, kernel_count: bool = True) -> str:
        return f"lomas-server is running at:\n{self.connection_url.rstrip('/')}{API_PREFIX}"

    def write_browser_open_files(self) -> None:
        # No page to open, and the file would name the server's URL to anyone who reads it.
        return None


def _is_lomas(rule: Any) -> bool:
    pattern = getattr(rule.matcher, "regex", None)
    return pattern is not None and API_PREFIX in pattern.pattern


class NotAnApiPath(RequestHandler):
    """Every path outside the API: a JSON 404 naming where the API is."""

    def check_xsrf_cookie(self) -> None:
        # Nothing here acts on a request, so there is nothing to forge: any method gets the 404.
        return None

    def prepare(self) -> None:
        self.clear_header("Server")
        self.set_status(404)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(
            json.dumps(
                {"error": "not_found", "message": f"not found; the API is under {API_PREFIX}/"}
            )
        )
