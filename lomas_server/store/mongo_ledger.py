"""The spend ledger on MongoDB, safe for concurrent reservations without transactions.

It uses only what every MongoDB-wire server enforces atomically: a unique key on insert. The
ledger of a dataset is one sequence: entry ``seq`` N+1 records a spend together with the
running totals of its user and of the whole dataset after it. A reservation reads the last
entry, checks the grant and the dataset cap against those totals, and inserts entry N+1; if
another reservation took N+1 first, the insert fails on the unique ``_id`` and it starts
over. So no two reservations are ever checked against the same totals, across threads,
processes and servers, without transactions and without ``findAndModify`` (FerretDB runs
neither atomically: concurrent conditional ``$inc`` updates were seen to lose writes). Nothing
is ever deleted or rewritten, which is also what rules out a stale reader reusing a place.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from lomas_server.accounting import PrivacyAmount
from lomas_server.errors import StoreUnavailable
from lomas_server.store.base import LedgerEntry, utc_now
from lomas_server.store.record_fields import ledger_entry, ledger_fields

MAX_ATTEMPTS = 2000  # a reservation that loses the race for a place starts over at most this often

# Raises (BudgetExceeded) unless a spend fits after the user's and the dataset's totals.
Check = Callable[[PrivacyAmount, PrivacyAmount], None]


class SequenceLedger:
    def __init__(self, db: Any) -> None:
        self._collection = db.ledger

    def append(
        self,
        user: str,
        dataset: str,
        cost: PrivacyAmount,
        *,
        kind: str,
        query_id: str | None,
        check: Check | None,
        created_at: str | None = None,
    ) -> str:
        """Insert the dataset's next ledger entry, checked against the totals it follows."""
        from pymongo.errors import DuplicateKeyError

        for attempt in range(MAX_ATTEMPTS):
            head = self._head(dataset)
            seq = head["seq"] if head else 0
            mine = self._head(dataset, user)
            if mine is not None and mine["seq"] > seq:
                continue  # an entry arrived between the two reads: read again
            user_total, dataset_total = _totals(mine, "user"), _totals(head, "dataset")
            if check is not None:
                check(user_total, dataset_total)
            now = created_at or utc_now()
            after_user, after_dataset = user_total + cost, dataset_total + cost
            try:
                self._collection.insert_one(
                    {
                        "_id": f"{dataset}/{seq + 1:020d}",
                        "seq": seq + 1,
                        **ledger_fields(
                            user, dataset, cost, kind=kind, query_id=query_id, created_at=now
                        ),
                        # Totals as text: a dataset's sum over many users may pass 64 bits.
                        "user_eps": str(after_user.eps_units),
                        "user_delta": str(after_user.delta_units),
                        "dataset_eps": str(after_dataset.eps_units),
                        "dataset_delta": str(after_dataset.delta_units),
                    }
                )
                return now
            except DuplicateKeyError:
                # Another reservation took this place in the sequence; back off a little.
                time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
        raise StoreUnavailable(
            "the admin database is too busy to record the spend; nothing was spent"
        )

    def _head(self, dataset: str, user: str | None = None) -> dict[str, Any] | None:
        """The dataset's last ledger entry (or the user's last one on it)."""
        query = {"dataset": dataset, **({"user": user} if user is not None else {})}
        head: dict[str, Any] | None = self._collection.find_one(query, sort=[("seq", -1)])
        return head

    def user_spent(self, user: str, dataset: str) -> PrivacyAmount:
        return _totals(self._head(dataset, user), "user")

    def dataset_spent(self, dataset: str) -> PrivacyAmount:
        return _totals(self._head(dataset), "dataset")

    def listed(self, *, user: str | None, dataset: str | None) -> list[LedgerEntry]:
        """Entries in the order they were written, numbered from 1 across datasets."""
        query = {k: v for k, v in (("user", user), ("dataset", dataset)) if v is not None}
        docs = sorted(
            self._collection.find(query), key=lambda d: (d["created_at"], d["dataset"], d["seq"])
        )
        return [ledger_entry(index, doc) for index, doc in enumerate(docs, start=1)]

    def has_spend_of(self, query_id: str) -> bool:
        return self._collection.find_one({"query_id": query_id}, {"_id": 1}) is not None


def _totals(entry: dict[str, Any] | None, whose: str) -> PrivacyAmount:
    if entry is None:
        return PrivacyAmount.zero()
    return PrivacyAmount(int(entry[f"{whose}_eps"]), int(entry[f"{whose}_delta"]))
