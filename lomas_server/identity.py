"""Who is calling: per-user API tokens, as a jupyter_server IdentityProvider.

The provider only reads the ``Authorization`` header (``token <T>`` or ``Bearer <T>``): never a
cookie, never a query parameter (URLs end up in logs). Another identity source, such as the
JupyterHub token every single-user kernel holds, plugs in by configuring
``LomasServerApp.identity_provider_class``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from jupyter_server.auth.identity import IdentityProvider, User
from tornado.web import RequestHandler
from traitlets import Any

from lomas_server.tokens import hash_token

_AUTH_HEADER = re.compile(r"^\s*(token|bearer)\s+(\S+)\s*$", re.IGNORECASE)


class KnownUser(Protocol):
    """What the lookup returns for a token it knows (the store's user record)."""

    name: str


class LomasTokenIdentityProvider(IdentityProvider):
    """Identifies users by the hash of their API token, looked up in the admin store."""

    lookup: Callable[[str], KnownUser | None] = Any(  # type: ignore[assignment]
        help="Function from a token hash to the user record (set by the server app)."
    )

    def get_user(self, handler: RequestHandler) -> User | None:
        token = bearer_token(handler.request.headers.get("Authorization", ""))
        if token is None or self.lookup is None:
            return None
        record = self.lookup(hash_token(token))
        if record is None:
            return None
        return User(username=record.name, name=record.name, display_name=record.name)


def bearer_token(header: str) -> str | None:
    match = _AUTH_HEADER.match(header)
    return match.group(2) if match else None
