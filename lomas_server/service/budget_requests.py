"""Budget requests: an analyst asks for more budget on a dataset, an admin approves (which
grants it) or denies it with a note. Nothing is ever deleted.

Every value may come straight from a JSON body (text, booleans, null, NaN, 1e400 written
out), so each is checked here and refused with one line that names the field. Approving is
decided in the store first, as one compare-and-set, and only the winner grows the grant: two
admins approving at once grant once.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import uuid
from typing import Any

from lomas_server.accounting import MAX_EPSILON, PrivacyAmount
from lomas_server.errors import Conflict, InvalidRequest, NotFound, ServiceError
from lomas_server.service.stated_budgets import check_holdable, check_rule, finite_number
from lomas_server.store.base import (
    APPROVED,
    DENIED,
    PENDING,
    REQUEST_STATES,
    AdminStore,
    BudgetRequestRecord,
    DatasetRecord,
    utc_now,
)

log = logging.getLogger(__name__)

MAX_TEXT = 2000
MIN_ID_PREFIX = 8
_REQUEST_ID_START = re.compile(rf"[0-9a-f]{{{MIN_ID_PREFIX},32}}")
# Characters that would let a reason or note pass for something else on an admin's screen:
# bidirectional overrides and isolates (the "Trojan Source" characters).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class BudgetRequests:
    def __init__(self, store: AdminStore) -> None:
        self.store = store

    # -- the analyst's side -----------------------------------------------------------------
    def ask(self, user: str, dataset: str, epsilon: Any, delta: Any, reason: Any) -> dict[str, Any]:
        """File a pending request (the 201 body). One pending request per user and dataset."""
        requested = PrivacyAmount.budget(_epsilon(epsilon), 0.0 if delta is None else _delta(delta))
        text = _text(reason, "reason")
        if self.store.get_dataset(_name(dataset, "dataset")) is None:
            raise NotFound(f"no dataset {dataset!r}")
        record = BudgetRequestRecord(
            id=uuid.uuid4().hex,
            user=_name(user, "user"),
            dataset=dataset,
            requested=requested,
            reason=text,
            state=PENDING,
            created_at=utc_now(),
        )
        return budget_request_view(self.store.add_budget_request(record))

    def mine(self, user: str) -> list[dict[str, Any]]:
        return [budget_request_view(r) for r in self.store.budget_requests(user=user)]

    # -- the admin's side -------------------------------------------------------------------
    def list(
        self, *, state: str | None = None, user: str | None = None, dataset: str | None = None
    ) -> list[dict[str, Any]]:
        if state is not None and state not in REQUEST_STATES:
            raise InvalidRequest(f"state must be one of {', '.join(REQUEST_STATES)}")
        found = self.store.budget_requests(
            state=state,
            user=None if user is None else _name(user, "user"),
            dataset=None if dataset is None else _name(dataset, "dataset"),
        )
        return [budget_request_view(r) for r in found]

    def approve(
        self,
        request_id: str,
        admin: str,
        *,
        epsilon: Any = None,
        delta: Any = None,
        note: Any = None,
    ) -> dict[str, Any]:
        """Approve a pending request and add the granted amount (the requested one unless
        given) to the user's grant on the dataset, or grant it if there was none."""
        record = self._pending(request_id)
        # Each part defaults to exactly what was asked (its units, not a float round trip).
        granted = PrivacyAmount(
            record.requested.eps_units
            if epsilon is None
            else PrivacyAmount.budget(_epsilon(epsilon), 0).eps_units,
            record.requested.delta_units
            if delta is None
            else PrivacyAmount.budget(0, _delta(delta)).delta_units,
        )
        text = None if note is None else _text(note, "note")
        dataset = self.store.get_dataset(record.dataset)
        if dataset is None:
            raise NotFound(f"no dataset {record.dataset!r}")
        if self.store.get_user(record.user) is None:
            raise NotFound(f"no user {record.user!r}")
        # Checked before deciding, so that a grant the rule refuses leaves the request pending.
        self._grown_grant(record, dataset, granted)
        decided = self.store.decide_budget_request(
            record.id,
            state=APPROVED,
            decided_by=_name(admin, "admin"),
            note=text,
            granted=granted,
        )
        # Only the winner of the decision reaches this line. The grant is read again: an
        # admin's change to it since the check above must not be lost.
        try:
            self.store.set_grant(
                record.user, record.dataset, self._grown_grant(record, dataset, granted)
            )
        except ServiceError as err:
            # Without transactions on MongoDB the decision cannot be undone with the grant:
            # say exactly what stands, for the admin to finish by hand.
            log.error("budget request %s approved but its grant failed: %s", record.id, err)
            raise err.with_message(
                f"budget request {record.id} is recorded as approved, but {record.user!r}'s "
                f"grant on {record.dataset!r} could not be raised by {_words(granted)} "
                f"({err.message}); set it with lomas-admin grant"
            ) from err.__cause__
        return budget_request_view(decided)

    def deny(self, request_id: str, admin: str, note: Any) -> dict[str, Any]:
        """Deny a pending request; the note, saying why, is required."""
        record = self._pending(request_id)
        if note is None:
            raise InvalidRequest("note is required: say why the request is denied")
        text = _text(note, "note")
        decided = self.store.decide_budget_request(
            record.id, state=DENIED, decided_by=_name(admin, "admin"), note=text, granted=None
        )
        return budget_request_view(decided)

    def _pending(self, request_id: Any) -> BudgetRequestRecord:
        if not isinstance(request_id, str) or not _REQUEST_ID_START.fullmatch(request_id):
            raise NotFound(
                "no budget request with this id (an id is 32 hexadecimal digits, or its first "
                f"{MIN_ID_PREFIX} or more as the analyst's notebook shows it)"
            )
        record = self.store.get_budget_request(self._full_id(request_id))
        if record is None:
            raise NotFound(f"no budget request {request_id!r}")
        if record.state != PENDING:
            raise Conflict(f"budget request {request_id!r} is already {record.state}")
        return record

    def _full_id(self, request_id: str) -> str:
        """The id a prefix stands for, when exactly one pending request has it (analysts see
        the first 8 digits; an admin deciding from the command line may type those)."""
        if len(request_id) == 32:
            return request_id
        found = {
            r.id for r in self.store.budget_requests(state=PENDING) if r.id.startswith(request_id)
        }
        if len(found) > 1:
            raise InvalidRequest(
                f"{len(found)} pending budget requests start with {request_id!r}: give more digits"
            )
        return found.pop() if found else request_id

    def _grown_grant(
        self, record: BudgetRequestRecord, dataset: DatasetRecord, granted: PrivacyAmount
    ) -> PrivacyAmount:
        """The user's grant once ``granted`` is added, checked as a grant made outright is."""
        current = self.store.get_grant(record.user, record.dataset)
        total = granted if current is None else current.initial + granted
        check_holdable(total, "budget")
        check_rule(dataset, total)
        return total


