"""DP machine learning (DiffPrivLib): a model from an allow-list, built and fitted by the server.

The client names a model, its feature and target columns, the budget and a few allow-listed
options (diffprivlib_models.py); the server writes every bound from the metadata and returns
the fitted parameters as numbers. Nothing sent is deserialized or executed.

DiffPrivLib's guarantees are for datasets of a known size that differ in one row's values
(bounded DP): its models divide by the exact number of rows and, for classifiers, read the
classes from the data. The server's ledger protects a person's presence (unbounded DP), so
each fit runs on rows made to fit the library's assumptions first:

1. each person's rows are bounded to ``max_ids`` (person_rows.py) and rows lacking a value
   the model needs, or whose class is not declared, are left out (one row decides each);
2. the number of rows is released with noise (a tenth of the per-row budget, OpenDP's discrete
   Laplace), and the rows are cut to that many (a random subset) or filled up with public
   rows (every feature at the middle of its bounds): two neighbouring datasets then give
   datasets of the same, public size that differ in at most one row;
3. one public row per declared class is added, so that every class is present and the
   library never reads the classes from the data (a 1-stable change).

The library then fits at the rest of the per-row budget (with the optional standard scaler
taking half of it); the per-row budget is the charge's share by group privacy
(accounting/group_privacy.py). A ``PrivacyLeakWarning`` is an error.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lomas_server.accounting import PrivacyLoss
from lomas_server.accounting.group_privacy import per_row_share
from lomas_server.engines.diffprivlib_models import ModelSpec, build, parameters
from lomas_server.engines.engine_thread import QUERY, EngineThread
from lomas_server.engines.integer_noise import discrete_laplace
from lomas_server.engines.person_rows import person_rows
from lomas_server.metadata import DatasetMetadata

ENGINE_NAME = "diffprivlib"
SIZE_SHARE = 0.1  # of the per-row budget, for the number of rows
SCALER_SHARE = 0.5  # of what is left, for the standard scaler when there is one
# The most rows a fit sees: a tiny epsilon gives the noisy size a spread of millions, which
# would fill memory with public rows (cutting the size is post-processing of the noisy one).
MAX_ROWS = 1_000_000
MIN_ROWS = 2  # the fewest rows a fit ever sees, before the classes' rows (see ``_fewest``)


@dataclass(frozen=True)
class ModelPlan:
    spec: ModelSpec
    epsilon: float
    size_epsilon: float  # per row, for the number of rows
    scaler_epsilon: float  # per row, 0 without a scaler
    model_epsilon: float  # per row
    rows_per_person: int
    loss: PrivacyLoss

    def described(self) -> dict[str, Any]:
        return {
            "model": self.spec.model,
            "budget_split": {
                "rows": self.size_epsilon,
                "scaler": self.scaler_epsilon,
                "model": self.model_epsilon,
            },
            "rows_per_person": self.rows_per_person,
        }


class DiffprivlibEngine:
    name = ENGINE_NAME

    def __init__(self, pool: EngineThread | None = None) -> None:
        self._own_pool = pool is None
        self._pool = pool or EngineThread(name="dp-diffprivlib")

    def close(self) -> None:
        if self._own_pool:
            self._pool.close()

    def check_ready(self, owner: str) -> None:
        self._pool.check_ready(owner)

    def plan(self, metadata: DatasetMetadata, spec: ModelSpec, epsilon: float) -> ModelPlan:
        """The fit's budget split and cost, from metadata alone."""
        row_epsilon, _ = per_row_share(epsilon, 0.0, metadata.max_ids)
        size = row_epsilon * SIZE_SHARE
        rest = row_epsilon - size
        scaler = rest * SCALER_SHARE if spec.scaler else 0.0
        model = rest - scaler
        loss = PrivacyLoss.approx_dp([(epsilon, 0.0)])
        return ModelPlan(spec, epsilon, size, scaler, model, metadata.max_ids, loss)

    def execute(
        self, plan: ModelPlan, metadata: DatasetMetadata, table: Callable[[], Any], *, owner: str
    ) -> dict[str, Any]:
        """The fitted parameters, as JSON."""
        return self._pool.run(self._execute, plan, metadata, table, stage=QUERY, owner=owner)

    def _execute(
        self, plan: ModelPlan, metadata: DatasetMetadata, table: Callable[[], Any]
    ) -> dict[str, Any]:
        from diffprivlib.accountant import BudgetAccountant
        from diffprivlib.utils import PrivacyLeakWarning

        spec = plan.spec
        rows = person_rows(table(), metadata, spec.columns)
        features, target = _usable(rows, spec)
        rng = np.random.default_rng(secrets.randbits(128))
        noisy = len(features) + discrete_laplace(1.0 / plan.size_epsilon, 1)[0]
        size = max(_fewest(spec), min(noisy, metadata.rows or MAX_ROWS, MAX_ROWS))
        features, target = _resized(features, target, spec, size, rng)
        features, target = _with_each_class(features, target, spec)
        bounds = [(f.lower, f.upper) for f in spec.features]
        # The library's own ledger, for this fit alone and capped at the scaler's and the
        # model's shares: it refuses to spend more (the process-wide default would take any
        # amount, and grow with every fit the server ever makes).
        accountant = BudgetAccountant(epsilon=plan.scaler_epsilon + plan.model_epsilon, delta=0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", PrivacyLeakWarning)
            scaler = None
            if spec.scaler:
                scaler, features, bounds = _standardized(
                    features, bounds, plan.scaler_epsilon, accountant
                )
            model = build(spec, plan.model_epsilon, bounds, accountant)
            if target is None:
                model.fit(features)
            else:
                model.fit(features, target)
        return {
            "model": spec.model,
            "features": [f.name for f in spec.features],
            "target": spec.target,
            "parameters": parameters(spec, model),
            "scaler": scaler,
        }


def _fewest(spec: ModelSpec) -> int:
    """The fewest rows a model's fit accepts (PCA needs more rows than components, k-means
    a row per cluster), so that no fit fails because the noisy size came out small."""
    option = spec.option
    return max(MIN_ROWS, len(spec.features) + 1, int(option.get("n_clusters") or 0))


def _usable(rows: pd.DataFrame, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """Features as floats clamped to their bounds and the target (class indices for a
    classifier); rows lacking a value, or with an undeclared class, left out."""
    columns = []
    for feature in spec.features:
        values = pd.to_numeric(rows[feature.name], errors="coerce").to_numpy(dtype=float)
        columns.append(np.clip(values, feature.lower, feature.upper))
    features = np.column_stack(columns) if columns else np.empty((len(rows), 0))
    keep = np.isfinite(features).all(axis=1)
    target = None
    if spec.target is not None:
        if spec.classes is not None:
            lookup = {value: index for index, value in enumerate(spec.classes)}
            target = np.array([lookup.get(_plain(v), -1) for v in rows[spec.target]], dtype=float)
            keep &= target >= 0
        else:
            assert spec.target_bounds is not None
            raw = pd.to_numeric(rows[spec.target], errors="coerce").to_numpy(dtype=float)
            target = np.clip(raw, *spec.target_bounds)
            keep &= np.isfinite(target)
        target = target[keep]
    return features[keep], target


def _resized(
    features: np.ndarray,
    target: np.ndarray | None,
    spec: ModelSpec,
    size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Exactly ``size`` rows: a random subset, or the rows and public ones (see above)."""
    count = len(features)
    if size <= count:
        kept = rng.choice(count, size=size, replace=False)
        return features[kept], None if target is None else target[kept]
    extra = size - count
    filler = np.tile([f.middle for f in spec.features], (extra, 1))
    features = np.vstack([features, filler])
    if target is not None:
        target = np.concatenate([target, _public_target(spec, extra, 0)])
    return features, target


def _with_each_class(
    features: np.ndarray, target: np.ndarray | None, spec: ModelSpec
) -> tuple[np.ndarray, np.ndarray | None]:
    if spec.classes is None or target is None:
        return features, target
    middles = np.tile([f.middle for f in spec.features], (len(spec.classes), 1))
    classes = np.arange(len(spec.classes), dtype=float)
    return np.vstack([features, middles]), np.concatenate([target, classes])


def _public_target(spec: ModelSpec, count: int, start: int) -> np.ndarray:
    if spec.classes is not None:
        return np.array([(start + i) % len(spec.classes) for i in range(count)], dtype=float)
    assert spec.target_bounds is not None
    return np.full(count, sum(spec.target_bounds) / 2)


def _standardized(
    features: np.ndarray, bounds: list[tuple[float, float]], epsilon: float, accountant: Any
) -> tuple[dict[str, Any], np.ndarray, list[tuple[float, float]]]:
    """Features standardized by DiffPrivLib's DP scaler; the bounds follow (its mean and scale
    are released, so the standardized bounds are public)."""
    import diffprivlib.models as models

    lows = np.array([lo for lo, _ in bounds])
    highs = np.array([hi for _, hi in bounds])
    scaler = models.StandardScaler(epsilon=epsilon, bounds=(lows, highs), accountant=accountant)
    scaler.fit(features)
    mean = np.nan_to_num(np.asarray(scaler.mean_, dtype=float))
    scale = np.asarray(scaler.scale_, dtype=float)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    scaled = (features - mean) / scale
    new_bounds = [
        ((lo - m) / s, (hi - m) / s) for lo, hi, m, s in zip(lows, highs, mean, scale, strict=True)
    ]
    return {"mean": mean.tolist(), "scale": scale.tolist()}, scaled, new_bounds


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
