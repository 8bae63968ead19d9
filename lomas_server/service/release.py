"""The release sequence, the same for every engine: the privacy contract in one place.

    replay -> reachable -> reserve -> run -> archive

An identical earlier release is returned for free. Otherwise the data is made reachable and
the engine asked whether it can take the job (refusals now cost nothing), the cost is
reserved atomically, and only then is the data touched. A failure after the reservation
keeps the spend and gets one generic message; the cause goes to the server log under the
query id.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

from lomas_server.accounting import PrivacyAmount
from lomas_server.errors import (
    BudgetExceeded,
    EngineBusy,
    QueryFailed,
    StoreUnavailable,
    TimeLimitExceeded,
)
from lomas_server.service.accounts import Account
from lomas_server.service.context import DatasetContext
from lomas_server.service.data_access import DataAccess
from lomas_server.service.query_kinds import Engines, PlannedQuery
from lomas_server.store.base import DONE, FAILED, INTERRUPTED, STOPPED, Reservation

log = logging.getLogger(__name__)


def estimate(ctx: DatasetContext, planned: PlannedQuery) -> dict[str, Any]:
    """What a release would cost and return, with nothing spent and no data touched."""
    account = ctx.account
    earlier = ctx.store.find_release(ctx.user, ctx.dataset, planned.fingerprint)
    left = account.times_fit(planned.cost, ctx.dataset_spent())
    return {
        "cost": account.cost_view(planned.cost),
        "delta_used": planned.delta,
        "budget": account.view(),
        # Within the grant and, where the dataset has one, the dataset-wide cap.
        "fits": account.fits(planned.cost) and (left is None or left >= 1),
        "queries_left": left,
        "replay_of": earlier.query_id if earlier else None,
        **planned.described(),
        "accuracy": planned.accuracy(),
    }


def release(
    ctx: DatasetContext,
    planned: PlannedQuery,
    *,
    fresh: bool,
    data_access: DataAccess,
    engines: Engines,
) -> dict[str, Any]:
    if not fresh:
        earlier = ctx.store.find_release(ctx.user, ctx.dataset, planned.fingerprint)
        if earlier is not None:
            # Releasing the same noisy answer again is free post-processing, and it denies
            # an analyst the average of many fresh answers to one question.
            return {
                "query_id": earlier.query_id,
                "replay_of": earlier.query_id,
                "result": earlier.result,
                "cost": ctx.account.cost_view(PrivacyAmount.zero()),
                "delta_used": planned.delta,
                "budget": ctx.account.view(),
                "queries_left": None,
                "accuracy": planned.accuracy(),
            }
    data = data_access.reachable(ctx, in_place=planned.in_place)
    # A refusal now costs nothing; after the reservation it would.
    engines.check_ready(ctx.user)
    query_id = uuid.uuid4().hex
    before = _reserve(ctx, planned, query_id)
    # From here on the budget is spent, whatever happens.
    try:
        result = planned.run(data, ctx.user)
    except TimeLimitExceeded as err:
        log.warning("query %s on %s by %s stopped: %s", query_id, ctx.dataset, ctx.user, err)
        _finish(ctx, query_id, STOPPED, error=err.message)
        raise err.with_message(
            f"{err.message}; its budget stays spent (query id {query_id}). Ask for less "
            "(fewer groups, a smaller dataset) or ask the administrator about the time limit."
        ) from None
    except EngineBusy as err:
        # The server is stopping (or cannot take the job after all): the query never ran.
        _finish(ctx, query_id, INTERRUPTED, error=err.message)
        raise err.with_message(
            f"the query could not run: {err.message}; its budget stays spent (query id {query_id})"
        ) from None
    except Exception as err:
        log.exception(
            "query %s on %s by %s failed after reservation", query_id, ctx.dataset, ctx.user
        )
        _finish(ctx, query_id, FAILED, error=f"{type(err).__name__}: {err}")
        raise QueryFailed(
            "the query failed while running; its budget stays spent. Give the administrator "
            f"the query id {query_id} to find the cause in the server log."
        ) from err
    _finish(ctx, query_id, DONE, result=result)
    try:
        account = ctx.read_spent()
        # Counted with this release spent, exactly as the next reservation will count.
        left = account.times_fit(planned.cost, ctx.dataset_spent())
    except StoreUnavailable:
        # A paid release is never hidden by the store going away now: the budget shown is
        # the one read at the reservation, with this query's cost.
        account = replace(before, spent=before.spent + planned.cost)
        left = None
    return {
        "query_id": query_id,
        "replay_of": None,
        "result": result,
        "cost": account.cost_view(planned.cost),
        "delta_used": planned.delta,
        "budget": account.view(),
        "queries_left": left,
        "accuracy": planned.accuracy(),
    }


def _reserve(ctx: DatasetContext, planned: PlannedQuery, query_id: str) -> Account:
    """Reserve with the caps of the dataset's rule; word a refusal in (epsilon, delta).
    Returns the account as read just before the reservation: the caps are the grant as it
    is now, not as it was when the request arrived."""
    account = ctx.read_account()
    reservation = Reservation(
        query_id,
        ctx.user,
        ctx.dataset,
        planned.engine,
        planned.archived_request(),
        planned.cost,
        user_cap=account.cap,
        dataset_cap=account.dataset_cap,
        fingerprint=planned.fingerprint,
    )
    try:
        ctx.store.reserve(reservation)
    except BudgetExceeded as err:
        if err.scope == "user":
            what, left = "your remaining budget", ctx.read_account().remaining()
        else:
            what = "the dataset-wide budget left"
            left = account.dataset_remaining(ctx.store.dataset_spent(ctx.dataset))
        cost = account.cost_view(planned.cost)
        raise err.with_message(
            f"not enough budget: this query costs {_amount_text(cost)} but {what} is "
            f"{_amount_text(left)}; nothing was spent"
        ) from None
    return account


def _finish(ctx: DatasetContext, query_id: str, status: str, **details: Any) -> None:
    try:
        ctx.store.finish(query_id, status, **details)
    except Exception:
        # The release already happened; failing to file it must not hide it. The entry
        # stays 'running' and becomes 'interrupted' at the next start.
        log.exception("could not record the outcome of query %s", query_id)


def _amount_text(amount: dict[str, float]) -> str:
    """An amount in (epsilon, delta): the numbers ``/budget`` shows as ``remaining``."""
    return f"epsilon={amount['epsilon']:g}, delta={amount['delta']:g}"
