"""One request's view of a dataset: read once, used by every step of the request.

A request names a user and a dataset. Everything the steps after it need (the dataset's
record, its parsed metadata, the user's grant, the budget account, the data source) is read
or built here at most once, so that a release reads the store only where the answer may have
changed (the spend, after the reservation).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from lomas_server.accounting import ZCDP, AccountingRule, PrivacyAmount, PrivacyLoss
from lomas_server.datasets import source_from_description
from lomas_server.datasets.sources import DatasetSource
from lomas_server.errors import Forbidden, InvalidRequest, NotFound
from lomas_server.limits import DEFAULT_DELTA
from lomas_server.metadata import DatasetMetadata
from lomas_server.service.accounts import Account, rule_of
from lomas_server.store.base import AdminStore, DatasetRecord, GrantRecord


@dataclass(frozen=True)
class Limits:
    """Server-wide limits; a dataset's own per-query maximum, when set, replaces the first two."""

    max_query_epsilon: float = 10.0
    max_query_delta: float = 1e-3
    max_dummy_rows: int = 100_000
    max_synth_rows: int = 100_000


@dataclass
class DatasetContext:
    user: str
    record: DatasetRecord
    grant: GrantRecord
    store: AdminStore
    limits: Limits
    _account: Account | None = field(default=None, repr=False)

    @property
    def dataset(self) -> str:
        return self.record.name

    @functools.cached_property
    def metadata(self) -> DatasetMetadata:
        return DatasetMetadata.from_dict(self.record.metadata)

    @functools.cached_property
    def source(self) -> DatasetSource:
        return source_from_description(self.record.source)

    @functools.cached_property
    def rule(self) -> AccountingRule:
        return rule_of(self.record)

    @property
    def account(self) -> Account:
        """The user's budget on the dataset, as read the first time it was asked for."""
        if self._account is None:
            self._account = self.read_spent()
        return self._account

    def read_spent(self) -> Account:
        """The account with the spend as the store has it now (after a release, say)."""
        self._account = Account(
            self.record, self.grant.initial, self.store.spent(self.user, self.dataset)
        )
        return self._account

    def read_account(self) -> Account:
        """The account as the store has it now: the grant (an admin may have changed it while
        the query was planned) and the spend (after a reservation, say)."""
        grant = self.store.get_grant(self.user, self.dataset)
        if grant is None:
            raise _not_available(self.dataset)
        self.grant = grant
        return self.read_spent()

    def dataset_spent(self) -> PrivacyAmount | None:
        """The dataset-wide spend, when the dataset has a cap that it counts against."""
        return self.store.dataset_spent(self.dataset) if self.record.cap is not None else None

    @property
    def max_query(self) -> PrivacyAmount:
        return max_query(self.record, self.limits)

    def default_delta(self) -> float:
        """The delta a query gets when it needs one (its groups are shown above a threshold)
        and the analyst gave none: ``DEFAULT_DELTA``, or less where the per-query maximum
        (less a zCDP dataset's conversion delta) is smaller.

        It depends on nothing that changes between two runs of the same query (not on what
        is left), so that running a cell again replays it; a grant without room for it is
        refused at the reservation, with the numbers."""
        room = self.max_query.delta
        if self.rule.mode == ZCDP:
            room -= self.record.conversion_delta
        # Rounded down to two digits: rounding up could pass the maximum.
        return _two_digits_down(min(DEFAULT_DELTA, room / 2)) if room > 0 else 0.0

    def charge(self, loss: PrivacyLoss) -> PrivacyAmount:
        """A query's cost in the ledger's currency, refused above the per-query maximum."""
        cost = self.rule.charge(loss)
        stated = self.rule.as_approx_dp(cost)
        maximum = self.max_query
        if not stated.fits_within(maximum):
            raise InvalidRequest(
                f"this query would cost epsilon={stated.epsilon:g}, delta={stated.delta:g}, "
                f"above the per-query maximum epsilon={maximum.epsilon:g}, "
                f"delta={maximum.delta:g} for this dataset; lower epsilon or delta, or query "
                "fewer aggregates",
                code="query_too_expensive",
            )
        return cost


def open_context(
    store: AdminStore, limits: Limits, user: str, dataset: str, *, for_query: bool = False
) -> DatasetContext:
    """The user's view of a granted dataset; unknown and not-granted datasets answer alike,
    so that a user cannot probe for names. ``for_query``: the user must also be allowed to
    run queries."""
    record = store.get_dataset(dataset)
    grant = store.get_grant(user, dataset) if record is not None else None
    if record is None or grant is None:
        raise _not_available(dataset)
    if for_query:
        account = store.get_user(user)
        if account is None or not account.may_query:
            raise Forbidden("your account is not allowed to run queries; ask the administrator")
    return DatasetContext(user, record, grant, store, limits)


def max_query(record: DatasetRecord, limits: Limits) -> PrivacyAmount:
    if record.max_query is not None:
        return record.max_query
    return PrivacyAmount.budget(limits.max_query_epsilon, limits.max_query_delta)


def _not_available(dataset: str) -> NotFound:
    return NotFound(
        f"no dataset {dataset!r} is available to you (the service's admins grant access)",
        code="dataset_not_found",
    )


def _two_digits_down(value: float) -> float:
    scale = 10.0 ** (math.floor(math.log10(value)) - 1)
    return math.floor(value / scale) * scale
