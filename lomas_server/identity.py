"""Who is calling: per-user API tokens, as a jupyter_server IdentityProvider.

The provider only reads the ``Authorization`` header (``token <T>`` or ``Bearer <T>``): never a
cookie, never a query parameter (URLs end up in logs). Under JupyterHub the caller is the Hub
user who owns the token instead (hub_identity.py); ``LomasServerApp.identity`` chooses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from jupyter_server.auth.identity import IdentityProvider, User
from tornado.web import RequestHandler
from traitlets import Any

from lomas_server.tokens import hash_token

_AUTH_HEADER = re.compile(r"^\s*(token|bearer)\s+(\S+)\s*$", re.IGNORECASE)


class KnownUser(Protocol):
    """What the lookup returns for a token it knows (the store's user record)."""

    name: str
    is_admin: bool


@dataclass
class LomasUser(User):
    """A caller of the API: a jupyter_server user who may also administer the service."""

    admin: bool = False
    # Where the identity comes from: "token" (the admin store) or "hub" (JupyterHub). A Hub
    # user may call before any admin has created their record: the handler creates it.
    source: str = "token"


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
        return LomasUser(
            username=record.name,
            name=record.name,
            display_name=record.name,
            admin=record.is_admin,
        )


def bearer_token(header: str) -> str | None:
    match = _AUTH_HEADER.match(header)
    return match.group(2) if match else None
