"""DP models as scikit-learn estimators, rebuilt in the kernel from the numbers released.

The server sends a fitted model as plain numbers (``FittedModel`` in api.yaml), never as a
pickle: an analyst's kernel then unpickles nothing the server made, as the server runs
nothing an analyst sends. Here those numbers become the scikit-learn estimator that
DiffPrivLib's model extends (its DP lies in the fit; predicting is scikit-learn's own), in a
pipeline after a ``StandardScaler`` when the features were standardized on the server, so
that ``predict`` and ``transform`` take the original columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# The models the server offers, so the only ones it can return (its linear regression, naive
# Bayes and k-means were withdrawn before ever being released: see the server's
# diffprivlib_models.WITHDRAWN).
LOGISTIC, PCA = "logistic_regression", "pca"
MODELS = (LOGISTIC, PCA)


def estimator(fitted: Mapping[str, Any]) -> Any:
    """The fitted scikit-learn estimator (a ``Pipeline`` with its scaler first, if any)."""
    from sklearn.pipeline import make_pipeline

    features = [str(name) for name in fitted["features"]]
    model = _model(str(fitted["model"]), fitted["parameters"], len(features))
    scaler = fitted.get("scaler")
    if not scaler:
        # As scikit-learn does when fitted on a DataFrame: predicting on one checks its columns.
        model.feature_names_in_ = np.asarray(features, dtype=object)
        return model
    return make_pipeline(_scaler(scaler, features), model)


def summary(fitted: Mapping[str, Any]) -> str:
    """One line: which model of which columns, and what it learnt in a word."""
    target = fitted.get("target")
    of = f" of {target}" if target else ""
    scaled = ", standardized" if fitted.get("scaler") else ""
    line = f"{fitted['model']}{of} on {', '.join(fitted['features'])}{scaled}"
    parameters = fitted.get("parameters") or {}
    if "classes" in parameters:
        line += f": classes {', '.join(str(c) for c in parameters['classes'])}"
    elif "components" in parameters:
        line += f": {len(parameters['components'])} components"
    return line


def _model(name: str, parameters: Mapping[str, Any], width: int) -> Any:
    if name == LOGISTIC:
        return _logistic_regression(parameters, width)
    if name == PCA:
        return _pca(parameters, width)
    raise ValueError(f"a model this client does not know: {name!r}")


def _matrix(values: Any, width: int, name: str) -> np.ndarray:
    matrix = np.asarray(values, dtype=float)
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise ValueError(f"'{name}' has shape {matrix.shape}, not (n, {width} features)")
    return matrix


def _classes(parameters: Mapping[str, Any]) -> np.ndarray:
    classes = np.asarray(parameters["classes"])
    if classes.ndim != 1 or len(classes) < 2:
        raise ValueError("'classes' must list at least two classes")
    return classes


def _logistic_regression(parameters: Mapping[str, Any], width: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    # DiffPrivLib fits one binary model per class (one-vs-rest): its probabilities are
    # normalized that way, not by a softmax.
    model = LogisticRegression(multi_class="ovr")
    model.classes_ = _classes(parameters)
    model.coef_ = _matrix(parameters["coef"], width, "coef")
    model.intercept_ = np.asarray(parameters["intercept"], dtype=float).reshape(-1)
    # Two classes have one row of coefficients (for the second class), more have one each.
    rows = 1 if len(model.classes_) == 2 else len(model.classes_)
    if model.coef_.shape[0] != rows or model.intercept_.shape != (rows,):
        raise ValueError(
            f"'coef' and 'intercept' need {rows} rows for {len(model.classes_)} classes"
        )
    model.n_features_in_ = width
    return model


def _pca(parameters: Mapping[str, Any], width: int) -> Any:
    from sklearn.decomposition import PCA as SklearnPCA

    components = _matrix(parameters["components"], width, "components")
    model = SklearnPCA(n_components=len(components))
    model.components_ = components
    model.n_components_ = len(components)
    model.explained_variance_ = np.asarray(parameters["explained_variance"], dtype=float)
    # DiffPrivLib centres the rows on a DP mean before projecting them: transform does the same.
    model.mean_ = np.asarray(parameters["mean"], dtype=float).reshape(-1)
    if model.mean_.shape != (width,) or model.explained_variance_.shape != (len(components),):
        raise ValueError("'mean' needs one value per feature, 'explained_variance' per component")
    model.n_features_in_ = width
    return model


def _scaler(scaler: Mapping[str, Any], features: list[str]) -> Any:
    from sklearn.preprocessing import StandardScaler

    step = StandardScaler()
    step.mean_ = np.asarray(scaler["mean"], dtype=float)
    step.scale_ = np.asarray(scaler["scale"], dtype=float)
    if step.mean_.shape != (len(features),) or step.scale_.shape != (len(features),):
        raise ValueError("the scaler needs one mean and one scale per feature")
    step.var_ = step.scale_**2
    step.n_features_in_ = len(features)
    step.feature_names_in_ = np.asarray(features, dtype=object)
    return step
