"""Each record of the admin store as the flat fields that both backends store.

The SQLite columns and the MongoDB document fields have the same names, so each record is
shaped here once and the two backends cannot drift apart. Amounts are pairs of integer units
(``eps_units`` and ``delta_units``, or ``<prefix>_eps`` and ``<prefix>_delta`` for optional
limits), so that sums stay exact. What differs stays with each backend: SQLite writes nested
values as JSON text, MongoDB keys each document by ``_id``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from lomas_server.accounting import PrivacyAmount
from lomas_server.store import base
from lomas_server.store.base import INTERRUPTED, PENDING, RUNNING, utc_now

Fields = Mapping[str, Any]


# -- amounts -------------------------------------------------------------------------------
def units(fields: Fields) -> PrivacyAmount:
    return PrivacyAmount(fields["eps_units"], fields["delta_units"])


def unit_fields(amount: PrivacyAmount) -> dict[str, int]:
    return {"eps_units": amount.eps_units, "delta_units": amount.delta_units}


def _limit_fields(prefix: str, amount: PrivacyAmount | None) -> dict[str, int | None]:
    """An optional limit (a dataset's ``max_query`` or ``cap``): both units None when unset."""
    return {
        f"{prefix}_eps": None if amount is None else amount.eps_units,
        f"{prefix}_delta": None if amount is None else amount.delta_units,
    }


def limits_fields(max_query: PrivacyAmount | None, cap: PrivacyAmount | None) -> dict[str, Any]:
    """A dataset's two optional limits."""
    return {**_limit_fields("max_query", max_query), **_limit_fields("cap", cap)}


def _limit(fields: Fields, prefix: str) -> PrivacyAmount | None:
    eps = fields.get(f"{prefix}_eps")
    return None if eps is None else PrivacyAmount(eps, fields.get(f"{prefix}_delta") or 0)


# -- users ---------------------------------------------------------------------------------
def new_user(
    name: str, token_hash: str, *, is_admin: bool, created_at: str | None
) -> base.UserRecord:
    return base.UserRecord(
        name=name,
        is_admin=is_admin,
        may_query=True,
        created_at=created_at or utc_now(),
        token_hash=token_hash,
    )


def user_fields(record: base.UserRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "token_hash": record.token_hash,
        "is_admin": record.is_admin,
        "may_query": record.may_query,
        "created_at": record.created_at,
    }


def user_record(fields: Fields) -> base.UserRecord:
    return base.UserRecord(
        fields["name"],
        bool(fields["is_admin"]),
        bool(fields["may_query"]),
        fields["created_at"],
        fields.get("token_hash"),
    )


# -- datasets ------------------------------------------------------------------------------
def dataset_fields(record: base.DatasetRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "source": record.source,
        "metadata": record.metadata,
        **limits_fields(record.max_query, record.cap),
        "created_at": record.created_at or utc_now(),
        "accounting": record.accounting,
        "conversion_delta": record.conversion_delta,
    }


def dataset_record(fields: Fields) -> base.DatasetRecord:
    # Datasets stored before their accounting rule was recorded keep lomas's rule.
    return base.DatasetRecord(
        name=fields["name"],
        source=fields["source"],
        metadata=fields["metadata"],
        max_query=_limit(fields, "max_query"),
        cap=_limit(fields, "cap"),
        created_at=fields["created_at"],
        accounting=fields.get("accounting", "basic"),
        conversion_delta=fields.get("conversion_delta", 1e-6),
    )


# -- grants and the ledger -----------------------------------------------------------------
def grant_fields(initial: PrivacyAmount) -> dict[str, Any]:
    """What a grant holds besides its (user, dataset) key."""
    return {**unit_fields(initial), "updated_at": utc_now()}


def grant_record(fields: Fields) -> base.GrantRecord:
    return base.GrantRecord(fields["user"], fields["dataset"], units(fields))


def ledger_fields(
    user: str,
    dataset: str,
    amount: PrivacyAmount,
    *,
    kind: str,
    query_id: str | None,
    created_at: str,
) -> dict[str, Any]:
    return {
        "user": user,
        "dataset": dataset,
        "query_id": query_id,
        **unit_fields(amount),
        "kind": kind,
        "created_at": created_at,
    }


def ledger_entry(seq: int, fields: Fields) -> base.LedgerEntry:
    return base.LedgerEntry(
        seq,
        fields["user"],
        fields["dataset"],
        fields["query_id"],
        units(fields),
        fields["kind"],
        fields["created_at"],
    )


# -- the archive ---------------------------------------------------------------------------
def running_entry(reservation: base.Reservation, created_at: str) -> base.ArchiveEntry:
    """The archive entry a reservation writes along with its spend."""
    r = reservation
    return base.ArchiveEntry(
        query_id=r.query_id,
        user=r.user,
        dataset=r.dataset,
        engine=r.engine,
        request=r.request,
        cost=r.cost,
        status=RUNNING,
        created_at=created_at,
        finished_at=None,
        result=None,
        error=None,
        fingerprint=r.fingerprint,
    )


def archive_fields(entry: base.ArchiveEntry) -> dict[str, Any]:
    return {
        "query_id": entry.query_id,
        "user": entry.user,
        "dataset": entry.dataset,
        "engine": entry.engine,
        "request": entry.request,
        **unit_fields(entry.cost),
        "status": entry.status,
        "created_at": entry.created_at,
        "finished_at": entry.finished_at,
        "result": _encode(entry.result),
        "error": entry.error,
        "fingerprint": entry.fingerprint,
    }


def archive_entry(fields: Fields) -> base.ArchiveEntry:
    return base.ArchiveEntry(
        query_id=fields["query_id"],
        user=fields["user"],
        dataset=fields["dataset"],
        engine=fields["engine"],
        request=fields["request"],
        cost=units(fields),
        status=fields["status"],
        created_at=fields["created_at"],
        finished_at=fields.get("finished_at"),
        result=_decode(fields.get("result")),
        error=fields.get("error"),
        fingerprint=fields.get("fingerprint"),
    )


def finished_fields(
    status: str, result: dict[str, Any] | None, error: str | None
) -> dict[str, Any]:
    return {"status": status, "finished_at": utc_now(), "result": _encode(result), "error": error}


def interrupted_fields() -> dict[str, Any]:
    """A 'running' entry that a crash left behind: its spend stays."""
    return {
        "status": INTERRUPTED,
        "finished_at": utc_now(),
        "error": "the server stopped while the query ran",
    }


# -- budget requests -----------------------------------------------------------------------
def budget_request_fields(record: base.BudgetRequestRecord) -> dict[str, Any]:
    """A whole request, its decision included (SQLite keeps both in one row)."""
    return {**request_fields(record), **decision_fields(record)}


def request_fields(record: base.BudgetRequestRecord) -> dict[str, Any]:
    """What an analyst asked: fixed once filed."""
    return {
        "id": record.id,
        "user": record.user,
        "dataset": record.dataset,
        **unit_fields(record.requested),
        "reason": record.reason,
        "created_at": record.created_at,
    }


def decision_fields(record: base.BudgetRequestRecord) -> dict[str, Any]:
    """What the admin decided (all None but the state while pending)."""
    return {
        "state": record.state,
        "decided_at": record.decided_at,
        "decided_by": record.decided_by,
        "note": record.note,
        **_limit_fields("granted", record.granted),
    }


def decided(
    record: base.BudgetRequestRecord,
    *,
    state: str,
    decided_by: str,
    note: str | None,
    granted: PrivacyAmount | None,
    decided_at: str | None,
) -> base.BudgetRequestRecord:
    """``record`` once decided; a denial grants nothing, whatever the caller passed."""
    if state not in (base.APPROVED, base.DENIED):
        raise ValueError(f"a budget request is decided as approved or denied, not {state!r}")
    return dataclasses.replace(
        record,
        state=state,
        decided_at=decided_at or utc_now(),
        decided_by=decided_by,
        note=note,
        granted=granted if state == base.APPROVED else None,
    )


def budget_request_record(fields: Fields) -> base.BudgetRequestRecord:
    # A request with no decision fields (MongoDB keeps decisions apart) is pending.
    return base.BudgetRequestRecord(
        id=fields["id"],
        user=fields["user"],
        dataset=fields["dataset"],
        requested=units(fields),
        reason=fields["reason"],
        state=fields.get("state") or PENDING,
        created_at=fields["created_at"],
        decided_at=fields.get("decided_at"),
        decided_by=fields.get("decided_by"),
        note=fields.get("note"),
        granted=_limit(fields, "granted"),
    )


def _encode(result: dict[str, Any] | None) -> str | None:
    # Results are tables (lists of rows); FerretDB stores no nested arrays, so they go as text
    # (SQLite stores text anyway).
    return None if result is None else json.dumps(result)


def _decode(stored: str | None) -> dict[str, Any] | None:
    return None if stored is None else json.loads(stored)
