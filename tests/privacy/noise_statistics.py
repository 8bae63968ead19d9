"""The statistics behind the noise checks (tests/privacy/test_dp_statistics.py): bounds on the epsilon
or rho that releases on two neighbouring datasets really have, a model of each engine's noise,
and the standard scores that say whether releases spread and centre as claimed. Nothing here
talks to the server."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Per proportion. At the cut between the two true counts a correct Laplace mechanism is tight
# (the ratio is exactly e^epsilon), so 95% intervals fail a correct engine about once in 75
# runs (simulated). At 99.9% a correct engine failed in 2e-5 of 400 000 simulated runs (counts,
# 400 releases per dataset), while a mechanism with half the noise is always caught.
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
    d0: Sequence[float], d1: Sequence[float], cut: float, confidence: float = CONFIDENCE
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


# alpha = 1 is the Kullback-Leibler divergence (the limit), which zCDP bounds by rho as well.
ALPHAS = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0)


def renyi_bernoulli(a: float, b: float, alpha: float) -> float:
    """D_alpha(Bernoulli(a) || Bernoulli(b)), for 0 < a, b < 1."""
    if alpha == 1.0:
        return a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))
    inner = a**alpha * b ** (1 - alpha) + (1 - a) ** alpha * (1 - b) ** (1 - alpha)
    return math.log(inner) / (alpha - 1)


def empirical_rho_lower_bound(
    d0: Sequence[float], d1: Sequence[float], cut: float, confidence: float = CONFIDENCE
) -> float:
    """A lower bound on the rho of zCDP releases: rho-zCDP bounds D_alpha(M(D1) || M(D0)) and
    D_alpha(M(D0) || M(D1)) by rho * alpha for every alpha, and so for the indicator of any
    event (post-processing). Between two Bernoullis the divergence only shrinks as they move
    together, so the ends of the two intervals nearest each other give a bound that holds for
    every alpha at once whenever both intervals hold."""
    above0, above1 = sum(v > cut for v in d0), sum(v > cut for v in d1)
    p0_low, p0_high = clopper_pearson(above0, len(d0), confidence)
    p1_low, p1_high = clopper_pearson(above1, len(d1), confidence)
    if p1_low > p0_high:
        a, b = p1_low, p0_high
    elif p0_low > p1_high:
        a, b = p0_low, p1_high
    else:
        return 0.0
    return max(max(renyi_bernoulli(a, b, x), renyi_bernoulli(b, a, x)) / x for x in ALPHAS)


@dataclass(frozen=True)
class Noise:
    """What the releases should look like: mean offset from the true value, standard
    deviation and kurtosis (for the standard error of a sample standard deviation)."""

    std: float
    kurtosis: float
    offset: float = 0.0


def laplace(scale: float) -> Noise:
    return Noise(math.sqrt(2) * scale, 6.0)


def discrete_laplace_std(scale: float) -> float:
    q = math.exp(-1 / scale)
    return math.sqrt(2 * q) / (1 - q)


def discrete_laplace(scale: float) -> Noise:
    q = math.exp(-1 / scale)
    return Noise(discrete_laplace_std(scale), (1 + 10 * q + q * q) / (2 * q))


def gaussian(scale: float) -> Noise:
    return Noise(scale, 3.0)


def rounded(noise: Noise) -> Noise:
    """SmartNoise-SQL 1.0.10 adds continuous Laplace noise to a COUNT; the server releases the
    nearest whole number (SmartNoise-SQL itself would cut towards 0, half a unit low on
    average), which stays centred and adds about 1/12 to the variance."""
    return Noise(math.sqrt(noise.std**2 + 1 / 12), noise.kurtosis, noise.offset)


def claimed_noise(engine: str, value: dict[str, Any]) -> Noise:
    """The noise a reply says one noisy value gets. OpenDP names its distribution;
    SmartNoise-SQL adds continuous Laplace noise to every statistic, with delta or without
    (test_smartnoise_sql_adds_laplace_noise_even_with_delta)."""
    scale = float(value["scale"])
    if engine == "smartnoise-sql":
        return laplace(scale)
    kinds = {
        "Float Laplace": laplace,
        "Integer Laplace": discrete_laplace,
        "Float Gaussian": gaussian,
    }
    assert value["distribution"] in kinds, f"no model here of {value['distribution']!r} noise"
    return kinds[value["distribution"]](scale)


def ratio_noise(total: float, count: float, sum_noise: Noise, count_noise: Noise) -> Noise:
    """A noisy sum over a noisy count, to first order (the count's noise is about 1/300 of it):
    (S + e_s) / (n + e_n) ~ S/n + (e_s - (S/n) e_n) / n. The kurtosis of a sum of independent
    symmetric noises is at most the largest of theirs."""
    mean = total / count
    std = math.sqrt(sum_noise.std**2 + (mean * count_noise.std) ** 2) / count
    return Noise(std, max(sum_noise.kurtosis, count_noise.kurtosis))


def spread_z(d0: Sequence[float], d1: Sequence[float], noise0: Noise, noise1: Noise) -> float:
    """How many standard errors the pooled standard deviation of both sets of releases (each
    around its own mean) is from the claimed one; the standard error of a sample standard
    deviation is about std * sqrt((kurtosis - 1) / (4 n))."""
    n0, n1 = len(d0), len(d1)
    squares = sum((v - statistics.fmean(d0)) ** 2 for v in d0) + sum(
        (v - statistics.fmean(d1)) ** 2 for v in d1
    )
    observed = math.sqrt(squares / (n0 + n1 - 2))
    claimed = math.sqrt(((n0 - 1) * noise0.std**2 + (n1 - 1) * noise1.std**2) / (n0 + n1 - 2))
    kurtosis = max(noise0.kurtosis, noise1.kurtosis)
    return (observed / claimed - 1) / math.sqrt((kurtosis - 1) / (4 * (n0 + n1)))


def centre_z(values: Sequence[float], true_value: float, noise: Noise) -> float:
    expected = true_value + noise.offset
    return (statistics.fmean(values) - expected) / (noise.std / math.sqrt(len(values)))


def difference_z(
    d0: Sequence[float], d1: Sequence[float], difference: float, noise0: Noise, noise1: Noise
) -> float:
    """How many standard errors mean(D1) - mean(D0) is above ``difference``."""
    observed = statistics.fmean(d1) - statistics.fmean(d0)
    error = math.sqrt(noise0.std**2 / len(d0) + noise1.std**2 / len(d1))
    return (observed - difference) / error


def laplace_epsilon(components: Sequence[tuple[float, float]]) -> float:
    """The epsilon of independent Laplace noise (continuous or discrete) on values of these
    (sensitivity, scale): sensitivity / scale each, added up (basic composition)."""
    return sum(sensitivity / scale for sensitivity, scale in components)


def gaussian_rho(components: Sequence[tuple[float, float]]) -> float:
    """The rho of independent Gaussian noise on values of these (sensitivity, sigma)."""
    return sum(sensitivity**2 / (2 * sigma**2) for sensitivity, sigma in components)


def sum_sensitivity(metadata: dict[str, Any], column: str) -> float:
    """What one person can add to a sum: max_ids rows, each clamped to the column's bounds
    (widened to include 0 by both engines, so NULLs counted as 0 stay inside)."""
    spec = metadata["columns"][column]
    return metadata.get("max_ids", 1) * max(abs(spec["lower"]), abs(spec["upper"]))


def count_sensitivity(metadata: dict[str, Any]) -> float:
    return metadata.get("max_ids", 1)


# -- releases whose distribution has no model here -----------------------------------------------
def _smoothed_log_ratio(above0: int, above1: int, n0: int, n1: int) -> float:
    p0, p1 = (above0 + 1) / (n0 + 2), (above1 + 1) / (n1 + 2)
    return max(math.log(p1 / p0), math.log((1 - p0) / (1 - p1)))


def chosen_epsilon_lower_bound(
    statistics_: dict[str, tuple[Sequence[float], Sequence[float]]],
    confidence: float = CONFIDENCE,
    cuts: int = 19,
) -> tuple[float, str]:
    """An epsilon lower bound where the releases' distribution is not modelled (a fitted model,
    synthetic rows): the first half of each set of releases chooses the statistic, the cut (a
    quantile of both sets' first halves) and the direction that tell the two datasets apart
    best; ``empirical_epsilon_lower_bound`` then judges that one event on the second halves,
    which the choice never saw, so the confidence stays what it says. Returns the bound and
    what was chosen."""
    best: tuple[float, str, float, bool] | None = None
    for name, (d0, d1) in statistics_.items():
        h0, h1 = len(d0) // 2, len(d1) // 2
        first0, first1 = sorted(d0[:h0]), sorted(d1[:h1])
        pooled = sorted([*first0, *first1])
        for i in range(1, cuts + 1):
            cut = pooled[min(len(pooled) - 1, i * len(pooled) // (cuts + 1))]
            above0 = sum(v > cut for v in first0)
            above1 = sum(v > cut for v in first1)
            for swapped in (False, True):
                counts = (above1, above0, h1, h0) if swapped else (above0, above1, h0, h1)
                score = _smoothed_log_ratio(*counts)
                if best is None or score > best[0]:
                    best = (score, name, cut, swapped)
    assert best is not None
    _, name, cut, swapped = best
    d0, d1 = statistics_[name]
    second0, second1 = d0[len(d0) // 2 :], d1[len(d1) // 2 :]
    if swapped:
        second0, second1 = second1, second0
    bound = empirical_epsilon_lower_bound(second0, second1, cut, confidence)
    order = "D0 over D1" if swapped else "D1 over D0"
    return bound, f"{name} above {cut:.4g}, {order}"


def zcdp_delta(rho: float, epsilon: float) -> float:
    """The delta at ``epsilon`` of rho-zCDP (Canonne, Kamath & Steinke 2020, Proposition 12):
    the infimum over alpha > 1 of exp((alpha - 1)(alpha rho - epsilon)) / (alpha - 1) times
    (1 - 1/alpha)^alpha, found on a grid and refined by ternary search."""
    if rho <= 0:
        return 0.0

    def log_delta(alpha: float) -> float:
        return (
            (alpha - 1) * (alpha * rho - epsilon)
            - math.log(alpha - 1)
            + alpha * math.log1p(-1 / alpha)
        )

    grid = [1 + 10 ** (k / 200) for k in range(-1200, 1000)]
    best = min(grid, key=log_delta)
    low, high = max(best / 1.1, 1 + 1e-12), best * 1.1
    for _ in range(200):
        first, second = low + (high - low) / 3, high - (high - low) / 3
        if log_delta(first) < log_delta(second):
            high = second
        else:
            low = first
    return math.exp(min(log_delta(best), log_delta((low + high) / 2)))


# -- the server ----------------------------------------------------------------------------------
