"""A DP model's release (DiffPrivLib): the request that names it, and the fitted model that
comes back, with what it cost.

The fitted model is a scikit-learn estimator (``_models``); it carries its release as
``lomas_release_``, as a released DataFrame carries its facts in ``attrs``, so that which
query made a model, and what it cost, travels with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lomas_jupyter._models import estimator, summary
from lomas_jupyter._results import Amount, Budget, Estimate, _amount

# budget_split_table(), in this order; each step the server may spend on, as its words.
SPLIT_COLUMNS = ("step", "epsilon per row")
SPLIT_STEPS = {
    "rows": "the number of rows (noisy)",
    "scaler": "the standard scaler",
    "model": "the model's fit",
}


def model_body(
    model: str,
    features: Sequence[str],
    target: str | None = None,
    *,
    epsilon: float,
    scaler: bool = False,
    options: Mapping[str, Any] | None = None,
    fresh: bool | None = None,
) -> dict[str, Any]:
    """The body of ``/diffprivlib`` (``fresh`` only for a release, never for its price)."""
    body: dict[str, Any] = {
        "model": model,
        # One column given as a string is one feature, not one per letter.
        "features": [features] if isinstance(features, str) else list(features),
        "epsilon": epsilon,
        "scaler": scaler,
    }
    if target is not None:
        body["target"] = target
    if options:
        body["options"] = dict(options)
    if fresh is not None:
        body["fresh"] = fresh
    return body


def budget_split_table(estimate: Estimate) -> pd.DataFrame:
    """How a model's budget is spent, per row of the data (``SPLIT_COLUMNS``): the server
    first counts the rows with noise, then fits the scaler (if asked for) and the model."""
    split = estimate.raw.get("budget_split") or {}
    rows = [(SPLIT_STEPS.get(step, step), float(share)) for step, share in split.items() if share]
    return pd.DataFrame(rows, columns=list(SPLIT_COLUMNS))


@dataclass(frozen=True)
class ModelRelease:
    """A fitted DP model and what it cost: as ``Release``, with the estimator in ``model``
    and the server's numbers in ``result`` (``FittedModel``: model, features, target,
    parameters, scaler). ``cost`` is zero for a replay (``replay_of`` names the release)."""

    model: Any = field(repr=False, compare=False)
    result: dict[str, Any] = field(repr=False)
    query_id: str
    dataset: str
    cost: Amount
    epsilon: float
    replay_of: str | None
    budget: Budget
    request: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def queries_left(self) -> int | None:
        """How many more models like this one fit, this one spent; None for a replay."""
        left = self.raw.get("queries_left")
        return None if left is None else int(left)

    @property
    def is_replay(self) -> bool:
        return self.replay_of is not None

    @property
    def features(self) -> list[str]:
        """The columns ``model.predict`` takes, in this order."""
        return [str(name) for name in self.result["features"]]

    @property
    def target(self) -> str | None:
        return self.result.get("target")

    def summary(self) -> str:
        return summary(self.result)

    @classmethod
    def from_reply(
        cls, reply: Mapping[str, Any], *, dataset: str, request: Mapping[str, Any]
    ) -> ModelRelease:
        result = dict(reply["result"])
        release = cls(
            model=estimator(result),
            result=result,
            query_id=str(reply["query_id"]),
            dataset=dataset,
            cost=_amount(reply["cost"]),
            epsilon=float(request["epsilon"]),
            replay_of=reply.get("replay_of"),
            budget=Budget.from_reply(reply["budget"], dataset=dataset),
            request=dict(request),
            raw=dict(reply),
        )
        # scikit-learn's mark of what a fit learnt (a trailing underscore); clone() drops it,
        # as a clone has not been released.
        release.model.lomas_release_ = release
        return release
