"""The noise of an OpenDP Polars query: found once from the schema, reused on the rows.

OpenDP's own ``resolve`` searches for the noise scale with several hundred evaluations of the
privacy map; these queries' loss is proportional to 1/scale or 1/scale^2, so ``calibrate``
computes it from one evaluation and checks it exactly. ``measurement`` rebuilds the measurement
at a known calibration (on the rows, at execution) and checks it against its budget again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lomas_server.errors import InvalidQuery


@dataclass(frozen=True)
class Calibration:
    """The noise found for a query: OpenDP's global scale and, for hidden groups, a threshold."""

    scale: float
    threshold: int | None


def _maker(built: Any) -> tuple[Callable[..., Any], Any, Any, bool]:
    """A constructor of the query's measurement at a given scale and threshold."""
    from opendp.measurements import make_private_lazyframe

    plan = object.__getattribute__(built, "polars_plan")
    query = object.__getattribute__(built, "_query")
    input_domain, input_metric = query._chain
    approximate = getattr(query._output_measure.type, "origin", None) == "Approximate"

    def make(scale: float, threshold: int | None = None) -> Any:
        return make_private_lazyframe(
            input_domain=input_domain,
            input_metric=input_metric,
            output_measure=query._output_measure,
            lazyframe=plan,
            global_scale=scale,
            threshold=threshold,
        )

    return make, query, plan, approximate


def calibrate(built: Any) -> Calibration:
    """The smallest noise within the query's budget.

    OpenDP's own ``resolve`` finds the noise scale by a generic search of several hundred
    privacy-map evaluations (seconds for a Gaussian count). The loss of these queries is
    proportional to 1/scale (Laplace, exponential mechanism) or 1/scale^2 (Gaussian), so one
    evaluation at scale 1 gives the scale; it is then checked exactly, as OpenDP would, and
    nudged up while it does not pass. The threshold that hides rare groups (approximate DP)
    is still found by OpenDP's integer search.
    """
    from opendp.mod import OpenDPException, binary_search

    make, query, _, approximate = _maker(built)
    d_in, d_out = query._d_in, query._d_out

    def loss(measurement: Any) -> float:
        value = measurement.map(d_in)
        return float(value[0] if approximate else value)

    budget = float(d_out[0] if approximate else d_out)
    no_threshold = 2**32 - 1 if approximate else None
    try:
        if make(0.0).check(d_in, d_out):
            return Calibration(0.0, None)  # nothing in the query needs noise
    except OpenDPException:
        pass
    at_one = loss(make(1.0, no_threshold))
    measure = str(query._output_measure)
    squared = "Gaussian" in measure or "ZeroConcentrated" in measure
    scale = math.sqrt(at_one / budget) if squared else at_one / budget
    for _ in range(60):
        if loss(make(scale, no_threshold)) <= budget:
            break
        scale *= 1 + 1e-9
    else:
        raise InvalidQuery("OpenDP cannot calibrate the noise for this query")
    if not approximate:
        return Calibration(scale, None)
    try:
        make(scale)
        return Calibration(scale, None)
    except OpenDPException:
        pass  # groups need a threshold
    threshold = binary_search(lambda t: make(scale, t).map(d_in)[1] < d_out[1], T=int)
    return Calibration(scale, int(threshold))


def measurement(built: Any, calibration: Calibration) -> Any:
    """The query's measurement at a known calibration, checked against its budget."""
    make, query, _, _ = _maker(built)
    made = make(calibration.scale, calibration.threshold)
    if not made.check(query._d_in, query._d_out):
        raise RuntimeError("the calibrated measurement does not meet its budget")
    return made


def resolve(built: Any) -> Any:
    """The measurement of an OpenDP Polars query at the smallest noise within its budget."""
    return measurement(built, calibrate(built))
