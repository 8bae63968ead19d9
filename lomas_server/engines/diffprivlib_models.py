"""The DiffPrivLib models offered, each built by the server from the metadata's bounds.

A model is named from an allow-list; its features are bounded numeric columns (booleans read
as 0 and 1), its target a column with public classes (classifiers: declared categories or a
boolean) or a bounded number (regression). Every bound DiffPrivLib asks for (``bounds``,
``bounds_X``, ``bounds_y``, ``data_norm``) is written here from the metadata, so the library
never measures the data for them; its ``PrivacyLeakWarning`` (which it raises when it would)
is an error. What a fit returns is its parameters as plain numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lomas_server.errors import InvalidQuery
from lomas_server.metadata import ColumnSpec, DatasetMetadata

LOGISTIC, LINEAR, NAIVE_BAYES, K_MEANS, PCA = (
    "logistic_regression",
    "linear_regression",
    "gaussian_nb",
    "k_means",
    "pca",
)
# Offered: their DiffPrivLib mechanisms hold for any change of one row, which is what the
# resizing (diffprivlib_engine.py) turns a person's presence into.
MODELS = (LOGISTIC, PCA)
# Not offered: DiffPrivLib 0.6.6's own mechanisms fall short of their epsilon when one row
# changes arbitrarily (docs/synthetic-data.md). The names are known so that a request for one
# is told why, not that the name is unknown.
WITHDRAWN = {
    LINEAR: "DiffPrivLib's linear regression understates the sensitivity of the squared "
    "features (it reads the lower bound twice), so its noise can fall short of its epsilon",
    NAIVE_BAYES: "DiffPrivLib's naive Bayes noises each class's sums as if a row never changed "
    "class and clamps them to the exact class counts, which can show those counts",
    K_MEANS: "DiffPrivLib's k-means noises each cluster's sums as if a row never changed "
    "cluster, clamps them to the exact counts, and skips the noise of empty clusters",
}
CLASSIFIERS = (LOGISTIC, NAIVE_BAYES)
TARGETLESS = (K_MEANS, PCA)
# The options each model takes, and their defaults; any other is refused by name.
OPTIONS: dict[str, dict[str, Any]] = {
    LOGISTIC: {"C": 1.0, "fit_intercept": True, "max_iter": 100},
    LINEAR: {"fit_intercept": True},
    NAIVE_BAYES: {},
    K_MEANS: {"n_clusters": 3},
    PCA: {"n_components": None},
}
MAX_CLASSES = 100


@dataclass(frozen=True)
class Feature:
    name: str
    lower: float
    upper: float

    @property
    def middle(self) -> float:
        return (self.lower + self.upper) / 2


@dataclass(frozen=True)
class ModelSpec:
    """A model checked against the metadata: what the server fits, and on which columns."""

    model: str
    features: tuple[Feature, ...]
    target: str | None
    classes: tuple[Any, ...] | None  # classifiers: the public classes, in declared order
    target_bounds: tuple[float, float] | None  # regression
    options: tuple[tuple[str, Any], ...]
    scaler: bool

    @property
    def option(self) -> dict[str, Any]:
        return dict(self.options)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "features": [f.name for f in self.features],
            "target": self.target,
            "options": self.option,
            "scaler": self.scaler,
        }

    def describe(self) -> str:
        target = f" of {self.target}" if self.target else ""
        scaled = ", standardized" if self.scaler else ""
        return f"{self.model}{target} on {', '.join(f.name for f in self.features)}{scaled}"

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.features] + ([self.target] if self.target else [])


def model_spec(
    metadata: DatasetMetadata,
    model: str,
    features: list[str],
    target: str | None,
    options: dict[str, Any],
    scaler: bool,
) -> ModelSpec:
    if model in WITHDRAWN:
        raise InvalidQuery(
            f"{model} is not offered: {WITHDRAWN[model]}; choose one of {', '.join(MODELS)}"
        )
    if model not in MODELS:
        raise InvalidQuery(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    allowed = OPTIONS[model]
    for name in options:
        if name not in allowed:
            takes = ", ".join(allowed) or "no options"
            raise InvalidQuery(f"option {name!r} does not apply to {model} (it takes {takes})")
    chosen = {**allowed, **options}
    found = [_feature(metadata, name) for name in features]
    names = [f.name for f in found]
    if len(set(names)) < len(names):
        raise InvalidQuery("a column is named twice in 'features'")
    classes = bounds = None
    if model in TARGETLESS:
        if target is not None:
            raise InvalidQuery(f"{model} takes no 'target'")
        target_name = None
    else:
        if target is None:
            raise InvalidQuery(f"{model} needs a 'target' column")
        spec = _column(metadata, target)
        target_name = spec.name
        if target_name in names:
            raise InvalidQuery(f"column {target_name!r} cannot be both a feature and the target")
        if model in CLASSIFIERS:
            classes = _classes(spec)
        else:
            bounds = _target_bounds(metadata, spec)
    if model == K_MEANS and not 1 <= chosen["n_clusters"] <= 50:
        raise InvalidQuery("'n_clusters' must be from 1 to 50")
    if model == PCA:
        wanted = chosen["n_components"]
        chosen["n_components"] = len(found) if wanted is None else wanted
        if not 1 <= chosen["n_components"] <= len(found):
            raise InvalidQuery(f"'n_components' must be from 1 to the {len(found)} features")
    return ModelSpec(
        model, tuple(found), target_name, classes, bounds, tuple(sorted(chosen.items())), scaler
    )


def _column(metadata: DatasetMetadata, name: str) -> ColumnSpec:
    spec = metadata.column(name)
    if spec is None:
        raise InvalidQuery(f"no column {name!r} in this dataset")
    if spec.name == metadata.id_column:
        raise InvalidQuery(f"column {spec.name!r} identifies people; it cannot be modelled")
    return spec


def _feature(metadata: DatasetMetadata, name: str, role: str = "feature") -> Feature:
    spec = _column(metadata, name)
    if spec.type == "boolean":
        return Feature(spec.name, 0.0, 1.0)
    if not spec.is_numeric or not spec.is_bounded:
        raise InvalidQuery(
            f"{role} {spec.name!r} must be a number with declared bounds (or a boolean)"
        )
    lower, upper = spec.numeric_bounds()
    return Feature(spec.name, lower, upper)


def _classes(spec: ColumnSpec) -> tuple[Any, ...]:
    if spec.type == "datetime":
        raise InvalidQuery(f"target {spec.name!r} holds dates and times; it cannot be a class")
    values = (False, True) if spec.type == "boolean" else spec.categories
    if values is None:
        raise InvalidQuery(
            f"target {spec.name!r} has no declared categories, so its classes would come from "
            "the data; choose a boolean target or one with declared 'categories'"
        )
    if not 2 <= len(values) <= MAX_CLASSES:
        raise InvalidQuery(f"target {spec.name!r} must have from 2 to {MAX_CLASSES} classes")
    return tuple(values)


def _target_bounds(metadata: DatasetMetadata, spec: ColumnSpec) -> tuple[float, float]:
    feature = _feature(metadata, spec.name, role="target")
    return feature.lower, feature.upper


def data_norm(bounds: list[tuple[float, float]]) -> float:
    """The largest norm a row within ``bounds`` can have."""
    return math.sqrt(sum(max(abs(lo), abs(hi)) ** 2 for lo, hi in bounds)) or 1.0


def build(
    spec: ModelSpec, epsilon: float, bounds: list[tuple[float, float]], accountant: Any
) -> Any:
    """The DiffPrivLib estimator at ``epsilon``, every bound given, spending on ``accountant``
    (the fit's own, never the library's process-wide default)."""
    import diffprivlib.models as models

    lows = np.array([lo for lo, _ in bounds], dtype=float)
    highs = np.array([hi for _, hi in bounds], dtype=float)
    option = spec.option
    if spec.model == LOGISTIC:
        return models.LogisticRegression(
            epsilon=epsilon,
            data_norm=data_norm(bounds),
            C=option["C"],
            fit_intercept=option["fit_intercept"],
            max_iter=option["max_iter"],
            accountant=accountant,
        )
    if spec.model == LINEAR:
        assert spec.target_bounds is not None
        return models.LinearRegression(
            epsilon=epsilon,
            bounds_X=(lows, highs),
            bounds_y=spec.target_bounds,
            fit_intercept=option["fit_intercept"],
            accountant=accountant,
        )
    if spec.model == NAIVE_BAYES:
        return models.GaussianNB(epsilon=epsilon, bounds=(lows, highs), accountant=accountant)
    if spec.model == K_MEANS:
        return models.KMeans(
            n_clusters=option["n_clusters"],
            epsilon=epsilon,
            bounds=(lows, highs),
            accountant=accountant,
        )
    return models.PCA(
        n_components=option["n_components"],
        epsilon=epsilon,
        bounds=(lows, highs),
        data_norm=data_norm(bounds),
        centered=False,
        accountant=accountant,
    )


def parameters(spec: ModelSpec, fitted: Any) -> dict[str, Any]:
    """The fitted model as plain numbers (what the client rebuilds an estimator from)."""
    if spec.model == LOGISTIC:
        return {
            "classes": _classes_of(spec, fitted),
            "coef": _numbers(fitted.coef_),
            "intercept": _numbers(fitted.intercept_),
        }
    if spec.model == LINEAR:
        return {"coef": _numbers(fitted.coef_), "intercept": _numbers(fitted.intercept_)}
    if spec.model == NAIVE_BAYES:
        return {
            "classes": _classes_of(spec, fitted),
            "theta": _numbers(fitted.theta_),
            "var": _numbers(fitted.var_),
            "class_prior": _numbers(fitted.class_prior_),
        }
    if spec.model == K_MEANS:
        return {"cluster_centers": _numbers(fitted.cluster_centers_)}
    return {
        "components": _numbers(fitted.components_),
        "explained_variance": _numbers(fitted.explained_variance_),
        "mean": _numbers(fitted.mean_),
    }


def _numbers(array: Any) -> Any:
    """Floats, with anything not finite (a degenerate noisy fit) as 0."""
    values = np.nan_to_num(np.asarray(array, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
    return values.tolist()


def _classes_of(spec: ModelSpec, fitted: Any) -> list[Any]:
    """The declared classes, in the order of the fitted parameters (fitted on their indices)."""
    assert spec.classes is not None
    return [spec.classes[int(i)] for i in np.asarray(fitted.classes_).tolist()]
