"""Who is calling, under JupyterHub: the Hub user who owns the request's Hub API token.

Every single-user server (and each of its kernels) holds a Hub token, ``JUPYTERHUB_API_TOKEN``,
so an analyst's kernel can call the service with no lomas token at all. The Hub says whose a
token is (``GET /hub/api/user`` with that token, through jupyterhub's own ``HubAuth``); the
service then reads that user's groups and roles with its own Hub token, which needs only the
scopes ``read:users:groups`` and ``read:roles:users``. Both answers are kept for
``cache_seconds``, so the Hub is asked about each analyst about once a minute, not per query.

Membership decides access: ``analyst_groups``/``analyst_roles`` (empty: every Hub user) may use
the service, ``admin_groups``/``admin_roles`` administer it. Budgets are still per dataset and
granted by admins: a Hub user without grants sees no datasets.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import quote

from jupyter_server.auth.identity import IdentityProvider
from jupyterhub.services.auth import HubAuth, check_scopes
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.web import HTTPError, RequestHandler
from traitlets import Float, List, Set, Unicode, default

from lomas_server.errors import Forbidden, HubUnavailable
from lomas_server.identity import LomasUser, bearer_token

HUB_TIMEOUT_SECONDS = 10.0
# Hub tokens are 32 hex characters or so; a longer "token" is not worth asking the Hub about.
MAX_TOKEN_LENGTH = 256


class HubIdentityProvider(IdentityProvider):
    """Identifies API callers by their JupyterHub token; access comes from Hub groups or roles."""

    hub_api_url = Unicode(
        help="The Hub's API URL, e.g. http://hub:8081/hub/api (default: JUPYTERHUB_API_URL, "
        "which the Hub gives its services)."
    ).tag(config=True)

    @default("hub_api_url")
    def _default_hub_api_url(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "")

    service_token = Unicode(
        help="The service's own Hub API token, used to read users' groups and roles "
        "(default: JUPYTERHUB_API_TOKEN). It needs the scopes read:users:groups and "
        "read:roles:users."
    )

    @default("service_token")
    def _default_service_token(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    access_scopes = Set(
        Unicode(),
        help="Scopes a token must carry to be used here (any one of them), default "
        "access:services!service=<JUPYTERHUB_SERVICE_NAME, else lomas>. Without this check any "
        "token a user owns would do, including OAuth tokens the Hub hands to other services "
        "and servers. Give it to the analysts' group with a role, and to kernels with "
        "Spawner.server_token_scopes (docs/deploy.md).",
    ).tag(config=True)

    @default("access_scopes")
    def _default_access_scopes(self) -> set[str]:
        return {f"access:services!service={os.environ.get('JUPYTERHUB_SERVICE_NAME', 'lomas')}"}

    analyst_groups = List(
        Unicode(),
        help="Hub groups whose members may use the service. With analyst_roles also empty "
        "(the default), every Hub user may.",
    ).tag(config=True)
    analyst_roles = List(
        Unicode(), help="Hub roles whose holders may use the service (see analyst_groups)."
    ).tag(config=True)
    admin_groups = List(
        Unicode(),
        default_value=["lomas-admins"],
        help="Hub groups whose members administer the service (the admin API).",
    ).tag(config=True)
    admin_roles = List(
        Unicode(), help="Hub roles whose holders administer the service (the admin API)."
    ).tag(config=True)
    cache_seconds = Float(
        60.0,
        help="How long the Hub's answers (whose token it is, a user's groups and roles) are "
        "kept before it is asked again. A user removed from a group loses access within this.",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("lookup", None)  # the token provider's store lookup: not used here
        super().__init__(**kwargs)
        if not self.hub_api_url or not self.service_token:
            raise ValueError(
                "identity 'hub' needs the Hub's API URL and the service's Hub token: run the "
                "server as a JupyterHub service (the Hub sets JUPYTERHUB_API_URL and "
                "JUPYTERHUB_API_TOKEN) or set both"
            )
        # jupyterhub's own client for "whose token is this" (it caches its answers too).
        self._hub_auth = HubAuth(
            api_url=self.hub_api_url,
            api_token=self.service_token,
            cache_max_age=max(1, round(self.cache_seconds)),
        )
        self._memberships: dict[str, tuple[float, frozenset[str], frozenset[str]]] = {}

    async def get_user(self, handler: RequestHandler) -> LomasUser | None:
        token = bearer_token(handler.request.headers.get("Authorization", ""))
        if token is None or len(token) > MAX_TOKEN_LENGTH:
            return None
        model = await self._owner(token)
        if model is None:
            return None
        name = model["name"]
        if self.access_scopes and not check_scopes(
            self.access_scopes, set(model.get("scopes") or ())
        ):
            raise Forbidden(
                "this JupyterHub token does not give access to the lomas service (it needs "
                f"the scope {sorted(self.access_scopes)[0]}); a server started before the Hub "
                "gave you that scope holds a token without it: restart your server (Hub "
                "Control Panel), else ask the Hub's admins"
            )
        groups, roles = await self._membership(name)
        admin = bool(groups & set(self.admin_groups) or roles & set(self.admin_roles))
        open_to_all = not self.analyst_groups and not self.analyst_roles
        analyst = bool(groups & set(self.analyst_groups) or roles & set(self.analyst_roles))
        if not (open_to_all or analyst or admin):
            raise Forbidden(
                "your JupyterHub account may not use this service; ask its admins to add you "
                "to one of these Hub groups or roles: "
                + ", ".join([*self.analyst_groups, *self.analyst_roles])
            )
        return LomasUser(username=name, name=name, display_name=name, admin=admin, source="hub")

    async def _owner(self, token: str) -> dict[str, Any] | None:
        """The Hub's model of the user who owns ``token`` (their name, the token's scopes);
        None for unknown tokens and tokens of services (a service is no person with a budget)."""
        try:
            model = await self._hub_auth.user_for_token(token, sync=False)
        except HTTPError as err:
            raise HubUnavailable(
                "JupyterHub could not say whose token this is; try again shortly"
            ) from err
        if not isinstance(model, dict) or model.get("kind", "user") != "user":
            return None
        name = model.get("name")
        return model if isinstance(name, str) and name else None

    async def _membership(self, name: str) -> tuple[frozenset[str], frozenset[str]]:
        cached = self._memberships.get(name)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        model = await self._hub_get(f"users/{quote(name, safe='')}", self.service_token)
        if model is None:
            # The user's own token was just accepted: the service's token cannot read them.
            raise HubUnavailable(
                "the service cannot read your JupyterHub groups; its Hub token lacks the "
                "scopes read:users:groups and read:roles:users (ask the Hub's admins)"
            )
        groups = frozenset(g for g in model.get("groups") or () if isinstance(g, str))
        roles = frozenset(r for r in model.get("roles") or () if isinstance(r, str))
        self._remember(self._memberships, name, (now + self.cache_seconds, groups, roles))
        return groups, roles

    async def _hub_get(self, path: str, token: str) -> dict[str, Any] | None:
        """A GET on the Hub's API; None when the Hub refuses the token (403/404)."""
        request = HTTPRequest(
            self.hub_api_url.rstrip("/") + "/" + path,
            headers={"Authorization": f"token {token}"},
            request_timeout=HUB_TIMEOUT_SECONDS,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as err:
            if err.code in (401, 403, 404):
                return None
            raise HubUnavailable(
                f"JupyterHub's API answered HTTP {err.code}; try again shortly"
            ) from err
        except (OSError, HTTPError) as err:
            raise HubUnavailable("JupyterHub's API cannot be reached; try again shortly") from err
        try:
            model = json.loads(response.body)
        except ValueError as err:
            raise HubUnavailable("JupyterHub's API did not answer with JSON") from err
        return model if isinstance(model, dict) else None

    def _remember(self, cache: dict[str, Any], key: str, value: Any) -> None:
        # Bounded: an attacker sending random tokens must not grow the cache without end.
        if len(cache) >= 10_000:
            now = time.monotonic()
            for stale in [k for k, v in cache.items() if v[0] <= now]:
                del cache[stale]
            if len(cache) >= 10_000:
                cache.clear()
        cache[key] = value
