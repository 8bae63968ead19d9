"""DP models as scikit-learn estimators, rebuilt in the kernel from the numbers released.

The server sends a fitted model as plain numbers (``FittedModel`` in api.yaml), never as a
pickle: an analyst's kernel then unpickles nothing the server made, as the server runs
nothing an analyst sends. Here those numbers become the scikit-learn estimator that
DiffPrivLib's model extends (its DP lies in the fit; predicting is scikit-learn's own), in a
pipeline after a ``StandardScaler`` when the features were standardized on the server, so
that ``predict`` and ``transform`` take the original columns.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

LOGISTIC, LINEAR, NAIVE_BAYES, K_MEANS, PCA = (
    "logistic_regression",
    "linear_regression",
    "gaussian_nb",
    "k_means",
    "pca",
)
MODELS = (LOGISTIC, LINEAR, NAIVE_BAYES, K_MEANS, PCA)


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
    elif "cluster_centers" in parameters:
        line += f": {len(parameters['cluster_centers'])} clusters"
    elif "components" in parameters:
        line += f": {len(parameters['components'])} components"
    return line


def _model(name: str, parameters: Mapping[str, Any], width: int) -> Any:
    if name == LOGISTIC:
        return _logistic_regression(parameters, width)
    if name == LINEAR:
        return _linear_regression(parameters, width)
    if name == NAIVE_BAYES:
        return _gaussian_nb(parameters, width)
    if name == K_MEANS:
        return _k_means(parameters, width)
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


def _linear_regression(parameters: Mapping[str, Any], width: int) -> Any:
    from sklearn.linear_model import LinearRegression

    model = LinearRegression()
    model.coef_ = np.asarray(parameters["coef"], dtype=float).reshape(-1)
    if model.coef_.shape != (width,):
        raise ValueError(f"'coef' has {model.coef_.size} values, not one per {width} features")
    model.intercept_ = float(parameters["intercept"])
    model.n_features_in_ = width
    return model


def _gaussian_nb(parameters: Mapping[str, Any], width: int) -> Any:
    from sklearn.naive_bayes import GaussianNB

    model = GaussianNB()
    model.classes_ = _classes(parameters)
    model.theta_ = _matrix(parameters["theta"], width, "theta")
    model.var_ = _matrix(parameters["var"], width, "var")
    model.class_prior_ = np.asarray(parameters["class_prior"], dtype=float)
    count = len(model.classes_)
    if model.theta_.shape[0] != count or model.var_.shape[0] != count:
        raise ValueError(f"'theta' and 'var' need one row for each of {count} classes")
    model.n_features_in_ = width
    return model


def _k_means(parameters: Mapping[str, Any], width: int) -> Any:
    from sklearn.cluster import KMeans

    centers = _matrix(parameters["cluster_centers"], width, "cluster_centers")
    # KMeans sets up its prediction (threads, checks) only in fit: fitted on its own centers,
    # starting there, it is ready to predict; the released centers are then put back as they
    # were (two equal noisy centers would otherwise be moved apart).
    model = KMeans(n_clusters=len(centers), init=centers, n_init=1, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(centers)
    model.cluster_centers_ = centers
    # Labels and inertia of the centers themselves would pass for the data's.
    del model.labels_, model.inertia_
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
