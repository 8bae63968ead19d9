"""The DiffPrivLib engine: models from an allow-list (the withdrawn ones refused with the
reason), every bound from the metadata, the budget split between the noisy row count, the
scaler and the model, the library's own accountant spending exactly the model's share, and no
fit failing on what the data holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lomas_server.accounting import PrivacyLoss
from lomas_server.accounting.group_privacy import group_guarantee, per_row_share
from lomas_server.datasets import conform_to_metadata, to_arrow
from lomas_server.engines import diffprivlib_engine
from lomas_server.engines.diffprivlib_engine import SCALER_SHARE, SIZE_SHARE, DiffprivlibEngine
from lomas_server.engines.diffprivlib_models import (
    MODELS,
    OPTIONS,
    WITHDRAWN,
    data_norm,
    model_spec,
)
from lomas_server.errors import InvalidQuery
from lomas_server.metadata import DatasetMetadata
from tests.conftest import SAMPLE_DATA, sample_metadata

PENGUIN = DatasetMetadata.from_dict(sample_metadata("penguin"))
TITANIC = DatasetMetadata.from_dict(sample_metadata("titanic"))
ROWS_PER_PERSON = 3
PEOPLE = DatasetMetadata.from_dict(
    {
        "max_ids": ROWS_PER_PERSON,
        "row_privacy": False,
        "columns": {
            "pid": {"type": "int", "private_id": True, "nullable": False},
            "kind": {"type": "string", "categories": ["a", "b"]},
            "single": {"type": "string", "categories": ["only"]},
            "flag": {"type": "boolean"},
            "x": {"type": "float", "lower": 0.0, "upper": 10.0},
            "y": {"type": "float", "lower": -5.0, "upper": 5.0},
            "free": {"type": "float"},
            "when": {"type": "datetime"},
        },
    }
)
FEATURES = ["bill_length_mm", "flipper_length_mm"]
# Each model offered, as the analyst would ask for it (logistic regression with three classes
# and with two).
EACH_MODEL = [
    ("logistic_regression", FEATURES, "species", {"C": 0.5, "max_iter": 50}),
    ("logistic_regression", FEATURES, "sex", {"fit_intercept": False}),
    ("pca", FEATURES + ["body_mass_g"], None, {"n_components": 2}),
]


@pytest.fixture(scope="module")
def penguin_rows():
    frame = conform_to_metadata(pd.read_csv(SAMPLE_DATA / "penguin.csv", dtype=str), PENGUIN)
    return to_arrow(frame, PENGUIN)


@pytest.fixture(scope="module")
def engine():
    models = DiffprivlibEngine()
    yield models
    models.close()


@pytest.fixture
def built(monkeypatch):
    """Every estimator the engine builds, as built (a spy: the real one is returned)."""
    found = []
    build = diffprivlib_engine.build

    def spy(spec, epsilon, bounds, accountant):
        model = build(spec, epsilon, bounds, accountant)
        found.append(model)
        return model

    monkeypatch.setattr(diffprivlib_engine, "build", spy)
    return found


def _spec(model, features, target=None, options=None, scaler=False, metadata=PENGUIN):
    return model_spec(metadata, model, list(features), target, options or {}, scaler)


# -- the models, checked against the metadata ------------------------------------------------------
@pytest.mark.parametrize(("model", "target"), [("logistic_regression", "species"), ("pca", None)])
def test_every_bound_comes_from_the_metadata(model, target):
    spec = _spec(model, ["flipper_length_mm", "bill_depth_mm"], target)
    assert [(f.name, f.lower, f.upper) for f in spec.features] == [
        ("flipper_length_mm", 150.0, 250.0),
        ("bill_depth_mm", 13.0, 23.0),
    ]
    assert spec.target_bounds is None and (spec.classes is None) == (target is None)
    assert data_norm([(150.0, 250.0), (13.0, 23.0)]) == pytest.approx(np.hypot(250.0, 23.0))


def test_classes_are_the_declared_categories_or_a_booleans_values():
    assert _spec("logistic_regression", FEATURES, "species").classes == (
        "Adelie",
        "Chinstrap",
        "Gentoo",
    )
    survived = _spec("logistic_regression", ["Age", "Pclass"], "Survived", metadata=TITANIC)
    assert survived.classes == (False, True)
    # a boolean feature reads as 0 and 1
    flag = _spec("logistic_regression", ["flag", "x"], "kind", metadata=PEOPLE).features[0]
    assert (flag.name, flag.lower, flag.upper) == ("flag", 0.0, 1.0)


def test_options_take_their_defaults_and_pca_all_the_features():
    assert (
        _spec("logistic_regression", FEATURES, "species").option == OPTIONS["logistic_regression"]
    )
    assert _spec("logistic_regression", FEATURES, "species", {"C": 0.5}).option == {
        "C": 0.5,
        "fit_intercept": True,
        "max_iter": 100,
    }
    assert _spec("pca", FEATURES).option == {"n_components": 2}
    assert _spec("pca", FEATURES, options={"n_components": 1}).option == {"n_components": 1}


@pytest.mark.parametrize(
    ("model", "features", "target", "options", "says"),
    [
        ("random_forest", FEATURES, "species", {}, "unknown model 'random_forest'; choose one of"),
        ("pca", FEATURES, None, {"C": 1.0}, "option 'C' does not apply to pca (it takes"),
        ("logistic_regression", FEATURES, "species", {"n_components": 1}, "'n_components' does"),
        ("logistic_regression", FEATURES, "species", {"n_clusters": 3}, "(it takes C, fit_inte"),
        ("pca", ["bill_length_mm", "bill_length_mm"], None, {}, "named twice in 'features'"),
        ("pca", ["nope"], None, {}, "no column 'nope' in this dataset"),
        ("pca", ["species"], None, {}, "feature 'species' must be a number with declared bounds"),
        ("logistic_regression", FEATURES, None, {}, "logistic_regression needs a 'target'"),
        ("pca", FEATURES, "species", {}, "pca takes no 'target'"),
        ("logistic_regression", FEATURES, "body_mass_g", {}, "no declared categories"),
        ("logistic_regression", FEATURES, "nope", {}, "no column 'nope'"),
        ("logistic_regression", FEATURES, "bill_length_mm", {}, "both a feature and the target"),
        ("pca", FEATURES, None, {"n_components": 3}, "'n_components' must be from 1 to the 2"),
        ("pca", FEATURES, None, {"n_components": 0}, "'n_components' must be from 1 to the 2"),
    ],
)
def test_what_does_not_fit_the_metadata_is_refused_by_name(model, features, target, options, says):
    with pytest.raises(InvalidQuery) as refused:
        _spec(model, features, target, options)
    assert says in refused.value.message


@pytest.mark.parametrize(
    ("model", "features", "target", "says"),
    [
        ("pca", ["pid"], None, "column 'pid' identifies people; it cannot be modelled"),
        ("logistic_regression", ["x"], "pid", "column 'pid' identifies people"),
        ("pca", ["free"], None, "feature 'free' must be a number with declared bounds"),
        ("pca", ["when"], None, "feature 'when' must be a number with declared bounds"),
        ("logistic_regression", ["x"], "single", "target 'single' must have from 2 to 100"),
        ("logistic_regression", ["x"], "free", "target 'free' has no declared categories"),
        ("logistic_regression", ["x"], "when", "target 'when' holds dates and times; it cannot"),
    ],
)
def test_people_and_unbounded_columns_are_refused_by_name(model, features, target, says):
    with pytest.raises(InvalidQuery) as refused:
        _spec(model, features, target, metadata=PEOPLE)
    assert says in refused.value.message


@pytest.mark.parametrize("model", sorted(WITHDRAWN))
def test_a_withdrawn_model_is_refused_with_its_reason(model):
    """linear_regression, gaussian_nb and k_means are known names, refused with why and what is
    offered instead, whatever else the request holds."""
    assert model not in MODELS
    for features, target in ((FEATURES, None), (FEATURES, "species"), (FEATURES, "body_mass_g")):
        with pytest.raises(InvalidQuery) as refused:
            _spec(model, features, target)
        message = refused.value.message
        assert message.startswith(f"{model} is not offered: {WITHDRAWN[model]}")
        assert message.endswith("; choose one of logistic_regression, pca")


def test_a_string_target_without_categories_is_refused():
    with pytest.raises(InvalidQuery, match="'Name' has no declared categories"):
        _spec("logistic_regression", ["Age"], "Name", metadata=TITANIC)


# -- the budget ------------------------------------------------------------------------------------
@pytest.mark.parametrize("scaler", [False, True])
@pytest.mark.parametrize(("metadata", "k"), [(PENGUIN, 1), (PEOPLE, ROWS_PER_PERSON)])
def test_the_split_sums_to_the_per_row_share_of_the_charge(engine, metadata, k, scaler):
    features = ["x", "y"] if metadata is PEOPLE else FEATURES
    spec = _spec("pca", features, scaler=scaler, metadata=metadata)
    plan = engine.plan(metadata, spec, 2.4)
    assert plan.loss == PrivacyLoss.approx_dp([(2.4, 0.0)]) and plan.rows_per_person == k
    row_epsilon, _ = per_row_share(2.4, 0.0, k)
    assert plan.size_epsilon + plan.scaler_epsilon + plan.model_epsilon == pytest.approx(
        row_epsilon, rel=1e-15
    )
    assert group_guarantee(plan.size_epsilon + plan.scaler_epsilon + plan.model_epsilon, 0, k)[
        0
    ] == pytest.approx(2.4, rel=1e-15)
    assert plan.size_epsilon == pytest.approx(row_epsilon * SIZE_SHARE)
    rest = row_epsilon * (1 - SIZE_SHARE)
    assert plan.scaler_epsilon == pytest.approx(rest * SCALER_SHARE if scaler else 0.0)
    assert plan.described() == {
        "model": "pca",
        "budget_split": {
            "rows": plan.size_epsilon,
            "scaler": plan.scaler_epsilon,
            "model": plan.model_epsilon,
        },
        "rows_per_person": k,
    }


@pytest.mark.parametrize("scaler", [False, True])
@pytest.mark.parametrize(("model", "features", "target", "options"), EACH_MODEL)
def test_the_librarys_own_accountant_spends_exactly_the_shares(
    engine, penguin_rows, built, monkeypatch, model, features, target, options, scaler
):
    """DiffPrivLib's accountant for the fit records the scaler's share (when there is one) and
    the model's, nothing else; the noisy row count draws at the rest of the per-row budget."""
    scales = []
    laplace = diffprivlib_engine.discrete_laplace

    def spy_laplace(scale, size):
        scales.append(scale)
        return laplace(scale, size)

    monkeypatch.setattr(diffprivlib_engine, "discrete_laplace", spy_laplace)
    spec = _spec(model, features, target, options, scaler)
    plan = engine.plan(PENGUIN, spec, 3.0)
    result = engine.execute(plan, PENGUIN, lambda: penguin_rows, owner="test")
    (fitted,) = built
    assert fitted.epsilon == plan.model_epsilon
    spent = [(plan.scaler_epsilon, 0)] if scaler else []
    assert fitted.accountant.spent_budget == [*spent, (plan.model_epsilon, 0)]
    assert scales == [1.0 / plan.size_epsilon]
    spent_epsilon, spent_delta = fitted.accountant.total()
    assert spent_epsilon + plan.size_epsilon == pytest.approx(3.0, rel=1e-15)
    assert spent_delta == 0
    assert result["model"] == model and result["features"] == list(features)
    assert result["target"] == target and (result["scaler"] is not None) == scaler


