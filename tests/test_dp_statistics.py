"""Statistical checks of the noise each engine adds, through the real server.

Two neighbouring datasets, D0 (the 344 penguins) and D1 (one more penguin), answer the same
COUNT many times with fresh releases. For epsilon-DP, any event E must satisfy
P[E | D1] <= e^epsilon P[E | D0] (and the same with the datasets swapped). With E = "the
noisy count is above 344.5", Clopper-Pearson bounds on both frequencies give a lower bound on
the epsilon the releases really have; it must not exceed the epsilon charged. The spread of
the releases must also match the noise scale the server claims. A release with too little
noise (or a count that leaked) fails the first check; a scale that is not the one used fails
the second.
"""

from __future__ import annotations

import math
import statistics
import uuid

import pandas as pd
import pytest

from tests.conftest import SAMPLE_DATA, sample_metadata

RELEASES = 400  # per dataset; about 20 s per engine
EPSILON = 1.0
TRUE_COUNT = 344
# Per proportion. At the cut between the two true counts a correct Laplace mechanism is tight
# (the ratio is exactly e^epsilon), so 95% intervals fail a correct engine about once in 75
# runs (simulated). At 99.9% none failed in 300 simulated runs, while a mechanism that is
# really 1.5-DP is still caught 94% of the time, and a 2-DP one (half the noise) always.
CONFIDENCE = 0.999


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P[X <= k] for X ~ Binomial(n, p), summed in log space."""
    if p <= 0:
        return 1.0
    if p >= 1:
        return 1.0 if k >= n else 0.0
    terms = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
        for i in range(k + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _solve(predicate_is_low, steps: int = 80) -> float:
    low, high = 0.0, 1.0
    for _ in range(steps):
        middle = (low + high) / 2
        if predicate_is_low(middle):
            low = middle
        else:
            high = middle
    return (low + high) / 2


def clopper_pearson(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval for a binomial proportion."""
    tail = (1 - confidence) / 2
    # lower: P[X >= k; p] = tail; upper: P[X <= k; p] = tail
    low = (
        0.0
        if successes == 0
        else _solve(lambda p: 1 - _binomial_cdf(successes - 1, trials, p) < tail)
    )
    high = (
        1.0 if successes == trials else _solve(lambda p: _binomial_cdf(successes, trials, p) > tail)
    )
    return low, high


def empirical_epsilon_lower_bound(
    d0: list[float], d1: list[float], cut: float, confidence: float = CONFIDENCE
) -> float:
    """max over E and its complement of ln(P1_low / P0_high), each proportion bounded at
    ``confidence``."""
    above0, above1 = sum(v > cut for v in d0), sum(v > cut for v in d1)
    p0_low, p0_high = clopper_pearson(above0, len(d0), confidence)
    p1_low, p1_high = clopper_pearson(above1, len(d1), confidence)
    bounds = [0.0]
    if p0_high > 0 and p1_low > 0:
        bounds.append(math.log(p1_low / p0_high))  # P[E | D1] <= e^eps P[E | D0]
    if p1_low < 1 and p0_high < 1:
        bounds.append(math.log((1 - p0_high) / (1 - p1_low)))  # the complement, other way round
    return max(bounds)


def test_clopper_pearson_matches_known_values():
    # R: binom.test(20, 100)$conf.int -> 0.1266556 0.2918427
    low, high = clopper_pearson(20, 100, 0.95)
    assert low == pytest.approx(0.1266556, abs=1e-6) and high == pytest.approx(0.2918427, abs=1e-6)
    assert clopper_pearson(0, 10, 0.95)[0] == 0.0 and clopper_pearson(10, 10, 0.95)[1] == 1.0


def test_the_bound_catches_a_mechanism_with_half_the_noise():
    """The check can fail: simulated releases of a 2-DP count (half the noise charged for
    epsilon 1) are flagged, releases of a correct 1-DP count are not."""
    import numpy as np

    rng = np.random.default_rng(11)

    def releases(true_count: int, epsilon: float) -> list[float]:
        p = 1 - math.exp(-epsilon)  # discrete Laplace as a difference of two geometrics
        noise = rng.geometric(p, RELEASES) - rng.geometric(p, RELEASES)
        return list(true_count + noise)

    leaky = empirical_epsilon_lower_bound(
        releases(TRUE_COUNT, 2.0), releases(TRUE_COUNT + 1, 2.0), TRUE_COUNT + 0.5
    )
    honest = empirical_epsilon_lower_bound(
        releases(TRUE_COUNT, 1.0), releases(TRUE_COUNT + 1, 1.0), TRUE_COUNT + 0.5
    )
    assert leaky > EPSILON >= honest


