"""Budget requests on MongoDB, safe for concurrent analysts and admins without transactions.

As for the ledger (mongo_ledger.py), the only atomic primitive used is a unique ``_id`` on
insert; FerretDB runs conditional updates and ``findAndModify`` non-atomically.

- Requests (``budget_requests``) are numbered per user and dataset, and the number is part
  of the ``_id``. Request N+1 is filed only after request N was decided, so two analysts'
  sessions asking at once both try N+1 and one insert fails: at most one is pending.
- Decisions (``budget_decisions``) are documents of their own keyed by the request's id.
  Deciding is inserting it: of two admins deciding at once, one insert fails (a Conflict),
  so a request is granted at most once. A request document never changes, and a request
  without a decision is pending.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from lomas_server.accounting import PrivacyAmount
from lomas_server.errors import StoreUnavailable
from lomas_server.store import record_fields, rules
from lomas_server.store.base import PENDING, BudgetRequestRecord

MAX_ATTEMPTS = 50  # a filing that loses the race for a number re-reads at most this often


class MongoBudgetRequests:
    def __init__(self, db: Any) -> None:
        self._requests = db.budget_requests
        self._decisions = db.budget_decisions

    def add(self, record: BudgetRequestRecord) -> None:
        """File ``record`` as the next request of its user on its dataset, and its decision
        if it has one (restores). Nothing is filed after a pending request."""
        from pymongo.errors import DuplicateKeyError

        if self._requests.find_one({"id": record.id}, {"_id": 1}) is not None:
            raise rules.request_id_taken(record.id)
        for attempt in range(MAX_ATTEMPTS):
            last = self._last(record.user, record.dataset)
            if last is not None and self._pending(last["id"]):
                raise rules.pending_request(record.user, record.dataset)
            number = 1 if last is None else last["number"] + 1
            try:
                self._requests.insert_one(
                    {
                        "_id": json.dumps([record.user, record.dataset, number]),
                        "number": number,
                        **record_fields.request_fields(record),
                    }
                )
                break
            except DuplicateKeyError:
                # Another request took this number: read again (it is pending, usually).
                time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
        else:
            raise StoreUnavailable("the admin database is too busy; the request was not filed")
        if record.state != PENDING:
            self._decisions.insert_one(_decision_document(record))

    def get(self, request_id: str) -> BudgetRequestRecord | None:
        doc = self._requests.find_one({"id": request_id})
        return None if doc is None else self._joined([doc])[0]

    def listed(
        self, *, user: str | None, dataset: str | None, state: str | None
    ) -> list[BudgetRequestRecord]:
        query = {k: v for k, v in (("user", user), ("dataset", dataset)) if v is not None}
        records = self._joined(list(self._requests.find(query)))
        records.sort(key=lambda r: (r.created_at, r.id))
        return [r for r in records if state is None or r.state == state]

    def decide(
        self,
        request_id: str,
        *,
        state: str,
        decided_by: str,
        note: str | None,
        granted: PrivacyAmount | None,
        decided_at: str | None,
    ) -> BudgetRequestRecord:
        from pymongo.errors import DuplicateKeyError

        record = self.get(request_id)
        if record is None:
            raise rules.no_budget_request(request_id)
        if record.state != PENDING:
            raise rules.already_decided(request_id, record.state)
        decided = record_fields.decided(
            record,
            state=state,
            decided_by=decided_by,
            note=note,
            granted=granted,
            decided_at=decided_at,
        )
        try:
            self._decisions.insert_one(_decision_document(decided))
        except DuplicateKeyError as err:
            # Another admin decided it between our read and our insert.
            winner = self.get(request_id)
            raise rules.already_decided(
                request_id, winner.state if winner is not None else "decided"
            ) from err
        return decided

    def _last(self, user: str, dataset: str) -> dict[str, Any] | None:
        last: dict[str, Any] | None = self._requests.find_one(
            {"user": user, "dataset": dataset}, sort=[("number", -1)]
        )
        return last

    def _pending(self, request_id: str) -> bool:
        return self._decisions.find_one({"_id": request_id}, {"_id": 1}) is None

    def _joined(self, docs: list[dict[str, Any]]) -> list[BudgetRequestRecord]:
        """Requests with their decisions, if any."""
        ids = [doc["id"] for doc in docs]
        decisions = {d["_id"]: d for d in self._decisions.find({"_id": {"$in": ids}})}
        return [
            record_fields.budget_request_record(
                {**doc, **_decision_fields(decisions.get(doc["id"]))}
            )
            for doc in docs
        ]


def _decision_document(record: BudgetRequestRecord) -> dict[str, Any]:
    return {"_id": record.id, **record_fields.decision_fields(record)}


def _decision_fields(doc: dict[str, Any] | None) -> dict[str, Any]:
    return {} if doc is None else {k: v for k, v in doc.items() if k != "_id"}