def budget_request_view(record: BudgetRequestRecord) -> dict[str, Any]:
    """The BudgetRequest JSON of the API."""
    return {
        "id": record.id,
        "user": record.user,
        "dataset": record.dataset,
        "requested": record.requested.as_dict(),
        "reason": record.reason,
        "state": record.state,
        "created_at": record.created_at,
        "decided_at": record.decided_at,
        "decided_by": record.decided_by,
        "note": record.note,
        "granted": None if record.granted is None else record.granted.as_dict(),
    }


# -- fields --------------------------------------------------------------------------------
def _epsilon(value: Any) -> float:
    number = finite_number(value)
    if number is None:
        raise InvalidRequest("epsilon must be a finite number")
    if not 0 < number <= MAX_EPSILON:
        raise InvalidRequest(f"epsilon must be greater than 0 and at most {MAX_EPSILON}")
    if PrivacyAmount.budget(number, 0).is_zero():
        raise InvalidRequest("epsilon must be at least 1e-12")
    return number


def _delta(value: Any) -> float:
    number = finite_number(value)
    if number is None:
        raise InvalidRequest("delta must be a finite number")
    if not 0 <= number < 1:
        raise InvalidRequest("delta must be at least 0 and below 1")
    return number


def _text(value: Any, field: str) -> str:
    """A reason or note: 1 to MAX_TEXT characters once trimmed; lines are fine, other
    control characters (and lone surrogates, which no store can encode) are not."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be text")
    text = value.strip()
    if not text:
        raise InvalidRequest(f"{field} must not be empty")
    if len(text) > MAX_TEXT:
        raise InvalidRequest(f"{field} must be at most {MAX_TEXT} characters")
    for char in text:
        if char in "\n\r":
            continue
        if unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS:
            raise InvalidRequest(
                f"{field} must not contain control characters (found U+{ord(char):04X})"
            )
    return text


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{field} must be a non-empty name")
    return value


def _words(amount: PrivacyAmount) -> str:
    return f"epsilon={amount.epsilon:g}, delta={amount.delta:g}"
