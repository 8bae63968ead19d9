"""What every backend of the admin store decides alike: whether a spend fits its caps, and
the errors it raises, so that callers (and the admin) read one message whichever store is
behind the server."""

from __future__ import annotations

from collections.abc import Callable

from lomas_server.accounting import PrivacyAmount
from lomas_server.errors import BudgetExceeded, Conflict, NotFound, StoreUnavailable
from lomas_server.store.base import Reservation


def check_fits(
    reservation: Reservation,
    user_spent: PrivacyAmount,
    dataset_spent: Callable[[], PrivacyAmount],
) -> None:
    """Raise BudgetExceeded unless the reservation's cost fits the user's cap and the
    dataset-wide cap, given what was spent before it.

    Each backend calls this inside its own atomic step; ``dataset_spent`` is asked only when
    the dataset has a cap, since summing every user's spends costs a query on SQLite.
    """
    r = reservation
    if not (user_spent + r.cost).fits_within(r.user_cap):
        raise BudgetExceeded("user", r.user_cap - user_spent, r.cost)
    if r.dataset_cap is not None:
        total = dataset_spent()
        if not (total + r.cost).fits_within(r.dataset_cap):
            raise BudgetExceeded("dataset", r.dataset_cap - total, r.cost)


def no_user(name: str) -> NotFound:
    return NotFound(f"no user {name!r}")


def no_dataset(name: str) -> NotFound:
    return NotFound(f"no dataset {name!r}")


def user_exists(name: str) -> Conflict:
    return Conflict(f"user {name!r} already exists")


def dataset_exists(name: str) -> Conflict:
    return Conflict(f"dataset {name!r} already exists")


def newer_schema(store: str, version: object, understood: int) -> StoreUnavailable:
    return StoreUnavailable(
        f"{store} has schema version {version}, newer than this server understands "
        f"({understood}); upgrade lomas-jupyter"
    )


def no_budget_request(request_id: str) -> NotFound:
    return NotFound(f"no budget request {request_id!r}")


def pending_request(user: str, dataset: str) -> Conflict:
    return Conflict(
        f"{user!r} already has a pending budget request on {dataset!r}; "
        "wait for an admin to decide it"
    )


def request_id_taken(request_id: str) -> Conflict:
    return Conflict(f"budget request {request_id!r} already exists")


def already_decided(request_id: str, state: str) -> Conflict:
    return Conflict(f"budget request {request_id!r} is already {state}")