def discrete_laplace_std(scale: float) -> float:
    q = math.exp(-1 / scale)
    return math.sqrt(2 * q) / (1 - q)


def expected_release(engine: str, scale: float) -> tuple[float, float]:
    """Mean and standard deviation of the released count.

    OpenDP adds discrete ("Integer") Laplace noise to counts. SmartNoise-SQL 1.0.10 adds
    continuous Laplace noise to COUNT(*) and then turns the result into an integer by
    truncation, which shifts it down by half a unit on average and adds 1/12 to the variance.
    """
    if engine == "opendp":
        return TRUE_COUNT, discrete_laplace_std(scale)
    return TRUE_COUNT - 0.5, math.sqrt(2 * scale * scale + 1 / 12)


@pytest.fixture(scope="module")
def neighbours(admin, tmp_path_factory):
    folder = tmp_path_factory.mktemp("neighbours")
    rows = pd.read_csv(SAMPLE_DATA / "penguin.csv")
    extra = pd.concat([rows, rows.iloc[[0]]], ignore_index=True)  # one more individual
    extra.to_csv(folder / "plus_one.csv", index=False)
    names = (f"D0_{uuid.uuid4().hex[:6]}", f"D1_{uuid.uuid4().hex[:6]}")
    admin.add_dataset(names[0], SAMPLE_DATA / "penguin.csv", sample_metadata("penguin"))
    admin.add_dataset(names[1], folder / "plus_one.csv", sample_metadata("penguin"))
    return names


def _releases(api, dataset: str, engine: str) -> list[float]:
    values = []
    for _ in range(RELEASES):
        if engine == "smartnoise-sql":
            reply = api.sql(dataset, "SELECT COUNT(*) AS n FROM df", EPSILON, fresh=True)
        else:
            body = {"query": {"aggregates": [{"op": "count"}]}, "epsilon": EPSILON, "fresh": True}
            reply = api.post(f"/datasets/{dataset}/opendp", body)
        assert reply.status_code == 200, reply.text
        values.append(float(reply.json()["result"]["data"][0][0]))
    return values


def _claimed_scale(api, dataset: str, engine: str) -> float:
    if engine == "smartnoise-sql":
        body = {"query": "SELECT COUNT(*) AS n FROM df", "epsilon": EPSILON}
        estimate = api.post(f"/datasets/{dataset}/smartnoise-sql/cost", body).json()
    else:
        body = {"query": {"aggregates": [{"op": "count"}]}, "epsilon": EPSILON}
        estimate = api.post(f"/datasets/{dataset}/opendp/cost", body).json()
    (value,) = estimate["accuracy"]["noisy_values"]
    return float(value["scale"])


@pytest.mark.parametrize("engine", ["smartnoise-sql", "opendp"])
def test_releases_are_as_private_and_as_noisy_as_claimed(engine, neighbours, make_user):
    d0, d1 = neighbours
    user = make_user(**{d0: (RELEASES * EPSILON + 10, 0.0), d1: (RELEASES * EPSILON + 10, 0.0)})
    on_d0, on_d1 = _releases(user.api, d0, engine), _releases(user.api, d1, engine)

    lower_bound = empirical_epsilon_lower_bound(on_d0, on_d1, TRUE_COUNT + 0.5)
    assert lower_bound <= EPSILON, (
        f"releases look {lower_bound:.2f}-DP, more than the {EPSILON} charged"
    )
    # and the test can see a difference at all: D1 answers above the cut more often
    assert sum(v > TRUE_COUNT + 0.5 for v in on_d1) > sum(v > TRUE_COUNT + 0.5 for v in on_d0)

    mean, claimed = expected_release(engine, _claimed_scale(user.api, d0, engine))
    observed = statistics.stdev(on_d0)
    standard_error = claimed * math.sqrt(5 / (4 * RELEASES))  # Laplace kurtosis 6
    assert abs(observed - claimed) < 4 * standard_error, (observed, claimed)
    assert abs(statistics.mean(on_d0) - mean) < 4 * claimed / math.sqrt(RELEASES)
