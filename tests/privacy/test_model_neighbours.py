"""The privacy tester for DP machine learning (DiffPrivLib models, built by the server).

Over HTTP, against the real server: the models offered (logistic regression on declared
categories, a boolean and a declared but non-public column; PCA; the scaler and the options),
the models withdrawn, and requests the metadata must refuse, on each neighbouring pair (a base,
and the base plus one adversarial person) and on no rows, one row, and datasets whose every row
lacks the modelled columns: the same status and error word for word, a refusal exactly where one
is due, the asked cost, and parameters of the names and shapes the request and metadata give,
classes exactly the declared categories in declared order, every number finite
(model_requests.py).

In process, through the real engine (a fit takes a few milliseconds), epsilon lower bounds from
many releases on two neighbouring datasets, each of which must stay within the charge:

- the engine's preparation for every fit (max_ids, the noisy size, one public row per class),
  read through naive Bayes' class priors, which show the number of rows the fit saw and each
  class's noisy count: a person owning 60 rows, all in a class the base leaves empty, moves
  them only as ``max_ids`` rows do (and 60 people would be caught);
- the one row of an otherwise empty dataset: every parameter of each offered model, the
  statistic and cut chosen on half of the releases and judged on the other half;
- and, slow, the two attacks that show why linear regression and naive Bayes stay withdrawn:
  DiffPrivLib 0.6.6's own noise falls short of its epsilon for them (each must still leak).
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from lomas_server.datasets import conformed_table
from lomas_server.engines.diffprivlib_engine import DiffprivlibEngine
from lomas_server.engines.diffprivlib_models import (
    LINEAR,
    NAIVE_BAYES,
    OPTIONS,
    WITHDRAWN,
    Feature,
    ModelSpec,
    model_spec,
)
from lomas_server.engines.synth_engine import SynthEngine, SynthQuery
from lomas_server.metadata import DatasetMetadata
from tests.privacy.model_requests import (
    Request,
    answer_alike,
    model_requests,
    numbers,
    register_all,
)
from tests.privacy.neighbours import METADATA, adversaries, alone, arrow_table, base_rows
from tests.privacy.noise_statistics import (
    chosen_epsilon_lower_bound,
    empirical_epsilon_lower_bound,
)

# Fits take milliseconds: the default run reads both shapes from CSV and Parquet; the thorough
# run from PostgreSQL as well.
DEFAULT_SOURCES = {"people": ("csv", "parquet"), "rows": ("csv", "parquet")}
SLOW_SOURCES = {"people": ("postgres",), "rows": ("postgres",)}


# -- over HTTP -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registered(admin, tmp_path_factory):
    return register_all(admin, tmp_path_factory.mktemp("models"), DEFAULT_SOURCES)


@pytest.fixture(scope="module")
def registered_thoroughly(admin, tmp_path_factory, postgres_server):
    folder = tmp_path_factory.mktemp("models-slow")
    return register_all(admin, folder, SLOW_SOURCES, postgres_dsn=postgres_server.dsn)


def _run(server, data, capsys, what: str) -> None:
    requests = {kind: model_requests(kind) for kind in METADATA}
    tally, problems = answer_alike(server.api, data, requests)
    assert not problems, f"{len(problems)} pair(s) told apart:\n" + "\n".join(problems[:20])
    assert tally["answered"] > 0 and tally["refused"] > 0
    with capsys.disabled():
        print(
            f"\nprivacy tester [{what}]: {tally['releases']} requests over {tally['datasets']} "
            f"datasets, {tally['pairs']} pair comparisons ({tally['answered']} answered, "
            f"{tally['refused']} refused alike)"
        )


def test_models_answer_neighbours_alike_with_declared_classes_and_shapes(
    registered, server, capsys
):
    _run(server, registered, capsys, "diffprivlib")


@pytest.mark.slow
def test_models_answer_neighbours_alike_from_postgres(registered_thoroughly, server, capsys):
    _run(server, registered_thoroughly, capsys, "diffprivlib, postgres")


# -- group privacy -------------------------------------------------------------------------------
@pytest.mark.parametrize("max_ids", [1, 2, 3, 7])
@pytest.mark.parametrize("epsilon,delta", [(0.1, 1e-7), (1.0, 1e-5), (9.0, 1e-3)])
def test_per_row_budgets_cover_a_person_with_max_ids_rows_within_the_charge(
    max_ids, epsilon, delta
):
    """Each fit protects one row; a person's max_ids rows are covered by group privacy, worked
    out here from Dwork and Roth (Lemma 2.2 and its approximate form), not from the server's
    own function: k rows at (e, d) each give (k e, k e^((k-1) e) d)."""
    metadata = DatasetMetadata.from_dict({**METADATA["people"], "max_ids": max_ids})
    k = max_ids
    models = DiffprivlibEngine()
    synth = SynthEngine()
    try:
        for scaler in (False, True):
            spec = model_spec(metadata, "logistic_regression", ["age"], "kind", {}, scaler)
            plan = models.plan(metadata, spec, epsilon)
            row = plan.size_epsilon + plan.scaler_epsilon + plan.model_epsilon
            assert k * row <= epsilon
            assert row > 0.99 * epsilon / k  # and not much less: the charge is what is used
        query = SynthQuery("mst", ("kind", "flag"), 10, 10)
        plan = synth.plan(metadata, query, epsilon, delta)
        assert k * plan.row_epsilon <= epsilon
        assert k * math.exp((k - 1) * plan.row_epsilon) * plan.row_delta <= delta
    finally:
        models.close()
        synth.close()


# -- in process: epsilon lower bounds ------------------------------------------------------------
CHARGED = 1.0


def _spec(metadata: DatasetMetadata, body: dict[str, Any]) -> ModelSpec:
    """The server's own spec of an offered model; for a withdrawn one (linear regression, naive
    Bayes, k-means), the spec the server built before withdrawing it, so that the engine's whole
    preparation (max_ids, the noisy size, the public rows) runs as it did."""
    options = body.get("options", {})
    scaler = body.get("scaler", False)
    model = body["model"]
    if model not in WITHDRAWN:
        return model_spec(metadata, model, body["features"], body.get("target"), options, scaler)
    features = []
    for name in body["features"]:
        column = metadata.column(name)
        assert column is not None
        low, high = (0.0, 1.0) if column.type == "boolean" else column.numeric_bounds()
        features.append(Feature(name, float(low), float(high)))
    target = metadata.column(body["target"]) if body.get("target") else None
    classes = bounds = None
    if target is not None and model == NAIVE_BAYES:
        classes = tuple(target.categories or (False, True))
    elif target is not None:
        bounds = tuple(float(x) for x in target.numeric_bounds())
    chosen = tuple(sorted({**OPTIONS[model], **options}.items()))
    name = target.name if target is not None else None
    return ModelSpec(model, tuple(features), name, classes, bounds, chosen, scaler)


def _fits(
    metadata: DatasetMetadata, body: dict[str, Any], tables: list[Any], releases: int
) -> list[list[dict[str, Any]]]:
    """``releases`` fresh fits of one model on each table, interleaved: their parameters."""
    engine = DiffprivlibEngine()
    plan = engine.plan(metadata, _spec(metadata, body), body["epsilon"])
    out: list[list[dict[str, Any]]] = [[] for _ in tables]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence notes: the fit is what it is
            for _ in range(releases):
                for side, table in enumerate(tables):
                    result = engine.execute(plan, metadata, lambda t=table: t, owner="tester")
                    out[side].append(result["parameters"])
    finally:
        engine.close()
    return out


def _report(capsys, what: str, bound: float, detail: str) -> None:
    with capsys.disabled():
        print(
            f"\nprivacy tester [{what}]: empirical epsilon >= {bound:.3f} (charged {CHARGED}); "
            f"{detail}"
        )


def counts_from_priors(priors: list[float], about: int) -> list[int]:
    """The class counts behind naive Bayes' priors (each count over their total): the total is
    a multiple of the priors' common denominator, the one nearest ``about`` (an attacker knows
    the size of the data roughly)."""
    total = 1
    for prior in priors:
        total = math.lcm(total, Fraction(prior).limit_denominator(10**7).denominator)
    total *= max(1, round(about / total))
    return [round(p * total) for p in priors]


def _many_rows_bounds(extra: list[dict[str, Any]], releases: int) -> dict[str, float]:
    """What the engine prepares for every model, read where it shows best: naive Bayes' class
    priors give the number of rows the fit saw (the noisy size plus one public row per class)
    and each class's noisy count. (Naive Bayes is withdrawn for what it does with its sums,
    which this reads nothing of; the offered models show the size only through far more
    noise.) The epsilon lower bound of each, base against base plus ``extra``, all in the
    class 'c' the base leaves empty."""
    kind = "people"
    metadata = DatasetMetadata.from_dict(METADATA[kind])
    base = base_rows()
    tables = [conformed_table(arrow_table(rows, kind), metadata) for rows in (base, base + extra)]
    body = {"model": NAIVE_BAYES, "features": ["age"], "target": "kind", "epsilon": CHARGED}
    fits = _fits(metadata, body, tables, releases)
    about = len(base) + 3
    counts = [[counts_from_priors(p["class_prior"], about) for p in side] for side in fits]
    # each cut halfway between the two true values for a person held to max_ids (2) rows: the
    # fit sees the rows plus three public ones (n + 3 or n + 5 rows) and, when the size is not
    # padded, 1 or 3 rows in 'c'
    statistics = {
        "rows seen": (tuple([float(sum(c)) for c in side] for side in counts), about + 1.0),
        "count of c": (tuple([float(c[2]) for c in side] for side in counts), 2.0),
    }
    return {
        name: max(
            empirical_epsilon_lower_bound(d0, d1, cut), empirical_epsilon_lower_bound(d1, d0, cut)
        )
        for name, ((d0, d1), cut) in statistics.items()
    }


@pytest.mark.parametrize("releases", [300, pytest.param(1000, marks=pytest.mark.slow)])
def test_noisy_size_and_class_counts_hide_a_person_with_many_rows(releases, capsys):
    """The person owns 60 rows, all in 'c': with max_ids 2 only two of them may move either
    the number of rows a fit sees or the count of 'c'."""
    bounds = _many_rows_bounds(adversaries("people")["many_rows"], releases)
    for name, bound in bounds.items():
        _report(capsys, f"60 rows of one person: {name}", bound, f"{releases} fits")
    assert all(bound <= CHARGED for bound in bounds.values()), bounds


def test_the_class_count_check_catches_sixty_people_where_one_was_allowed():
    """The same check, with the 60 rows owned by 60 people (what a server that let one person
    keep all their rows would fit): the count of 'c' tells the datasets apart."""
    many = adversaries("people")["many_rows"]
    people = [{**row, "pid": 10**6 + i} for i, row in enumerate(many)]
    assert _many_rows_bounds(people, 300)["count of c"] > CHARGED


# (kind, index in model_requests(kind)): each offered model on the row-privacy shape (PCA and
# a binary logistic regression by default, the others in the thorough run), logistic
# regression on the people shape
ZERO_VS_ONE = [("rows", 4), ("rows", 1), ("rows", 0), ("rows", 2), ("rows", 5), ("people", 3)]
DEFAULT_ZERO_VS_ONE = {("rows", 4), ("rows", 1)}


@pytest.mark.parametrize(
    "kind,index",
    [
        (kind, index)
        if (kind, index) in DEFAULT_ZERO_VS_ONE
        else pytest.param(kind, index, marks=pytest.mark.slow)
        for kind, index in ZERO_VS_ONE
    ],
)
def test_every_parameter_hides_the_one_row_of_an_otherwise_empty_dataset(kind, index, capsys):
    """No rows against the person alone in an empty class, values far out of bounds: of every
    parameter the first half of the releases picks the one, and the cut, that tell the two
    apart best; the second half bounds epsilon for that event. With 300 fits each, this
    catches a gross leak (the chosen bound's own test: a quarter of the noise), not a subtle
    one."""
    request: Request = model_requests(kind)[index]
    assert not request.expect_refusal
    body = {**request.body, "epsilon": CHARGED}
    metadata = DatasetMetadata.from_dict(METADATA[kind])
    tables = [conformed_table(arrow_table(rows, kind), metadata) for rows in ([], [alone(kind)])]
    fits = _fits(metadata, body, tables, 300)
    statistics: dict[str, tuple[list[float], list[float]]] = {}
    for name in fits[0][0]:
        if name == "classes":
            continue
        width = len(numbers(fits[0][0][name]))
        for i in range(width):
            on_empty, on_one = ([float(numbers(p[name])[i]) for p in side] for side in fits)
            statistics[f"{name}[{i}]"] = (on_empty, on_one)
    bound, chosen = chosen_epsilon_lower_bound(statistics)
    _report(capsys, f"{body['model']} ({kind}), no rows vs one row", bound, chosen)
    assert bound <= CHARGED


# -- why three models are withdrawn ---------------------------------------------------------------
# After resizing, two neighbouring datasets hold the same public number of rows and differ in
# one row, and the engine relies on DiffPrivLib's guarantee for that. These two attacks show
# where DiffPrivLib 0.6.6 under-calibrates its noise for it: the server refuses both models
# (the HTTP test above). When one of these fails, DiffPrivLib no longer leaks that way and the
# model could be offered again.
LEAK_ROWS = 300


@pytest.mark.slow  # the optimizer struggles without the row: 30 ms a fit
def test_withdrawn_linear_regression_leaks_a_row_at_the_far_bound_of_a_skewed_feature(capsys):
    """DiffPrivLib 0.6.6 LinearRegression calibrates the noise on each feature's sum of squares
    to its lower bound only (after centering: np.max(np.abs([bounds_X[0][i], bounds_X[0][i]]))
    in _construct_regression_obj; IBM/differential-privacy-library#105, open). x in [0, 100],
    every row at 0: the noisy mean puts the centred bounds at about [-0.1, 99.9], so the sum of
    squares gets noise for a change of 0.01 while the added row changes it by about 10 000.
    Without that row the sum of squares is about 0 and the slope (noisy X'y over it) is huge;
    with it, small."""
    metadata = DatasetMetadata.from_dict(
        {
            "max_ids": 1,
            "row_privacy": True,
            "rows": 1000,
            "columns": {
                "x": {"type": "float", "lower": 0.0, "upper": 100.0},
                "y": {"type": "float", "lower": 0.0, "upper": 100.0},
            },
        }
    )
    base = {"x": [0.0] * LEAK_ROWS, "y": [0.0] * LEAK_ROWS}
    near = {"x": [*base["x"], 100.0], "y": [*base["y"], 100.0]}
    tables = [conformed_table(pa.table(rows), metadata) for rows in (base, near)]
    body = {"model": LINEAR, "features": ["x"], "target": "y", "epsilon": CHARGED}
    releases = 200
    fits = _fits(metadata, body, tables, releases)
    slopes = [[abs(p["coef"][0]) for p in side] for side in fits]
    cut = 200.0  # chosen before the releases: above it only without the row
    bound = empirical_epsilon_lower_bound(slopes[1], slopes[0], cut)
    _report(
        capsys,
        "withdrawn linear_regression, a row at the far bound",
        bound,
        f"|slope| > {cut:g} in {sum(s > cut for s in slopes[0])} / "
        f"{sum(s > cut for s in slopes[1])} of {releases} releases without / with the row",
    )
    assert bound > CHARGED


@pytest.mark.slow
def test_withdrawn_naive_bayes_leaks_a_row_alone_in_its_class_for_bounds_away_from_zero(capsys):
    """DiffPrivLib 0.6.6 GaussianNB gives each class's feature sum noise for a change of
    upper - lower and clamps it to the noisy count times the bounds, but a row moving to another
    class changes two sums by up to max(|lower|, |upper|). year in [1900, 2020] (the
    sensitivity used is 120; a row moves a class sum by about 2000); classes a, b, c, the base
    holds none in c. Without the row, c holds one public row (at 1960): when its noisy count
    comes out 1, its mean is 1960 plus noise, usually below 2020. With the row, c holds two
    (about 3980): a noisy count of 1 clamps the mean to 2020 every time. The class priors give
    the count (as above)."""
    metadata = DatasetMetadata.from_dict(
        {
            "max_ids": 1,
            "row_privacy": True,
            "rows": 2000,
            "columns": {
                "year": {"type": "int", "lower": 1900, "upper": 2020},
                "kind": {"type": "string", "categories": ["a", "b", "c"]},
            },
        }
    )
    rng = np.random.default_rng(1)
    base = {
        "year": rng.integers(1940, 2000, LEAK_ROWS).tolist(),
        "kind": rng.choice(["a", "b"], LEAK_ROWS).tolist(),
    }
    near = {"year": [*base["year"], 2020], "kind": [*base["kind"], "c"]}
    tables = [conformed_table(pa.table(rows), metadata) for rows in (base, near)]
    body = {"model": NAIVE_BAYES, "features": ["year"], "target": "kind", "epsilon": CHARGED}
    releases = 1000
    fits = _fits(metadata, body, tables, releases)
    events = [
        [
            float(
                counts_from_priors(p["class_prior"], LEAK_ROWS + 3)[2] == 1
                and p["theta"][2][0] < 2020
            )
            for p in side
        ]
        for side in fits
    ]
    bound = empirical_epsilon_lower_bound(events[1], events[0], 0.5)
    _report(
        capsys,
        "withdrawn gaussian_nb, a row alone in its class",
        bound,
        f"count of c 1 and its mean below 2020 in {int(sum(events[0]))} / "
        f"{int(sum(events[1]))} of {releases} releases without / with the row",
    )
    assert bound > CHARGED


# -- the checks can fail -------------------------------------------------------------------------
def test_the_chosen_bound_catches_a_mechanism_with_a_quarter_of_the_noise():
    """Simulated releases of a count with Laplace noise for epsilon 4 (a quarter of what
    epsilon 1 needs) are flagged at 300 releases each, as the tests above take (half of them
    choose, half judge); those of a correct 1-DP count are not, whichever statistic the first
    half picks. (A leak of twice the charge needs more releases than a default run makes.)"""
    rng = np.random.default_rng(5)

    def releases(true: float, epsilon: float) -> list[float]:
        return list(true + rng.laplace(0.0, 1.0 / epsilon, 300))

    noise = {"same on both": (releases(0.0, 1.0), releases(0.0, 1.0))}
    leaky = {"count": (releases(10.0, 4.0), releases(11.0, 4.0)), **noise}
    honest = {"count": (releases(10.0, 1.0), releases(11.0, 1.0)), **noise}
    assert chosen_epsilon_lower_bound(leaky)[0] > 1.0
    assert chosen_epsilon_lower_bound(honest)[0] <= 1.0


def test_the_model_check_flags_classes_shapes_and_numbers_the_metadata_does_not_give():
    from tests.privacy.model_requests import model_problem

    request = Request(
        "diffprivlib",
        {"model": "gaussian_nb", "features": ["age", "income"], "target": "kind", "epsilon": 1.0},
    )
    parameters = {
        "classes": ["a", "b", "c"],
        "theta": [[50.0, 500.0]] * 3,
        "var": [[1.0, 1.0]] * 3,
        "class_prior": [0.5, 0.25, 0.25],
    }
    result = {
        "model": "gaussian_nb",
        "features": ["age", "income"],
        "target": "kind",
        "parameters": parameters,
        "scaler": None,
    }
    assert model_problem("rows", request, result) is None
    for change in (
        {"classes": ["a", "b"]},  # a class missing
        {"classes": ["a", "c", "b"]},  # not in declared order
        {"classes": ["a", "b", "zz"]},  # an undeclared class
        {"theta": [[50.0, 500.0]] * 2},  # the wrong shape
        {"var": [[1.0, float("nan")]] * 3},  # not finite
        {"theta": [[50.0, 5000.0]] * 3},  # a class mean past the bounds
        {"class_prior": [0.5, 0.5, 0.5]},
        {"coef": [1.0]},  # a parameter naive Bayes does not have
    ):
        changed = {**result, "parameters": {**parameters, **change}}
        assert model_problem("rows", request, changed) is not None, change
    assert model_problem("rows", request, {**result, "scaler": {"mean": [0.0], "scale": [1.0]}})
    assert model_problem("rows", request, {**result, "target": "region"})
