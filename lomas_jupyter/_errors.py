"""Every error the client raises, in one tree under ``LomasError``.

::

    LomasError
    ├── ClientUsageError      the call cannot be made as asked; nothing was sent
    ├── TransportError        no usable reply: connection, timeout, not JSON, bare HTTP error
    └── ServerError           the server refused, with {"error": code, "message": ...}
        ├── InvalidRequest    the request as sent (400, 405, 413, 415); nothing spent
        │   ├── InvalidQuery
        │   ├── QueryTooExpensive
        │   └── PayloadTooLarge
        ├── Unauthorized      401
        ├── Forbidden         403
        ├── BudgetExceeded    403 budget_exceeded; nothing spent
        ├── NotFound          404
        ├── Conflict          409
        ├── QueryFailed       500 query_failed; the spend stays
        └── ServerBusy        429 and 503: try again later

A reply's class comes from its code, else from its HTTP status, else it is a plain
``ServerError``: a server newer than this client still gives an error that can be caught.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CLIENT_ERROR = "client_error"


class LomasError(Exception):
    """Base of every error of lomas-jupyter, with a stable ``code`` and, for a reply of the
    server, its HTTP ``status``."""

    def __init__(
        self, message: str, *, code: str = CLIENT_ERROR, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self) -> str:
        # The server's code helps when reporting a problem; client-side errors need none.
        return f"{self.message} [{self.code}]" if self.status is not None else self.message


class ClientUsageError(LomasError):
    """A call that cannot be made as asked: bad arguments, no connection, an unreadable
    connection file, a template or cell that does not parse. Nothing reached the server."""


class TransportError(LomasError):
    """No usable reply: the server could not be reached (``connection_error``), did not answer
    in time (``timeout``), answered with something that is not its JSON (``bad_reply``), or
    answered an HTTP error without a lomas error body (``http_error``, e.g. from a proxy)."""


class ServerError(LomasError):
    """The server refused the request and said why: ``code`` is its ``error``, ``reply`` the
    whole JSON body. Raised as the subclass that its code (or status) names."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        status: int | None = None,
        reply: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.reply: Mapping[str, Any] = reply if reply is not None else {}

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any], status: int | None = None) -> ServerError:
        """The error for a ``{"error": code, "message": ...}`` body, as its subclass.

        ``status`` is None for a refusal that did not come over HTTP (a local dummy run
        applies the server's own checks): its text is then the message alone."""
        code = str(reply.get("error") or "error")
        kind = _BY_CODE.get(code)
        if kind is None and status is not None:
            kind = _BY_STATUS.get(status)
        return (kind or ServerError)(
            str(reply.get("message", "")), code=code, status=status, reply=reply
        )


class InvalidRequest(ServerError):
    """The request as sent is refused (malformed, out of range, too large); nothing spent."""


class InvalidQuery(InvalidRequest):
    """The query is not accepted: syntax, allow-list, unknown names, engine rules."""


class QueryTooExpensive(InvalidRequest):
    """The query would cost more than the dataset's per-query maximum: ask for less."""


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than the server accepts."""


class Unauthorized(ServerError):
    """Missing or invalid API token."""


class Forbidden(ServerError):
    """The account may not do this (e.g. it is not allowed to run queries)."""


class BudgetExceeded(ServerError):
    """The query does not fit the remaining budget (the analyst's or the dataset-wide one);
    nothing was spent."""


class NotFound(ServerError):
    """No such dataset for this user (unknown and not granted look alike), or no such path."""


class Conflict(ServerError):
    """The request conflicts with the server's state."""


class QueryFailed(ServerError):
    """The query failed after its budget was reserved: the spend stays. The message holds
    the query id for the administrator."""


class ServerBusy(ServerError):
    """The server cannot do it now: too many of your requests at once, the engine busy or
    stopping, the admin store, the dataset or JupyterHub unavailable, or a time limit passed (for a
    release stopped while running, the message says the spend stays)."""


# Every code the server sends (lomas_server/errors.py and the raise sites that give their
# own code; the handlers' codes for plain HTTP errors). None: the status decides.
# tests/jupyter/test_errors.py checks that none is missing.
_BY_CODE: dict[str, type[ServerError] | None] = {
    "bad_request": InvalidRequest,
    "invalid_request": InvalidRequest,
    "invalid_json": InvalidRequest,
    "method_not_allowed": InvalidRequest,
    "unsupported_media_type": InvalidRequest,
    "invalid_query": InvalidQuery,
    "query_too_expensive": QueryTooExpensive,
    "payload_too_large": PayloadTooLarge,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "budget_exceeded": BudgetExceeded,
    "not_found": NotFound,
    "dataset_not_found": NotFound,
    "conflict": Conflict,
    "query_failed": QueryFailed,
    "too_many_requests": ServerBusy,
    "engine_busy": ServerBusy,
    "time_limit_exceeded": ServerBusy,
    "store_unavailable": ServerBusy,
    # Under the Hub identity, the Hub that says who the caller is did not answer.
    "hub_unavailable": ServerBusy,
    "dataset_unavailable": ServerBusy,
    # The administrator's metadata or dataset description is unusable: nothing in the
    # request is at fault, and nothing the analyst can change fixes it.
    "invalid_metadata": ServerError,
    # A DP library this server lacks (synthetic data): waiting does not help, its admin can.
    "engine_not_installed": ServerError,
    "internal_error": ServerError,
    # Any other HTTP error of the web framework, worded by the server.
    "http_error": None,
}

_BY_STATUS: dict[int, type[ServerError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: InvalidRequest,
    409: Conflict,
    413: PayloadTooLarge,
    415: InvalidRequest,
    429: ServerBusy,
    503: ServerBusy,
}
