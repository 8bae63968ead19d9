"""The engines as the release sequence sees them: a planned query with its cost.

Each kind of request (SmartNoise-SQL, OpenDP; synthetic data and DP models in
planned_models.py) is planned here from the request and the
dataset's metadata alone, without touching data; the plan says what it costs, how it is
archived and recognised when repeated, what it tells an analyst before and after, and how it
runs. release.py does the rest the same way for every kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Protocol

from lomas_server.accounting import PrivacyAmount
from lomas_server.api_requests import (
    DiffprivlibRequest,
    OpenDPRequest,
    SqlRequest,
    SynthRequest,
)
from lomas_server.engines.diffprivlib_engine import DiffprivlibEngine
from lomas_server.engines.opendp_engine import ENGINE_NAME as OPENDP_ENGINE
from lomas_server.engines.opendp_engine import OpenDPEngine, OpenDPPlan
from lomas_server.engines.opendp_query import parse_opendp_query
from lomas_server.engines.smartnoise_sql import ENGINE_NAME, SmartnoiseSqlEngine
from lomas_server.engines.sql_plan import CONFIDENCE, SqlPlan
from lomas_server.engines.synth_engine import SynthEngine
from lomas_server.service.context import DatasetContext
from lomas_server.service.data_access import Reachable
from lomas_server.service.fingerprints import fingerprint
from lomas_server.service.planned_models import plan_model, plan_synth
from lomas_server.tabular import rows_payload


class PlannedQuery(Protocol):
    """A checked, priced query, ready to be released."""

    engine: str  # the name archived with it
    cost: PrivacyAmount  # in the dataset's ledger currency
    fingerprint: str  # identical requests share it (see ``fingerprint``)
    in_place: bool  # may run where the data lives instead of on loaded rows
    delta: float  # the delta the noise uses (given, or chosen by the server), 0 for none

    def archived_request(self) -> dict[str, Any]: ...

    def described(self) -> dict[str, Any]:
        """What a cost estimate says about the query besides its cost."""
        ...

    def accuracy(self) -> dict[str, Any]: ...

    def run(self, data: Reachable, owner: str) -> dict[str, Any]:
        """The noisy result as a ``{"columns", "data"}`` table."""
        ...


Request = SqlRequest | OpenDPRequest | SynthRequest | DiffprivlibRequest


@dataclass(frozen=True)
class Engines:
    sql: SmartnoiseSqlEngine
    opendp: OpenDPEngine
    synth: SynthEngine
    diffprivlib: DiffprivlibEngine

    def check_ready(self, owner: str) -> None:
        """Refuse, before anything is spent, an owner whose earlier job is stuck (on the DP
        libraries' thread or on the scan workers, where the models are fitted too)."""
        self.sql.check_ready(owner)
        self.synth.check_ready(owner)
        self.diffprivlib.check_ready(owner)

    def plan(self, ctx: DatasetContext, request: Request) -> PlannedQuery:
        if isinstance(request, SynthRequest):
            return plan_synth(self.synth, ctx, request)
        if isinstance(request, DiffprivlibRequest):
            return plan_model(self.diffprivlib, ctx, request)
        if isinstance(request, SqlRequest):
            plan = self.sql.plan(
                ctx.dataset, ctx.metadata, request.query, request.epsilon, request.delta,
                scope=ctx.user,
                default_delta=ctx.default_delta() if request.delta is None else 0.0,
            )  # fmt: skip
            return PlannedSql(self.sql, ctx, request, plan, ctx.charge(plan.loss))
        query = parse_opendp_query(request.query, ctx.metadata)
        noise = request.noise
        keys = list(query.key_columns)
        thresholded = bool(keys) and ctx.metadata.key_grid(keys) is None
        if not request.delta_given and thresholded:
            noise = replace(noise, delta=ctx.default_delta() or None)
        opendp_plan = self.opendp.plan(ctx.dataset, ctx.metadata, query, noise, scope=ctx.user)
        cost = ctx.charge(opendp_plan.loss)
        return PlannedOpenDP(self.opendp, ctx, opendp_plan, cost, request.postprocess)


class PlannedSql:
    engine = ENGINE_NAME
    in_place = True  # on PostgreSQL or Spark, the SQL runs where the data lives

    def __init__(
        self,
        sql: SmartnoiseSqlEngine,
        ctx: DatasetContext,
        request: SqlRequest,
        plan: SqlPlan,
        cost: PrivacyAmount,
    ) -> None:
        self._engine, self._ctx, self.request, self.plan, self.cost = sql, ctx, request, plan, cost
        self.delta = float(plan.delta)
        # The plan's epsilon and delta: a delta given to a query that needs none changes
        # nothing about the release, and the estimate words its replays the same way.
        self.fingerprint = fingerprint(
            ENGINE_NAME, plan.text, plan.epsilon, plan.delta, request.postprocess
        )

    def archived_request(self) -> dict[str, Any]:
        return {
            "query": self.request.query,
            "normalized_query": self.plan.text,
            "epsilon": self.request.epsilon,
            "delta": self.plan.delta,
            "postprocess": self.request.postprocess,
        }

    def described(self) -> dict[str, Any]:
        return {"normalized_query": self.plan.text}

    def accuracy(self) -> dict[str, Any]:
        """What the noise means for each released column (data-independent, from the plan)."""
        return {
            "confidence": CONFIDENCE,
            "columns": [column.as_dict() for column in self.plan.columns],
            "noisy_values": [value.as_dict() for value in self.plan.noisy_values],
            "threshold": self.plan.threshold,
        }

    def run(self, data: Reachable, owner: str) -> dict[str, Any]:
        rows: Any = data.source if data.frame is None else (lambda: data.frame)
        outcome = self._engine.execute(
            self.plan,
            self._ctx.metadata,
            data.version,
            rows,
            postprocess=self.request.postprocess,
            owner=owner,
        )
        table = rows_payload(outcome.columns, outcome.rows)
        return {**table, "clamped": outcome.clamped} if self.request.postprocess else table


class PlannedOpenDP:
    engine = OPENDP_ENGINE
    in_place = False

    def __init__(
        self,
        opendp: OpenDPEngine,
        ctx: DatasetContext,
        plan: OpenDPPlan,
        cost: PrivacyAmount,
        postprocess: bool = True,
    ) -> None:
        self._engine, self._ctx, self.plan, self.cost = opendp, ctx, plan, cost
        self.postprocess = postprocess
        self.delta = float(plan.delta or 0.0)
        query = json.dumps(plan.query.as_dict(), sort_keys=True)
        # Raw values are marked only when asked for, so releases archived before the option
        # existed keep their fingerprint.
        raw = [] if postprocess else ["raw"]
        self.fingerprint = fingerprint(
            OPENDP_ENGINE, query, plan.noise.mechanism, float(plan.budget), plan.delta or 0.0, *raw
        )

    def _noise(self) -> dict[str, Any]:
        budget = "epsilon" if self.plan.noise.mechanism == "laplace" else "rho"
        return {
            "mechanism": self.plan.noise.mechanism,
            budget: self.plan.budget,
            "delta": self.plan.delta or 0.0,
        }

    def archived_request(self) -> dict[str, Any]:
        return {
            "query": self.plan.query.describe(),
            "opendp": self.plan.query.as_dict(),
            **self._noise(),
            "postprocess": self.postprocess,
        }

    def described(self) -> dict[str, Any]:
        return {"query_text": self.plan.query.describe(), "noise": self._noise()}

    def accuracy(self) -> dict[str, Any]:
        thresholds = [c.threshold for c in self.plan.calibration if c.threshold is not None]
        return {
            "confidence": self.plan.noise.confidence,
            "columns": self.plan.columns,
            "noisy_values": self.plan.noisy_values,
            "threshold": float(max(thresholds)) if thresholds else None,
        }

    def run(self, data: Reachable, owner: str) -> dict[str, Any]:
        outcome = self._engine.execute(
            self.plan,
            self._ctx.metadata,
            lambda: data.frame,
            postprocess=self.postprocess,
            owner=owner,
        )
        table = rows_payload(outcome.columns, outcome.rows)
        return {**table, "clamped": outcome.clamped} if self.postprocess else table
