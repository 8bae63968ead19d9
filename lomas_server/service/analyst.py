"""What an analyst can do: list datasets, read metadata and budgets, get dummy data, price
and release queries, synthetic data and DP models.

Each use case opens one context (the dataset's record, grant, metadata and account, read
once: context.py); a query is planned by its engine (query_kinds.py) and released by the one
sequence every engine shares (release.py).
"""

from __future__ import annotations

from typing import Any

from lomas_server.accounting import AccountingRule
from lomas_server.datasets import DatasetCache, make_dummy
from lomas_server.engines.diffprivlib_engine import ENGINE_NAME as DIFFPRIVLIB_ENGINE
from lomas_server.engines.diffprivlib_engine import DiffprivlibEngine
from lomas_server.engines.opendp_engine import ENGINE_NAME as OPENDP_ENGINE
from lomas_server.engines.opendp_engine import OpenDPEngine
from lomas_server.engines.smartnoise_sql import ENGINE_NAME, SmartnoiseSqlEngine
from lomas_server.engines.synth_engine import ENGINE_NAME as SYNTH_ENGINE
from lomas_server.engines.synth_engine import SynthEngine
from lomas_server.errors import InvalidRequest
from lomas_server.service import release
from lomas_server.service.accounts import rule_of
from lomas_server.service.archive_views import archive_view
from lomas_server.service.budget_requests import BudgetRequests
from lomas_server.service.context import DatasetContext, Limits, max_query, open_context
from lomas_server.service.data_access import DataAccess
from lomas_server.service.query_kinds import Engines, Request
from lomas_server.store.base import AdminStore, UserRecord
from lomas_server.tabular import table_payload

__all__ = ["AnalystService", "Limits"]


class AnalystService:
    def __init__(
        self,
        store: AdminStore,
        engine: SmartnoiseSqlEngine,
        cache: DatasetCache,
        limits: Limits | None = None,
        opendp: OpenDPEngine | None = None,
        synth: SynthEngine | None = None,
        diffprivlib: DiffprivlibEngine | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.opendp = opendp or OpenDPEngine()
        self.engines = Engines(
            engine, self.opendp, synth or SynthEngine(), diffprivlib or DiffprivlibEngine()
        )
        self.data = DataAccess(cache)
        self.limits = limits or Limits()
        self.budget_requests = BudgetRequests(store)

    @property
    def cache(self) -> DatasetCache:
        return self.data.cache

    # -- identity ----------------------------------------------------------------------------
    def user_by_token_hash(self, token_hash: str) -> UserRecord | None:
        return self.store.user_by_token_hash(token_hash)

    # -- reading -----------------------------------------------------------------------------
    def list_datasets(self, user: str) -> list[dict[str, Any]]:
        out = []
        for grant in self.store.grants_for_user(user):
            record = self.store.get_dataset(grant.dataset)
            if record is None:
                continue
            ctx = DatasetContext(user, record, grant, self.store, self.limits)
            out.append(
                {
                    "name": record.name,
                    "engines": [ENGINE_NAME, OPENDP_ENGINE, SYNTH_ENGINE, DIFFPRIVLIB_ENGINE],
                    "budget": ctx.account.view(),
                    "max_query": max_query(record, self.limits).as_dict(),
                }
            )
        return out

    def metadata(self, user: str, dataset: str) -> dict[str, Any]:
        return self._context(user, dataset).metadata.public_view()

    def budget(self, user: str, dataset: str) -> dict[str, Any]:
        """The budget, and how many more queries like the analyst's last paid one fit."""
        ctx = self._context(user, dataset)
        account = ctx.account
        entry = self.store.last_paid(user, dataset)
        last = None
        if entry is not None:
            last = {
                "query_id": entry.query_id,
                "cost": account.cost_view(entry.cost),
                "queries_left": account.times_fit(entry.cost, ctx.dataset_spent()),
            }
        return {"dataset": dataset, **account.view(), "last_query": last}

    def queries(self, user: str, dataset: str | None = None) -> list[dict[str, Any]]:
        if dataset is not None:
            self._context(user, dataset)
        entries = self.store.archive(user, dataset=dataset)
        rules: dict[str, AccountingRule] = {}
        for name in {entry.dataset for entry in entries}:
            record = self.store.get_dataset(name)
            rules[name] = rule_of(record) if record is not None else AccountingRule()
        return [archive_view(entry, rules[entry.dataset]) for entry in entries]

    def dummy(self, user: str, dataset: str, rows: int, seed: int) -> dict[str, Any]:
        ctx = self._context(user, dataset)
        if rows > self.limits.max_dummy_rows:
            raise InvalidRequest(f"'rows' is at most {self.limits.max_dummy_rows}")
        frame = make_dummy(ctx.metadata, rows, seed)
        return {
            **table_payload(frame),
            "types": {name: spec.type for name, spec in ctx.metadata.columns.items()},
            "seed": seed,
        }

    # -- asking for more budget --------------------------------------------------------------
    def request_budget(
        self, user: str, dataset: str, epsilon: Any, delta: Any, reason: Any
    ) -> dict[str, Any]:
        """Ask the admins for more budget on a dataset granted to the user. Other datasets
        read as missing ones, as everywhere: nobody learns what exists by asking."""
        self._context(user, dataset)
        return self.budget_requests.ask(user, dataset, epsilon, delta, reason)

    def my_budget_requests(self, user: str) -> list[dict[str, Any]]:
        return self.budget_requests.mine(user)

    # -- queries, on any engine ----------------------------------------------------------------
    def estimate(self, user: str, dataset: str, request: Request) -> dict[str, Any]:
        """Exact cost and accuracy of a query: nothing spent, no data touched."""
        ctx = self._context(user, dataset, for_query=True)
        return release.estimate(ctx, self.engines.plan(ctx, request))

    def release(self, user: str, dataset: str, request: Request) -> dict[str, Any]:
        """Run a query with DP: its cost is reserved before the data is touched."""
        ctx = self._context(user, dataset, for_query=True)
        planned = self.engines.plan(ctx, request)
        return release.release(
            ctx, planned, fresh=request.fresh, data_access=self.data, engines=self.engines
        )

    def _context(self, user: str, dataset: str, *, for_query: bool = False) -> DatasetContext:
        return open_context(self.store, self.limits, user, dataset, for_query=for_query)
