"""Typed errors shared by every layer.

Each error carries a stable machine-readable ``code`` and the HTTP status that the
handlers reply with; the message is what the analyst or admin reads. Messages must never
depend on the rows of a dataset: they may name what the request said and what the admin's
metadata says, nothing else.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error that reaches a client as ``{"error": code, "message": ...}``."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def as_dict(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}

    def with_message(self, message: str) -> ServiceError:
        """The same error, worded for its reader."""
        self.message = message
        self.args = (message,)
        return self


class InvalidRequest(ServiceError):
    """The request body or parameters are malformed or out of range."""

    status = 400
    code = "invalid_request"


class InvalidQuery(ServiceError):
    """The query text is not accepted (syntax, allow-list, unknown names, engine rules)."""

    status = 400
    code = "invalid_query"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class BudgetExceeded(ServiceError):
    """The reservation would take a spend past a cap; nothing was spent.

    ``scope`` is "user" or "dataset"; ``remaining`` and ``cost`` are in the ledger's currency
    (the service words them for people).
    """

    status = 403
    code = "budget_exceeded"

    def __init__(self, scope: str, remaining: object, cost: object) -> None:
        self.scope, self.remaining, self.cost = scope, remaining, cost
        what = "your remaining budget" if scope == "user" else "the dataset-wide budget"
        super().__init__(f"not enough budget: this query does not fit {what}; nothing was spent")


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class TooManyRequests(ServiceError):
    """An analyst has as many expensive requests running as the server allows at once."""

    status = 429
    code = "too_many_requests"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class InvalidMetadata(ServiceError):
    """Admin-supplied metadata or dataset description is unusable."""

    status = 400
    code = "invalid_metadata"


class DatasetUnavailable(ServiceError):
    """The dataset's rows cannot be read, or do not match the metadata.

    The message names the place and the cause for the administrator and the server log; an
    analyst only ever gets a generic message (see AnalystService).
    """

    status = 503
    code = "dataset_unavailable"


class QueryFailed(ServiceError):
    """Execution failed after the budget was reserved: the spend stays.

    The message is deliberately generic; the cause goes to the server log under the query id.
    """

    status = 500
    code = "query_failed"


class StoreUnavailable(ServiceError):
    status = 503
    code = "store_unavailable"


class HubUnavailable(ServiceError):
    """JupyterHub, which says who the caller is under the Hub identity, did not answer."""

    status = 503
    code = "hub_unavailable"


class TimeLimitExceeded(ServiceError):
    """A job on the engine passed its time limit and was stopped.

    ``stage`` is "plan" (nothing was spent) or "query" (the run on the rows: the budget
    reserved for it stays spent; the service words the message with the query id).
    """

    status = 503
    code = "time_limit_exceeded"

    def __init__(self, stage: str, seconds: float) -> None:
        self.stage, self.seconds = stage, seconds
        if stage == "plan":
            message = (
                f"planning this query took longer than the limit of {seconds:g} s and was "
                "stopped; nothing was spent. Ask for fewer aggregates or groups, or give "
                "epsilon (or rho) instead of a target accuracy"
            )
        else:
            message = f"the query took longer than the limit of {seconds:g} s and was stopped"
        super().__init__(message)


class EngineBusy(ServiceError):
    """The engine cannot take work now (stopping, or finishing stopped jobs); nothing was spent."""

    status = 503
    code = "engine_busy"


class EngineMissing(ServiceError):
    """An engine's library is not installed on this server (refused before anything is spent)."""

    status = 503
    code = "engine_not_installed"
