"""Synthetic data and DP models as the release sequence sees them: planned, priced queries.

Like the SQL and OpenDP kinds (query_kinds.py): planned from the request and the metadata
alone, then run by release.py. Their results are a table of synthetic rows, and a fitted
model's parameters.
"""

from __future__ import annotations

import json
from typing import Any

from lomas_server.accounting import PrivacyAmount
from lomas_server.api_requests import DiffprivlibRequest, SynthRequest
from lomas_server.engines.diffprivlib_engine import ENGINE_NAME as DIFFPRIVLIB_ENGINE
from lomas_server.engines.diffprivlib_engine import DiffprivlibEngine, ModelPlan
from lomas_server.engines.diffprivlib_models import model_spec
from lomas_server.engines.synth_engine import ENGINE_NAME as SYNTH_ENGINE
from lomas_server.engines.synth_engine import SynthEngine, SynthPlan, SynthQuery
from lomas_server.errors import InvalidRequest
from lomas_server.service.context import DatasetContext
from lomas_server.service.data_access import Reachable
from lomas_server.service.fingerprints import fingerprint

# Synthetic rows and fitted models carry no per-value noise description: the accuracy part
# of a reply is empty (what each engine says instead is in ``described``).
NO_ACCURACY: dict[str, Any] = {"columns": [], "noisy_values": [], "threshold": None}


def plan_synth(engine: SynthEngine, ctx: DatasetContext, request: SynthRequest) -> PlannedSynth:
    if request.rows > ctx.limits.max_synth_rows:
        raise InvalidRequest(
            f"'rows' is at most {ctx.limits.max_synth_rows} on this server", code="invalid_query"
        )
    delta = request.delta if request.delta is not None else ctx.default_delta()
    query = SynthQuery(request.synthesizer, request.columns, request.rows, request.bins)
    plan = engine.plan(ctx.metadata, query, request.epsilon, delta)
    return PlannedSynth(engine, ctx, plan, ctx.charge(plan.loss))


def plan_model(
    engine: DiffprivlibEngine, ctx: DatasetContext, request: DiffprivlibRequest
) -> PlannedModel:
    spec = model_spec(
        ctx.metadata,
        request.model,
        list(request.features),
        request.target,
        request.options,
        request.scaler,
    )
    plan = engine.plan(ctx.metadata, spec, request.epsilon)
    return PlannedModel(engine, ctx, plan, ctx.charge(plan.loss))


class PlannedSynth:
    engine = SYNTH_ENGINE
    in_place = False

    def __init__(
        self, synth: SynthEngine, ctx: DatasetContext, plan: SynthPlan, cost: PrivacyAmount
    ) -> None:
        self._engine, self._ctx, self.plan, self.cost = synth, ctx, plan, cost
        self.delta = plan.delta
        query = json.dumps(plan.query.as_dict(), sort_keys=True)
        self.fingerprint = fingerprint(SYNTH_ENGINE, query, plan.epsilon, plan.delta)

    def archived_request(self) -> dict[str, Any]:
        return {
            "query": self.plan.query.describe(),
            "synth": self.plan.query.as_dict(),
            "epsilon": self.plan.epsilon,
            "delta": self.plan.delta,
        }

    def described(self) -> dict[str, Any]:
        return {"query_text": self.plan.query.describe(), **self.plan.described()}

    def accuracy(self) -> dict[str, Any]:
        return dict(NO_ACCURACY)

    def run(self, data: Reachable, owner: str) -> dict[str, Any]:
        return self._engine.execute(self.plan, self._ctx.metadata, lambda: data.frame, owner=owner)


class PlannedModel:
    engine = DIFFPRIVLIB_ENGINE
    in_place = False

    def __init__(
        self, models: DiffprivlibEngine, ctx: DatasetContext, plan: ModelPlan, cost: PrivacyAmount
    ) -> None:
        self._engine, self._ctx, self.plan, self.cost = models, ctx, plan, cost
        self.delta = 0.0
        query = json.dumps(plan.spec.as_dict(), sort_keys=True)
        self.fingerprint = fingerprint(DIFFPRIVLIB_ENGINE, query, plan.epsilon)

    def archived_request(self) -> dict[str, Any]:
        return {
            "query": self.plan.spec.describe(),
            "diffprivlib": self.plan.spec.as_dict(),
            "epsilon": self.plan.epsilon,
            "delta": 0.0,
        }

    def described(self) -> dict[str, Any]:
        return {"query_text": self.plan.spec.describe(), **self.plan.described()}

    def accuracy(self) -> dict[str, Any]:
        return dict(NO_ACCURACY)

    def run(self, data: Reachable, owner: str) -> dict[str, Any]:
        return self._engine.execute(self.plan, self._ctx.metadata, lambda: data.frame, owner=owner)
