"""Backups of an admin store, and restoring them into an empty one (of either backend).

A backup holds everything: users (with token hashes, so tokens keep working), datasets (with
their sources, credentials included: keep the file private), grants, the whole ledger and the
archive. Restoring replays the ledger as it was, so budgets come back exactly.
"""

from __future__ import annotations

from typing import Any

from lomas_server.accounting import PrivacyAmount
from lomas_server.errors import Conflict, InvalidRequest
from lomas_server.store.base import AdminStore, ArchiveEntry, DatasetRecord

FORMAT = "lomas-jupyter-backup"
VERSION = 1


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
    }


def restore_store(store: AdminStore, backup: Any) -> dict[str, int]:
    """Load a backup into an empty store; returns how many of each thing were restored."""
    if not isinstance(backup, dict) or backup.get("format") != FORMAT:
        raise InvalidRequest(f"not a {FORMAT} file")
    if backup.get("version") != VERSION:
        raise InvalidRequest(
            f"backup version {backup.get('version')!r} is not supported (expected {VERSION})"
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
    except (KeyError, TypeError) as err:
        raise InvalidRequest(f"the backup is incomplete or damaged: {err!r}") from err
    return {
        part: len(backup[part]) for part in ("users", "datasets", "grants", "ledger", "archive")
    }


def _pair(amount: PrivacyAmount | None) -> list[int] | None:
    """Exact units, not floats: a restored budget is the very budget that was saved."""
    return None if amount is None else [amount.eps_units, amount.delta_units]


def _amount(pair: list[int] | None) -> PrivacyAmount | None:
    return None if pair is None else PrivacyAmount(int(pair[0]), int(pair[1]))
