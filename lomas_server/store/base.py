"""The admin store's interface: users, datasets, grants, the spend ledger, the query archive
and budget requests.

Every backend (SQLite embedded, MongoDB for deployments) implements this one class and
passes one contract test suite. The ledger is append-only and is the source of truth for
budgets; ``reserve`` is the single place where spending happens, atomically.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lomas_server.accounting import PrivacyAmount


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class UserRecord:
    name: str
    is_admin: bool
    may_query: bool
    created_at: str
    token_hash: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    # Where the rows live, e.g. {"kind": "local", "path": "/data/x.csv", "format": "csv"}.
    source: dict[str, Any]
    # The admin's metadata document (lomas / SmartNoise-SQL format).
    metadata: dict[str, Any]
    # Largest cost one query may have; None means the server's default.
    max_query: PrivacyAmount | None = None
    # Sum over all users that this dataset may ever spend; None means no dataset-wide cap.
    cap: PrivacyAmount | None = None
    created_at: str = ""
    # How spends compose (accounting.rules): "basic" (lomas's) or "zcdp"; fixed at creation.
    accounting: str = "basic"
    conversion_delta: float = 1e-6


@dataclass(frozen=True)
class GrantRecord:
    user: str
    dataset: str
    initial: PrivacyAmount


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    user: str
    dataset: str
    query_id: str | None
    amount: PrivacyAmount
    kind: str
    created_at: str


@dataclass(frozen=True)
class Reservation:
    """A spend about to happen, together with the archive entry that records it.

    Cost and caps are in the dataset's ledger currency; the store only compares and adds.
    """

    query_id: str
    user: str
    dataset: str
    engine: str
    request: dict[str, Any]
    cost: PrivacyAmount
    user_cap: PrivacyAmount
    dataset_cap: PrivacyAmount | None = None
    # Identifies identical requests (engine, normalized query, parameters) for replays.
    fingerprint: str | None = None


@dataclass(frozen=True)
class ArchiveEntry:
    query_id: str
    user: str
    dataset: str
    engine: str
    request: dict[str, Any]
    cost: PrivacyAmount
    status: str
    created_at: str
    finished_at: str | None
    result: dict[str, Any] | None
    error: str | None
    fingerprint: str | None = None


@dataclass(frozen=True)
class BudgetRequestRecord:
    """An analyst's request for more budget on a dataset, and the admin's decision on it.

    Amounts are as stated, (epsilon, delta), never in a dataset's ledger currency. A request
    is never deleted; once decided it never changes again.
    """

    id: str
    user: str
    dataset: str
    requested: PrivacyAmount
    reason: str
    state: str
    created_at: str
    decided_at: str | None = None
    decided_by: str | None = None
    note: str | None = None
    # What the approval added to the user's grant; None unless approved.
    granted: PrivacyAmount | None = None


# Budget request states: one pending request per user and dataset at most.
PENDING, APPROVED, DENIED = "pending", "approved", "denied"
REQUEST_STATES = (PENDING, APPROVED, DENIED)

# Archive statuses. "running" entries left behind by a crash become "interrupted" at start-up.
RUNNING, DONE, FAILED, INTERRUPTED = "running", "done", "failed", "interrupted"
# Stopped at the server's time limit; its spend stays, like any query that ran.
STOPPED = "stopped"


class AdminStore(abc.ABC):
    """What the service needs from an admin database."""

    # -- users ---------------------------------------------------------------------------
    @abc.abstractmethod
    def add_user(
        self, name: str, token_hash: str, *, is_admin: bool = False, created_at: str | None = None
    ) -> UserRecord: ...

    @abc.abstractmethod
    def get_user(self, name: str) -> UserRecord | None: ...

    @abc.abstractmethod
    def user_by_token_hash(self, token_hash: str) -> UserRecord | None: ...

    @abc.abstractmethod
    def list_users(self) -> list[UserRecord]: ...

    @abc.abstractmethod
    def set_token_hash(self, name: str, token_hash: str) -> None: ...

    @abc.abstractmethod
    def set_may_query(self, name: str, may_query: bool) -> None: ...

    # -- datasets ------------------------------------------------------------------------
    @abc.abstractmethod
    def add_dataset(self, record: DatasetRecord) -> DatasetRecord: ...

    @abc.abstractmethod
    def get_dataset(self, name: str) -> DatasetRecord | None: ...

    @abc.abstractmethod
    def list_datasets(self) -> list[DatasetRecord]: ...

    @abc.abstractmethod
    def set_dataset_limits(
        self, name: str, *, max_query: PrivacyAmount | None, cap: PrivacyAmount | None
    ) -> None: ...

    # -- grants --------------------------------------------------------------------------
    @abc.abstractmethod
    def set_grant(self, user: str, dataset: str, initial: PrivacyAmount) -> GrantRecord: ...

    @abc.abstractmethod
    def get_grant(self, user: str, dataset: str) -> GrantRecord | None: ...

    @abc.abstractmethod
    def grants_for_user(self, user: str) -> list[GrantRecord]: ...

    # -- ledger --------------------------------------------------------------------------
    @abc.abstractmethod
    def reserve(self, reservation: Reservation) -> None:
        """Atomically check both caps against the ledger and record the spend and its archive entry.

        Raises BudgetExceeded (and records nothing) when the cost does not fit the user's cap
        or the dataset-wide cap.
        """

    @abc.abstractmethod
    def record_spend(
        self,
        user: str,
        dataset: str,
        amount: PrivacyAmount,
        *,
        kind: str,
        query_id: str | None = None,
        created_at: str | None = None,
    ) -> None:
        """Append a spend that bypasses the caps (imports of budgets spent elsewhere, restores)."""

    @abc.abstractmethod
    def spent(self, user: str, dataset: str) -> PrivacyAmount: ...

    @abc.abstractmethod
    def dataset_spent(self, dataset: str) -> PrivacyAmount: ...

    @abc.abstractmethod
    def ledger(
        self, *, user: str | None = None, dataset: str | None = None
    ) -> list[LedgerEntry]: ...

    # -- archive -------------------------------------------------------------------------
    @abc.abstractmethod
    def finish(
        self,
        query_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None: ...

    @abc.abstractmethod
    def archive(self, user: str, *, dataset: str | None = None) -> list[ArchiveEntry]: ...

    @abc.abstractmethod
    def archive_entry(self, query_id: str) -> ArchiveEntry | None: ...

    @abc.abstractmethod
    def last_paid(self, user: str, dataset: str) -> ArchiveEntry | None:
        """The user's most recent archived query on the dataset that cost something."""

    @abc.abstractmethod
    def find_release(self, user: str, dataset: str, fingerprint: str) -> ArchiveEntry | None:
        """The first completed release of this user's request with this fingerprint, if any."""

    @abc.abstractmethod
    def restore_archive_entry(self, entry: ArchiveEntry) -> None:
        """Put back an archive entry from a backup (its spend is restored through the ledger)."""

    @abc.abstractmethod
    def mark_interrupted(self) -> int:
        """Turn archive entries still 'running' (left by a crash) into 'interrupted'."""

    # -- budget requests -----------------------------------------------------------------
    @abc.abstractmethod
    def add_budget_request(self, record: BudgetRequestRecord) -> BudgetRequestRecord:
        """File a pending request.

        Raises NotFound for an unknown user or dataset, and Conflict when the user already
        has a pending request on the dataset (checked atomically with the insert) or the id
        is taken.
        """

    @abc.abstractmethod
    def get_budget_request(self, request_id: str) -> BudgetRequestRecord | None: ...

    @abc.abstractmethod
    def budget_requests(
        self, *, user: str | None = None, dataset: str | None = None, state: str | None = None
    ) -> list[BudgetRequestRecord]:
        """Requests matching every filter given, oldest first."""

    @abc.abstractmethod
    def decide_budget_request(
        self,
        request_id: str,
        *,
        state: str,
        decided_by: str,
        note: str | None,
        granted: PrivacyAmount | None,
        decided_at: str | None = None,
    ) -> BudgetRequestRecord:
        """Move a pending request to ``state`` (approved or denied), as one compare-and-set:
        of two deciders racing, exactly one wins and the other gets Conflict.

        Raises NotFound for an unknown id and Conflict if the request is no longer pending.
        The grant itself is not touched here.
        """

    @abc.abstractmethod
    def restore_budget_request(self, record: BudgetRequestRecord) -> None:
        """Put back a request from a backup as it was, decided or pending (the one-pending
        rule still holds: a second pending request of the same user and dataset is a Conflict)."""

    # -- lifecycle -----------------------------------------------------------------------
    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable if the store cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""
