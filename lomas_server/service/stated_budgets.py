"""Budgets as an administrator states them: (epsilon, delta) read from a command line or a
request, and whether a dataset's accounting rule can use them.

Shared by the admin's grants and limits (admin.py) and by approved budget requests
(budget_requests.py), so that a budget reached either way passes the same checks.
"""

from __future__ import annotations

import math
from typing import Any

from lomas_server.accounting import DELTA_SCALE, EPSILON_SCALE, MAX_EPSILON, PrivacyAmount
from lomas_server.errors import InvalidRequest
from lomas_server.service.accounts import rule_of
from lomas_server.store.base import DatasetRecord


def finite_number(value: Any) -> float | None:
    """``value`` as a float if it is a finite JSON number, else None.

    Booleans are ints to Python and text is no number; an int too large for a float
    (JSON allows 1e400 written out) would otherwise raise OverflowError deep in a check.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def stated_amount(pair: tuple[Any, Any] | None, what: str) -> PrivacyAmount:
    """A grant, cap or per-query maximum: epsilon 0..MAX_EPSILON, delta 0 up to 1."""
    assert pair is not None
    epsilon, delta = (finite_number(value) for value in pair)
    if epsilon is None or delta is None:
        raise InvalidRequest(f"the {what} needs finite numbers for epsilon and delta")
    if not 0 <= epsilon <= MAX_EPSILON:
        raise InvalidRequest(f"the {what}'s epsilon must be between 0 and {MAX_EPSILON}")
    if not 0 <= delta < 1:
        raise InvalidRequest(f"the {what}'s delta must be at least 0 and below 1")
    return PrivacyAmount.budget(epsilon, delta)


def check_holdable(total: PrivacyAmount, what: str) -> None:
    """A budget grown by additions (an approved request on top of a grant) must still be one
    that could have been granted outright: the store's sums rely on MAX_EPSILON."""
    if total.eps_units > MAX_EPSILON * EPSILON_SCALE:
        raise InvalidRequest(f"the {what}'s epsilon would pass the largest budget, {MAX_EPSILON}")
    if total.delta_units >= DELTA_SCALE:
        raise InvalidRequest(f"the {what}'s delta would reach 1")


def check_rule(record: DatasetRecord, stated: PrivacyAmount) -> None:
    try:
        rule_of(record).check_budget(stated)
    except ValueError as err:
        raise InvalidRequest(str(err)) from err
