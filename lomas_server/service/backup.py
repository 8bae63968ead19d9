"""Backups of an admin store, and restoring them into an empty one (of either backend).

A backup holds everything: users (with token hashes, so tokens keep working), datasets (with
their sources, credentials included: keep the file private), grants, the whole ledger, the
archive and budget requests with their decisions. Restoring replays the ledger as it was, so
budgets come back exactly.

Version 2 added budget requests and each dataset's accounting rule; a version 1 backup has
neither and restores as it always did (no requests, lomas's basic rule). Older servers refuse
version 2 rather than silently drop what they do not know.
"""

from __future__ import annotations

from typing import Any

from lomas_server.accounting import DEFAULT_CONVERSION_DELTA, PrivacyAmount
from lomas_server.errors import Conflict, InvalidRequest
from lomas_server.store.base import (
    REQUEST_STATES,
    AdminStore,
    ArchiveEntry,
    BudgetRequestRecord,
    DatasetRecord,
)

FORMAT = "lomas-jupyter-backup"
VERSION = 2
READABLE_VERSIONS = (1, 2)
PARTS = ("users", "datasets", "grants", "ledger", "archive", "budget_requests")


def export_store(store: AdminStore) -> dict[str, Any]:
    users = store.list_users()
    return {
        "format": FORMAT,
        "version": VERSION,
        "users": [
            {
                "name": u.name,
                "token_hash": u.token_hash,
                "is_admin": u.is_admin,
                "may_query": u.may_query,
                "created_at": u.created_at,
            }
            for u in users
        ],
        "datasets": [
            {
                "name": d.name,
                "source": d.source,
                "metadata": d.metadata,
                "max_query": _pair(d.max_query),
                "cap": _pair(d.cap),
                "created_at": d.created_at,
                "accounting": d.accounting,
                "conversion_delta": d.conversion_delta,
            }
            for d in store.list_datasets()
        ],
        "grants": [
            {"user": g.user, "dataset": g.dataset, "initial": _pair(g.initial)}
            for u in users
            for g in store.grants_for_user(u.name)
        ],
        "ledger": [
            {
                "user": e.user,
                "dataset": e.dataset,
                "query_id": e.query_id,
                "amount": _pair(e.amount),
                "kind": e.kind,
                "created_at": e.created_at,
            }
            for e in store.ledger()
        ],
        "archive": [
            {
                "query_id": a.query_id,
                "user": a.user,
                "dataset": a.dataset,
                "engine": a.engine,
                "request": a.request,
                "cost": _pair(a.cost),
                "status": a.status,
                "created_at": a.created_at,
                "finished_at": a.finished_at,
                "result": a.result,
                "error": a.error,
                "fingerprint": a.fingerprint,
            }
            for u in users
            for a in store.archive(u.name)
        ],
        "budget_requests": [
            {
                "id": r.id,
                "user": r.user,
                "dataset": r.dataset,
                "requested": _pair(r.requested),
                "reason": r.reason,
                "state": r.state,
                "created_at": r.created_at,
                "decided_at": r.decided_at,
                "decided_by": r.decided_by,
                "note": r.note,
                "granted": _pair(r.granted),
            }
            for r in store.budget_requests()
        ],
    }


def restore_store(store: AdminStore, backup: Any) -> dict[str, int]:
    """Load a backup into an empty store; returns how many of each thing were restored."""
    if not isinstance(backup, dict) or backup.get("format") != FORMAT:
        raise InvalidRequest(f"not a {FORMAT} file")
    if backup.get("version") not in READABLE_VERSIONS:
        raise InvalidRequest(
            f"backup version {backup.get('version')!r} is not supported "
            f"(this server reads {' and '.join(map(str, READABLE_VERSIONS))})"
        )
    if store.list_users() or store.list_datasets():
        raise Conflict("restore needs an empty admin store; this one already has users or datasets")
    try:
        for u in backup["users"]:
            store.add_user(
                u["name"], u["token_hash"], is_admin=u["is_admin"], created_at=u["created_at"]
            )
            if not u["may_query"]:
                store.set_may_query(u["name"], False)
        for d in backup["datasets"]:
            store.add_dataset(
                DatasetRecord(
                    d["name"],
                    d["source"],
                    d["metadata"],
                    _amount(d["max_query"]),
                    _amount(d["cap"]),
                    d["created_at"],
                    # Version 1 did not save the rule: every dataset then was basic.
                    d.get("accounting", "basic"),
                    d.get("conversion_delta", DEFAULT_CONVERSION_DELTA),
                )
            )
        for g in backup["grants"]:
            store.set_grant(g["user"], g["dataset"], _amount(g["initial"]))  # type: ignore[arg-type]
        for e in backup["ledger"]:
            store.record_spend(
                e["user"],
                e["dataset"],
                _amount(e["amount"]),  # type: ignore[arg-type]
                kind=e["kind"],
                query_id=e["query_id"],
                created_at=e["created_at"],
            )
        for a in backup["archive"]:
            store.restore_archive_entry(
                ArchiveEntry(
                    a["query_id"],
                    a["user"],
                    a["dataset"],
                    a["engine"],
                    a["request"],
                    _amount(a["cost"]) or PrivacyAmount.zero(),
                    a["status"],
                    a["created_at"],
                    a["finished_at"],
                    a["result"],
                    a["error"],
                    a["fingerprint"],
                )
            )
        for r in backup.get("budget_requests", []):
            if r["state"] not in REQUEST_STATES:
                raise InvalidRequest(f"the backup has a budget request in state {r['state']!r}")
            store.restore_budget_request(
                BudgetRequestRecord(
                    r["id"],
                    r["user"],
                    r["dataset"],
                    _amount(r["requested"]),  # type: ignore[arg-type]
                    r["reason"],
                    r["state"],
                    r["created_at"],
                    r["decided_at"],
                    r["decided_by"],
                    r["note"],
                    _amount(r["granted"]),
                )
            )
    except (KeyError, TypeError) as err:
        raise InvalidRequest(f"the backup is incomplete or damaged: {err!r}") from err
    return counts(backup)


def counts(backup: dict[str, Any]) -> dict[str, int]:
    """How many of each thing a backup holds (parts it predates count 0)."""
    return {part: len(backup.get(part, [])) for part in PARTS}


def _pair(amount: PrivacyAmount | None) -> list[int] | None:
    """Exact units, not floats: a restored budget is the very budget that was saved."""
    return None if amount is None else [amount.eps_units, amount.delta_units]


def _amount(pair: list[int] | None) -> PrivacyAmount | None:
    return None if pair is None else PrivacyAmount(int(pair[0]), int(pair[1]))
