"""The HTTP under ``Client``: one session per connection, each reply as JSON, and every
failure (no answer, a refusal, a reply of the wrong shape) as a ``LomasError``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import requests

from lomas_jupyter._errors import ServerError, TransportError, Unauthorized

API_PREFIX = "/lomas/api/v1"
T = TypeVar("T")


class Transport:
    """A session with the server's API, authenticated by one token (``with`` closes it)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 120.0,
        user: str | None = None,
        token_source: str = "the token given to Client",
    ) -> None:
        self.url = url.rstrip("/")
        self.user = user
        # Named when the server refuses the token: the fix is wherever the token was set.
        self.token_source = token_source
        self.api = self.url + API_PREFIX
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"token {token}"
        # Names the account without holding the token: outputs and the JupyterLab panel use
        # it to tell one analyst's budgets from another's (a hash cannot be used to sign in).
        self.account = hashlib.sha256(token.encode()).hexdigest()[:16]

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _token_refused(self, error: Unauthorized) -> Unauthorized:
        """The server words a refused token for HTTP clients (the header to send); here the
        analyst set it in a variable, a file or an argument, so the message names that."""
        return Unauthorized(
            f"the server at {self.url} refused the token: check {self.token_source}, "
            "or ask the administrator for a new one",
            code=error.code,
            status=error.status,
            reply=error.reply,
        )

    def _typed(self, build: Callable[[], T]) -> T:
        """A reply of the wrong shape (a proxy's page, an incompatible server) is no result."""
        try:
            return build()
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise TransportError(
                f"the server's reply is not what this client expects ({type(err).__name__}: {err})",
                code="bad_reply",
            ) from err

    def _json(self, reply: Any) -> dict[str, Any]:
        return self._typed(lambda: dict(reply))

    def _call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        try:
            response = self._session.request(
                method, self.api + path, json=body, params=params, timeout=self.timeout
            )
        except requests.Timeout as err:
            raise TransportError(
                f"the server at {self.url} did not answer within {self.timeout:g} s", code="timeout"
            ) from err
        except requests.ConnectionError as err:
            raise TransportError(
                f"cannot reach the server at {self.url}", code="connection_error"
            ) from err
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            if isinstance(payload, dict) and "message" in payload:
                error = ServerError.from_reply(payload, status=response.status_code)
                if isinstance(error, Unauthorized):
                    raise self._token_refused(error)
                raise error
            raise TransportError(
                f"the server answered HTTP {response.status_code}",
                code="http_error",
                status=response.status_code,
            )
        if payload is None:
            raise TransportError(
                "the server answered with something that is not JSON", code="bad_reply"
            )
        return payload
