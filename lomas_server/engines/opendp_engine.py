"""OpenDP: queries compiled by the server into OpenDP measurements, from metadata only.

The client sends an ``OpenDPQuery`` (engines/opendp_query.py) and a noise choice; the server
builds the whole measurement: the privacy unit from ``max_ids`` (with a ``private_id`` column,
each person's rows are truncated to ``max_ids`` by OpenDP itself), the bounds of every sum,
mean, variance and quantile from the column's metadata, which grouping keys are public from
``public_keys``, the candidates of quantiles from the bounds. Nothing the client sends is
deserialized into OpenDP or Polars. OpenDP's Polars integration then finds the noise scales
and releases.

Group keys: with public keys, a release is exactly the declared grid (OpenDP joins the
statistics to the public key set; groups without rows get noise on zero). Each noisy
statistic is then released by a measurement of its own, with an equal share of the budget:
OpenDP fills a missing group's statistics with noise expressions that Polars' common
subexpression elimination evaluates once for all statistics of the same scale, which would
make an empty group recognisable (its counts all equal). Without public keys, only groups
whose noisy count passes a threshold are released, which needs delta.

Planning happens on an empty frame with the dataset's schema (no row is read); execution builds
the same measurement on the rows and checks that its privacy loss is the one reserved.

Only OpenDP's "contrib" feature is on while this engine works ("floating-point", which
SmartNoise-SQL switches on, and "honest-but-curious" are switched off and checked before every
run); both engines share one thread (engine_thread.py), so nothing flips a switch meanwhile.

NULLs: counts of a column, sums, means and variances leave them out; quantiles follow OpenDP,
which imputes them (filter with ``is_not_null`` to leave them out).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lomas_server.accounting import PrivacyLoss
from lomas_server.engines.engine_thread import QUERY, EngineThread
from lomas_server.engines.memo import BoundedMemo
from lomas_server.engines.opendp_calibration import Calibration, calibrate, measurement
from lomas_server.engines.opendp_compiler import Compiler, OpenDPResult, refusal
from lomas_server.engines.opendp_query import OpenDPQuery
from lomas_server.errors import InvalidQuery
from lomas_server.metadata import DatasetMetadata
from lomas_server.noise import Noise

log = logging.getLogger(__name__)
ENGINE_NAME = "opendp"
PLAN_MEMORY = 256


@dataclass(frozen=True)
class OpenDPPlan:
    query: OpenDPQuery
    noise: Noise
    budget: float  # the epsilon or rho in force (found by the server for a target accuracy)
    delta: float | None  # only when grouping keys are not public (thresholding)
    loss: PrivacyLoss
    # One per measurement: several only for public keys with several noisy statistics.
    calibration: tuple[Calibration, ...] = ()
    noisy_values: list[dict[str, Any]] = field(default_factory=list)
    columns: list[dict[str, Any]] = field(default_factory=list)


class OpenDPEngine:
    name = ENGINE_NAME

    def __init__(self, thread: EngineThread | None = None) -> None:
        self._own_thread = thread is None
        self._thread = thread or EngineThread()
        # Plans depend on metadata, query and noise only: the same question is planned once.
        self._plans: BoundedMemo[tuple[Any, ...], OpenDPPlan] = BoundedMemo(PLAN_MEMORY)

    def close(self) -> None:
        if self._own_thread:
            self._thread.close()

    # -- planning (no data) ------------------------------------------------------------------
    def plan(
        self,
        dataset: str,
        metadata: DatasetMetadata,
        query: OpenDPQuery,
        noise: Noise,
        *,
        scope: str = "",
    ) -> OpenDPPlan:
        """The query's measurement and cost, from metadata alone. Plans are remembered per
        ``scope`` (the analyst: how fast a query is planned must not say what others asked)
        and metadata, not per dataset: datasets with the same metadata share them."""
        return self._thread.run(self._plan, scope, metadata, query, noise, owner=scope)

    def _plan(
        self, scope: str, metadata: DatasetMetadata, query: OpenDPQuery, noise: Noise
    ) -> OpenDPPlan:
        key = (
            scope,
            json.dumps(metadata.document, sort_keys=True),
            json.dumps(query.as_dict(), sort_keys=True),
            noise,
        )
        known = self._plans.get(key)
        if known is not None:
            return known
        plan = self._new_plan(metadata, query, noise)
        self._plans.put(key, plan)
        return plan

    def _new_plan(self, metadata: DatasetMetadata, query: OpenDPQuery, noise: Noise) -> OpenDPPlan:
        _only_contrib()
        compiler = Compiler(metadata, query, noise)
        empty = compiler.frame(None)
        if noise.half_width is not None:
            budget = compiler.budget_for_accuracy(empty)
        else:
            assert noise.budget is not None
            budget = noise.budget
        context, parts = compiler.build(empty, budget)
        try:
            import polars as pl
            from opendp.accuracy import summarize_polars_measurement

            calibration = tuple(calibrate(part) for part in parts)
            summary = pl.concat(
                summarize_polars_measurement(measurement(part, c), alpha=1 - noise.confidence)
                for part, c in zip(parts, calibration, strict=True)
            )
        except InvalidQuery:
            raise
        except Exception as err:
            raise refusal(err) from err
        loss = compiler.loss(context)
        noisy, columns = compiler.accuracy(summary)
        return OpenDPPlan(query, noise, budget, compiler.delta, loss, calibration, noisy, columns)

    # -- execution (data) --------------------------------------------------------------------
    def execute(
        self,
        plan: OpenDPPlan,
        metadata: DatasetMetadata,
        table: Callable[[], Any],
        *,
        postprocess: bool = True,
        owner: str = "",
    ) -> OpenDPResult:
        """Run a plan on the dataset's rows (an Arrow table read in place, or a ParquetScan);
        ``postprocess`` keeps the statistics in their public range; ``owner`` (the analyst)
        takes turns on the engine with other analysts."""
        return self._thread.run(
            self._execute, plan, metadata, table, postprocess, stage=QUERY, owner=owner
        )

    def _execute(
        self,
        plan: OpenDPPlan,
        metadata: DatasetMetadata,
        table: Callable[[], Any],
        postprocess: bool = True,
    ) -> OpenDPResult:
        _only_contrib()
        compiler = Compiler(metadata, plan.query, plan.noise)
        context, parts = compiler.build(compiler.frame(table()), plan.budget)
        if compiler.loss(context) != plan.loss or len(parts) != len(plan.calibration):
            raise RuntimeError("the measurement on the data differs from the one that was paid for")
        released = None
        for part, calibration in zip(parts, plan.calibration, strict=True):
            query = object.__getattribute__(part, "_query")
            # The noise found while planning (from the schema alone) is the noise used now.
            frame = query._context(measurement(part, calibration)).collect().to_pandas()
            keys = compiler.group_columns
            released = frame if released is None else released.merge(frame, on=keys, how="inner")
        return compiler.outputs(released, postprocess=postprocess)


def _only_contrib() -> None:
    import opendp.prelude as dp
    from opendp.mod import GLOBAL_FEATURES

    dp.disable_features("floating-point", "honest-but-curious")
    dp.enable_features("contrib")
    if set(GLOBAL_FEATURES) != {"contrib"}:
        raise RuntimeError(f"OpenDP features are {sorted(GLOBAL_FEATURES)}, not exactly 'contrib'")