def test_the_fit_cannot_spend_more_than_its_shares(engine, penguin_rows, monkeypatch):
    """The fit's accountant is capped at the scaler's and the model's shares: a model that
    would spend more is refused by DiffPrivLib itself (the process-wide default accountant
    would have taken any amount)."""
    from diffprivlib.utils import BudgetError

    build = diffprivlib_engine.build

    def greedy(spec, epsilon, bounds, accountant):
        return build(spec, epsilon * 2, bounds, accountant)

    monkeypatch.setattr(diffprivlib_engine, "build", greedy)
    plan = engine.plan(PENGUIN, _spec("pca", FEATURES), 1.0)
    with pytest.raises(BudgetError):
        engine.execute(plan, PENGUIN, lambda: penguin_rows, owner="test")


def test_a_privacy_leak_warning_of_the_library_stops_the_fit(engine, penguin_rows, monkeypatch):
    """A model left to read a bound from the data (here: logistic regression without
    ``data_norm``) makes DiffPrivLib warn; the engine makes that warning an error."""
    import diffprivlib.models as models
    from diffprivlib.utils import PrivacyLeakWarning

    def leaky(spec, epsilon, bounds, accountant):
        return models.LogisticRegression(epsilon=epsilon, accountant=accountant)

    monkeypatch.setattr(diffprivlib_engine, "build", leaky)
    plan = engine.plan(PENGUIN, _spec("logistic_regression", FEATURES, "species"), 1.0)
    with pytest.raises(PrivacyLeakWarning):
        engine.execute(plan, PENGUIN, lambda: penguin_rows, owner="test")


