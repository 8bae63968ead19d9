"""An archived query as every reply shows it (the analyst's ``/queries``, the admin API)."""

from __future__ import annotations

from typing import Any

from lomas_server.accounting import ZCDP, AccountingRule
from lomas_server.store.base import ArchiveEntry


def archive_view(entry: ArchiveEntry, rule: AccountingRule) -> dict[str, Any]:
    """An archived query, its cost worded as every reply words it: (epsilon, delta), with
    rho beside them on zCDP datasets (whose ledger counts rho)."""
    cost: dict[str, float] = rule.as_approx_dp(entry.cost).as_dict()
    if rule.mode == ZCDP:
        cost["rho"] = entry.cost.epsilon
    return {
        "query_id": entry.query_id,
        "dataset": entry.dataset,
        "engine": entry.engine,
        **entry.request,
        "cost": cost,
        "status": entry.status,
        "created_at": entry.created_at,
        "finished_at": entry.finished_at,
        "result": entry.result,
    }