# -- fits that never fail --------------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 1, 2])
@pytest.mark.parametrize("scaler", [False, True])
@pytest.mark.parametrize(("model", "features", "target", "options"), EACH_MODEL)
def test_few_rows_never_fail_a_fit(engine, model, features, target, options, scaler, count):
    frame = conform_to_metadata(pd.read_csv(SAMPLE_DATA / "penguin.csv", dtype=str), PENGUIN)
    rows = to_arrow(frame.iloc[:count], PENGUIN)
    spec = _spec(model, features, target, options, scaler)
    result = engine.execute(engine.plan(PENGUIN, spec, 0.5), PENGUIN, lambda: rows, owner="t")
    values = np.concatenate(
        [
            np.ravel(np.asarray(v, dtype=float))
            for k, v in result["parameters"].items()
            if k != "classes"
        ]
    )
    assert values.size > 0 and np.isfinite(values).all()
    if target in ("species", "sex"):
        assert result["parameters"]["classes"] == list(PENGUIN.column(target).categories)


def test_rows_per_person_are_bounded_and_unusable_rows_left_out(engine):
    """A person's rows past max_ids, rows lacking a value, and rows of an undeclared class are
    left out, each decided by its own row: the fit never fails on them."""
    frame = pd.DataFrame(
        {
            "pid": ["1"] * 8 + ["2", "3", "4", "5"],
            "kind": ["a", "b"] * 4 + ["z", "", "a", "b"],
            "single": ["only"] * 12,
            "flag": ["true", "false"] * 6,
            "x": ["1", "2", "3", "4", "5", "6", "7", "8", "11", "not a number", "", "-4"],
            "y": ["0"] * 12,
            "free": ["1"] * 12,
            "when": ["2020-01-01"] * 12,
        }
    )
    rows = to_arrow(conform_to_metadata(frame, PEOPLE), PEOPLE)
    spec = _spec("logistic_regression", ["x", "flag"], "kind", scaler=True, metadata=PEOPLE)
    result = engine.execute(engine.plan(PEOPLE, spec, 2.0), PEOPLE, lambda: rows, owner="t")
    assert result["parameters"]["classes"] == ["a", "b"]
    assert np.isfinite(np.asarray(result["parameters"]["coef"])).all()


def test_every_model_offered_is_exercised_here():
    assert {m for m, *_ in EACH_MODEL} == set(MODELS) == {"logistic_regression", "pca"}
    assert not set(MODELS) & set(WITHDRAWN)
