"""Statistical checks of the noise each engine adds, through the real server.

Two neighbouring datasets, D0 and D1 (D0 plus one individual), answer the same query many times
with fresh releases. For epsilon-DP, any event E must satisfy P[E | D1] <= e^epsilon P[E | D0]
(and the same with the datasets swapped). With E = "the release is above a cut", Clopper-Pearson
bounds on both frequencies give a lower bound on the epsilon the releases really have; it must
not exceed the epsilon charged. For zCDP (Gaussian noise) the same frequencies bound the Rényi
divergences, hence rho. The spread of the releases must also match the noise scale the server
claims, and that claimed scale must be what the sensitivity (worked out here from the metadata,
never read from the server) and the charge require. Finally the releases on D1 minus those on
D0 must be centred on the true difference, which is at most the sensitivity.

A release with too little noise (or a value that leaked) fails the first check; a scale that is
not the one used fails the second; a claimed scale too small for the charge fails the third; a
contribution that escaped its bounds (a value not clamped, a person not limited to max_ids
rows) fails the last. Each check has a test on simulated releases showing it catches a
mechanism with half the noise it should have.

The queries: COUNT(*), SUM and mean of a bounded column, counts per species (public keys), a
Gaussian SUM (OpenDP; SmartNoise-SQL adds Laplace noise even when given delta), and a SUM where
each person owns several rows (max_ids 2).
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SAMPLE_DATA, sample_metadata
from tests.privacy.noise_statistics import (
    Noise,
    centre_z,
    claimed_noise,
    clopper_pearson,
    count_sensitivity,
    difference_z,
    discrete_laplace,
    empirical_epsilon_lower_bound,
    empirical_rho_lower_bound,
    gaussian,
    gaussian_rho,
    laplace,
    laplace_epsilon,
    ratio_noise,
    renyi_bernoulli,
    rounded,
    spread_z,
    sum_sensitivity,
)
from tests.servers import Api

ENGINES = ["smartnoise-sql", "opendp"]
RELEASES = 400  # per dataset; about 20 s per engine for COUNT(*)
# OpenDP answers in 25-40 ms, SmartNoise-SQL in about 10. Where the check that matters most
# (the spread, which is what catches a scale that is too small) is as strong with fewer
# releases, OpenDP gets 300: half the noise is then still 10 standard errors away.
OPENDP_RELEASES = 300
EPSILON = 1.0
RHO = 1.0  # Gaussian: sigma = sensitivity / sqrt(2): the two true sums 1.4 sigma apart
TRUE_COUNT = 344
# Spread, centre and difference checks allow Z standard errors. The sample standard deviation
# of Laplace noise is skewed by its heavy tails: simulated with the releases on both datasets
# pooled (2 x 300), as the checks pool them, it went more than 5 standard errors above the
# truth in 2 to 3 runs in a million (more than 3.5: 4 in 10 000) and never below. Means and
# differences of means are close to normal (6e-7 beyond 5). Half the noise puts the standard
# deviation at least 10 standard errors low.
# Added up over the file's 12 bounds, 17 spread and some 60 centre and difference checks, a
# correct server fails a run of this file less than once in 5 000.
Z = 5.0
# One request in the engine (which works on one thread) while the next crosses HTTP; more only
# contend for the cores.
WORKERS = 2

PENGUINS = pd.read_csv(SAMPLE_DATA / "penguin.csv")
PENGUIN_METADATA = sample_metadata("penguin")
MASS = PENGUIN_METADATA["columns"]["body_mass_g"]
# One more Gentoo, ten times heavier than the upper bound: clamped, it adds exactly the
# sensitivity to a sum; an engine that did not clamp would add ten times that.
HEAVY_PENGUIN = {
    "species": "Gentoo",
    "island": "Biscoe",
    "bill_length_mm": 50.0,
    "bill_depth_mm": 15.0,
    "flipper_length_mm": 220.0,
    "body_mass_g": 10 * MASS["upper"],
    "sex": "MALE",
}
# Each person owns up to max_ids rows; the extra person owns MANY_ROWS, all at the upper bound.
IDS_METADATA = {
    "max_ids": 2,
    "rows": 2000,
    "columns": {
        "pid": {"type": "int", "private_id": True},
        "kind": {"type": "string", "categories": ["a", "b"], "public_keys": True},
        "x": {"type": "float", "lower": 0.0, "upper": 10.0},
    },
}
MANY_ROWS = 50


# -- statistics --------------------------------------------------------------------------------
def release_many(
    user: Any, datasets: Sequence[str], path: str, body: dict[str, Any], count: int
) -> dict[str, list[dict[str, Any]]]:
    """``count`` fresh releases of one query on each dataset, interleaved, as full replies."""
    local = threading.local()
    sessions: list[Api] = []

    def release(dataset: str) -> tuple[str, dict[str, Any]]:
        api = getattr(local, "api", None)
        if api is None:
            api = local.api = Api(user.api.base, user.token)
            sessions.append(api)
        reply = api.post(f"/datasets/{dataset}/{path}", {**body, "fresh": True})
        assert reply.status_code == 200, reply.text
        return dataset, reply.json()

    replies: dict[str, list[dict[str, Any]]] = {dataset: [] for dataset in datasets}
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            for dataset, reply in pool.map(release, [d for _ in range(count) for d in datasets]):
                replies[dataset].append(reply)
    finally:
        for api in sessions:
            api.session.close()
    return replies


def request(engine: str, sql: str, opendp: dict[str, Any], **extra: Any) -> tuple[str, dict]:
    if engine == "smartnoise-sql":
        return engine, {"query": sql, "epsilon": EPSILON, "delta": 0.0, **extra}
    return engine, {"query": opendp, "epsilon": EPSILON, **extra}


def charge(replies: dict[str, list[dict[str, Any]]], key: str = "epsilon") -> float:
    """The one charge every release of the query paid (they must agree)."""
    costs = {json.dumps(r["cost"], sort_keys=True) for rs in replies.values() for r in rs}
    assert len(costs) == 1, costs
    return float(json.loads(costs.pop())[key])


def claimed_values(replies: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The noisy values the replies describe (the same plan for both datasets)."""
    described = {
        json.dumps(r["accuracy"]["noisy_values"], sort_keys=True)
        for rs in replies.values()
        for r in rs
    }
    assert len(described) == 1, described
    return json.loads(described.pop())


def column(replies: list[dict[str, Any]], name: str | None = None) -> list[float]:
    """One released value per reply: the first column of the single row, or ``name``."""
    out = []
    for reply in replies:
        result = reply["result"]
        (row,) = result["data"]
        out.append(float(row[0] if name is None else row[result["columns"].index(name)]))
    return out


def per_group(replies: list[dict[str, Any]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for reply in replies:
        for key, value in reply["result"]["data"]:
            out.setdefault(key, []).append(float(value))
    return out


@dataclass(repr=False)
class Findings:
    """What a case observed, for the failure message and for -rP."""

    label: str
    lines: list[str]

    def add(self, text: str) -> None:
        self.lines.append(text)

    def __repr__(self) -> str:
        return f"{self.label}: " + "; ".join(self.lines)


def check_releases(
    findings: Findings,
    d0: Sequence[float],
    d1: Sequence[float],
    *,
    true0: float,
    true1: float,
    noise0: Noise,
    noise1: Noise,
    sensitivity: float | None,
) -> None:
    """(b) the spread is the claimed one, and (c) both sets are centred on their true values,
    so their difference is the true one, at most the sensitivity."""
    spread = spread_z(d0, d1, noise0, noise1)
    findings.add(
        f"sd {statistics.stdev(d0):.4g} / {statistics.stdev(d1):.4g} vs claimed "
        f"{noise0.std:.4g} / {noise1.std:.4g} ({spread:+.2f} se)"
    )
    assert abs(spread) < Z, findings
    for values, true_value, noise in ((d0, true0, noise0), (d1, true1, noise1)):
        assert abs(centre_z(values, true_value, noise)) < Z, (findings, true_value)
    difference = statistics.fmean(d1) - statistics.fmean(d0)
    findings.add(f"D1-D0 {difference:.4g} (true {true1 - true0:.4g}, sensitivity {sensitivity})")
    if sensitivity is not None:
        # one individual moves a release by at most the sensitivity
        assert difference_z(d0, d1, sensitivity, noise0, noise1) < Z, findings
    assert abs(difference_z(d0, d1, true1 - true0, noise0, noise1)) < Z, findings


# -- datasets --------------------------------------------------------------------------------------
def _names(prefix: str) -> tuple[str, str]:
    return f"{prefix}0_{uuid.uuid4().hex[:6]}", f"{prefix}1_{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def neighbours(admin, tmp_path_factory):
    folder = tmp_path_factory.mktemp("neighbours")
    extra = pd.concat([PENGUINS, PENGUINS.iloc[[0]]], ignore_index=True)  # one more individual
    extra.to_csv(folder / "plus_one.csv", index=False)
    names = _names("D")
    admin.add_dataset(names[0], SAMPLE_DATA / "penguin.csv", PENGUIN_METADATA)
    admin.add_dataset(names[1], folder / "plus_one.csv", PENGUIN_METADATA)
    return names


@pytest.fixture(scope="module")
def heavy_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("heavy") / "plus_heavy.csv"
    pd.concat([PENGUINS, pd.DataFrame([HEAVY_PENGUIN])], ignore_index=True).to_csv(
        path, index=False
    )
    return path


@pytest.fixture(scope="module")
def heavy_neighbours(admin, neighbours, heavy_csv):
    """The penguins, and the penguins plus the heavy Gentoo."""
    name = _names("H")[1]
    admin.add_dataset(name, heavy_csv, PENGUIN_METADATA)
    return neighbours[0], name


@pytest.fixture(scope="module")
def zcdp_neighbours(admin, heavy_csv):
    """The same pair on datasets that account in zCDP: replies then state the rho charged."""
    names = _names("Z")
    admin.add_dataset(names[0], SAMPLE_DATA / "penguin.csv", PENGUIN_METADATA, accounting="zcdp")
    admin.add_dataset(names[1], heavy_csv, PENGUIN_METADATA, accounting="zcdp")
    return names


def people(seed: int = 7, count: int = 300) -> pd.DataFrame:
    """Each person owns 1 to max_ids rows."""
    rng = np.random.default_rng(seed)
    owned = rng.integers(1, IDS_METADATA["max_ids"] + 1, count)
    pid = np.repeat(np.arange(count), owned)
    kind = rng.choice(["a", "b"], len(pid))
    x = rng.uniform(0.0, 10.0, len(pid)).round(3)
    return pd.DataFrame({"pid": pid, "kind": kind, "x": x})


@pytest.fixture(scope="module")
def id_neighbours(admin, tmp_path_factory):
    """People owning up to max_ids rows each, and the same plus one person owning many."""
    folder = tmp_path_factory.mktemp("ids")
    rows = people()
    upper = IDS_METADATA["columns"]["x"]["upper"]
    newcomer = pd.DataFrame({"pid": rows.pid.max() + 1, "kind": "a", "x": [upper] * MANY_ROWS})
    rows.to_csv(folder / "people.csv", index=False)
    pd.concat([rows, newcomer], ignore_index=True).to_csv(folder / "plus_one.csv", index=False)
    names = _names("I")
    admin.add_dataset(names[0], folder / "people.csv", IDS_METADATA)
    admin.add_dataset(names[1], folder / "plus_one.csv", IDS_METADATA)
    return names, float(rows.x.sum())


def true_mass() -> tuple[float, int]:
    """The clamped sum and the count of the known body masses of the 344 penguins."""
    known = PENGUINS.body_mass_g.dropna()
    # Both engines clamp (SmartNoise-SQL to [2000, 7000], OpenDP to [0, 7000]); no penguin needs
    # it, so their true values agree.
    assert known.between(MASS["lower"], MASS["upper"]).all()
    return float(known.sum()), len(known)


# -- unit tests of the checks ----------------------------------------------------------------
def test_clopper_pearson_matches_known_values():
    # R: binom.test(20, 100)$conf.int -> 0.1266556 0.2918427
    low, high = clopper_pearson(20, 100, 0.95)
    assert low == pytest.approx(0.1266556, abs=1e-6) and high == pytest.approx(0.2918427, abs=1e-6)
    assert clopper_pearson(0, 10, 0.95)[0] == 0.0 and clopper_pearson(10, 10, 0.95)[1] == 1.0


def test_renyi_divergence_of_bernoullis_matches_known_values():
    # KL(1/2 || 1/4) = (ln 2 + ln 2/3) / 2; D_2 = ln sum p^2 / q = ln(1 + 1/3)
    assert renyi_bernoulli(0.5, 0.25, 1.0) == pytest.approx(0.5 * math.log(4 / 3))
    assert renyi_bernoulli(0.5, 0.25, 2.0) == pytest.approx(math.log(4 / 3))
    assert renyi_bernoulli(0.5, 0.25, 1.0001) == pytest.approx(0.5 * math.log(4 / 3), rel=1e-3)


def test_the_bound_catches_a_mechanism_with_half_the_noise():
    """The check can fail: simulated releases of a 2-DP count (half the noise charged for
    epsilon 1) are flagged, releases of a correct 1-DP count are not."""
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


def test_the_tail_bound_catches_a_sum_with_half_the_noise():
    """For continuous Laplace noise the likelihood ratio is exactly e^epsilon above the larger
    true value, so that is the cut. Simulated 400 000 times with 400 releases a dataset, a
    correct 1-DP sum exceeded epsilon 1 in 2.5e-6 of runs and one with half the noise was caught
    in 97% (with 300 releases: 83%); the spread check catches the rest. Two values released
    together (the sum and count of a mean) add their bounds, as their epsilons add."""
    rng = np.random.default_rng(12)
    total, sensitivity = 1.4e6, 7000.0

    def sums(true_value: float, scale: float) -> list[float]:
        return list(true_value + rng.laplace(0.0, scale, RELEASES))

    def bound(scale: float) -> float:
        cut = total + sensitivity
        return empirical_epsilon_lower_bound(sums(total, scale), sums(cut, scale), cut)

    honest, leaky = bound(sensitivity / EPSILON), bound(sensitivity / EPSILON / 2)
    assert leaky > EPSILON >= honest
    # a sum and a count at epsilon 1 each, charged 2
    assert bound(sensitivity / 2) + bound(sensitivity / 2) > 2 * EPSILON
    assert bound(sensitivity) + bound(sensitivity) <= 2 * EPSILON


def test_the_rho_bound_catches_a_gaussian_with_half_the_noise():
    """Simulated 200 000 times with 300 releases a dataset at rho 1: a correct mechanism never
    exceeded rho, one with half the noise (4 rho) was caught in 99.4% of runs."""
    rng = np.random.default_rng(13)
    total, sensitivity = 1.4e6, 7000.0
    sigma = sensitivity / math.sqrt(2 * RHO)

    def bound(scale: float) -> float:
        d0 = list(total + rng.normal(0.0, scale, OPENDP_RELEASES))
        d1 = list(total + sensitivity + rng.normal(0.0, scale, OPENDP_RELEASES))
        return empirical_rho_lower_bound(d0, d1, total + sensitivity / 2)

    assert bound(sigma / 2) > RHO >= bound(sigma)


@pytest.mark.parametrize("kind", ["laplace", "integer laplace", "sql count", "gaussian", "mean"])
def test_the_spread_check_catches_half_the_noise(kind):
    """A mechanism that uses half the scale it claims fails the spread check; one that claims
    half the scale fails the check of the claim against sensitivity and charge (below)."""
    rng = np.random.default_rng(14)
    n = OPENDP_RELEASES  # the fewest releases any spread check has
    total, count = 1.4e6, 342
    sum_scale, count_scale = 14000.0, 2.0  # OpenDP's mean at epsilon 1

    def discrete(scale: float) -> np.ndarray:
        p = 1 - math.exp(-1 / scale)
        return rng.geometric(p, n) - rng.geometric(p, n)

    def releases(shrink: float) -> list[float]:
        if kind == "mean":
            noisy_sum = total + rng.laplace(0.0, sum_scale * shrink, n)
            return list(noisy_sum / (count + discrete(count_scale * shrink)))
        if kind == "integer laplace":
            return list(TRUE_COUNT + discrete(shrink))
        if kind == "gaussian":
            return list(TRUE_COUNT + rng.normal(0.0, shrink, n))
        noisy = TRUE_COUNT + rng.laplace(0.0, shrink, n)
        return list(np.round(noisy) if kind == "sql count" else noisy)

    claimed = {
        "laplace": laplace(1.0),
        "integer laplace": discrete_laplace(1.0),
        "sql count": rounded(laplace(1.0)),
        "gaussian": gaussian(1.0),
        "mean": ratio_noise(total, count, laplace(sum_scale), discrete_laplace(count_scale)),
    }[kind]
    assert abs(spread_z(releases(1.0), releases(1.0), claimed, claimed)) < Z
    assert spread_z(releases(0.5), releases(0.5), claimed, claimed) < -Z


def test_claimed_scales_are_checked_against_sensitivity_and_charge():
    # SUM(body_mass_g) at epsilon 1: Laplace scale 7000, not 3500
    assert laplace_epsilon([(7000.0, 7000.0)]) <= 1.0 < laplace_epsilon([(7000.0, 3500.0)])
    # a mean: the noisy sum and the noisy count together within the charge
    assert laplace_epsilon([(7000.0, 14000.0), (1.0, 2.0)]) <= 1.0
    assert laplace_epsilon([(7000.0, 14000.0), (1.0, 1.0)]) > 1.0
    # Gaussian at rho 1: sigma 7000 / sqrt(2)
    sigma = 7000.0 / math.sqrt(2)
    assert gaussian_rho([(7000.0, sigma)]) <= 1.0 < gaussian_rho([(7000.0, sigma / 2)])
    # the sensitivity follows the metadata, not the server
    assert sum_sensitivity(PENGUIN_METADATA, "body_mass_g") == 7000.0
    assert sum_sensitivity(IDS_METADATA, "x") == 20.0 and count_sensitivity(IDS_METADATA) == 2


def test_the_difference_check_catches_an_unclamped_value_and_an_unbounded_person():
    rng = np.random.default_rng(15)
    n, total = RELEASES, 1.4e6
    noise = laplace(7000.0)

    def sums(true_value: float, scale: float) -> list[float]:
        return list(true_value + rng.laplace(0.0, scale, n))

    d0 = sums(total, 7000.0)
    assert difference_z(d0, sums(total + 7000.0, 7000.0), 7000.0, noise, noise) < Z
    # the heavy penguin not clamped: 70 000 g more
    assert difference_z(d0, sums(total + 70000.0, 7000.0), 7000.0, noise, noise) > Z
    # a person's 50 rows of 10 all counted, not max_ids = 2 of them
    noise = laplace(20.0)
    d0 = sums(2000.0, 20.0)
    assert difference_z(d0, sums(2020.0, 20.0), 20.0, noise, noise) < Z
    assert difference_z(d0, sums(2500.0, 20.0), 20.0, noise, noise) > Z


# -- the engines -----------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_releases_are_as_private_and_as_noisy_as_claimed(engine, neighbours, make_user):
    """COUNT(*); the extra penguin is one more row."""
    d0, d1 = neighbours
    grant = (RELEASES * EPSILON + 10, 0.0)
    user = make_user(**{d0: grant, d1: grant})
    replies = release_many(
        user,
        (d0, d1),
        *request(engine, "SELECT COUNT(*) AS n FROM df", {"aggregates": [{"op": "count"}]}),
        RELEASES,
    )
    on_d0, on_d1 = column(replies[d0]), column(replies[d1])
    findings = Findings(f"{engine} COUNT(*)", [])

    charged = charge(replies)
    (value,) = claimed_values(replies)
    assert laplace_epsilon([(count_sensitivity(PENGUIN_METADATA), value["scale"])]) <= charged
    lower_bound = empirical_epsilon_lower_bound(on_d0, on_d1, TRUE_COUNT + 0.5)
    findings.add(f"epsilon >= {lower_bound:.2f} (charged {charged})")
    assert lower_bound <= charged, findings
    # and the test can see a difference at all: D1 answers above the cut more often
    assert sum(v > TRUE_COUNT + 0.5 for v in on_d1) > sum(v > TRUE_COUNT + 0.5 for v in on_d0)

    noise = claimed_noise(engine, value)
    noise = rounded(noise) if engine == "smartnoise-sql" else noise
    check_releases(
        findings,
        on_d0,
        on_d1,
        true0=TRUE_COUNT,
        true1=TRUE_COUNT + 1,
        noise0=noise,
        noise1=noise,
        sensitivity=count_sensitivity(PENGUIN_METADATA),
    )
    print(findings)


SUM_SQL = "SELECT SUM(body_mass_g) AS total FROM df"
SUM_OPENDP = {"aggregates": [{"op": "sum", "column": "body_mass_g", "as": "total"}]}


@pytest.mark.parametrize("engine", ENGINES)
def test_sums_are_as_private_and_as_noisy_as_claimed(engine, heavy_neighbours, make_user):
    d0, d1 = heavy_neighbours
    grant = (RELEASES * EPSILON + 10, 0.0)
    user = make_user(**{d0: grant, d1: grant})
    replies = release_many(user, (d0, d1), *request(engine, SUM_SQL, SUM_OPENDP), RELEASES)
    sensitivity = sum_sensitivity(PENGUIN_METADATA, "body_mass_g")
    _check_laplace_sum(f"{engine} SUM", engine, replies, (d0, d1), true_mass()[0], sensitivity)


def _check_laplace_sum(
    what: str,
    engine: str,
    replies: dict[str, list[dict[str, Any]]],
    datasets: tuple[str, str],
    total: float,
    sensitivity: float,
) -> None:
    """A Laplace SUM released on D0 (true ``total``) and D1 (one more person at the bound)."""
    on_d0, on_d1 = (column(replies[d]) for d in datasets)
    findings = Findings(what, [])
    charged = charge(replies)
    (value,) = claimed_values(replies)
    findings.add(f"scale {value['scale']:.6g} (at least {sensitivity / charged:.6g})")
    assert laplace_epsilon([(sensitivity, value["scale"])]) <= charged, findings

    lower_bound = empirical_epsilon_lower_bound(on_d0, on_d1, total + sensitivity)
    findings.add(f"epsilon >= {lower_bound:.2f} (charged {charged})")
    assert lower_bound <= charged, findings

    noise = claimed_noise(engine, value)
    check_releases(
        findings,
        on_d0,
        on_d1,
        true0=total,
        true1=total + sensitivity,
        noise0=noise,
        noise1=noise,
        sensitivity=sensitivity,
    )
    print(findings)


def _components(engine: str, values: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A mean's noisy values by what they are: the sum and the count."""
    out = {}
    for value in values:
        if engine == "smartnoise-sql":
            kind = value["name"].split("_", 1)[0]  # sum_<column>, count_<column>
        else:
            kind = {"Sum": "sum", "Count": "count"}[value["aggregate"]]
        out[kind] = value
    assert sorted(out) == ["count", "sum"], values
    return out


AVG_SQL = "SELECT AVG(body_mass_g) AS mean FROM df"
MEAN_OPENDP = {"aggregates": [{"op": "mean", "column": "body_mass_g", "as": "mean"}]}


@pytest.mark.parametrize("engine", ENGINES)
def test_means_are_as_private_and_as_noisy_as_claimed(engine, heavy_neighbours, make_user):
    """A mean is a noisy sum over a noisy count of the known values, and pays for both. Its
    releases hide the count's noise (a quarter of the variance), so each component's claimed
    scale is checked against its sensitivity and the charge; SmartNoise-SQL can also release
    the two noisy values as they are (``postprocess: false``, the same plan and charge), which
    lets each be checked like a SUM or a COUNT."""
    d0, d1 = heavy_neighbours
    sensitivity = sum_sensitivity(PENGUIN_METADATA, "body_mass_g")
    total, count = true_mass()
    heavy_total, heavy_count = total + sensitivity, count + 1
    sql = engine == "smartnoise-sql"
    releases = RELEASES if sql else OPENDP_RELEASES
    grant = (2 * releases * 2 * EPSILON + 10, 0.0)
    user = make_user(**{d0: grant, d1: grant})
    replies = release_many(user, (d0, d1), *request(engine, AVG_SQL, MEAN_OPENDP), releases)
    findings = Findings(f"{engine} mean", [])

    charged = charge(replies)
    parts = _components(engine, claimed_values(replies))
    claimed = {kind: claimed_noise(engine, value) for kind, value in parts.items()}
    sensitivities = {"sum": sensitivity, "count": count_sensitivity(PENGUIN_METADATA)}
    spent = laplace_epsilon([(sensitivities[k], parts[k]["scale"]) for k in ("sum", "count")])
    findings.add(
        f"scales sum {parts['sum']['scale']:.6g} count {parts['count']['scale']:.6g}: "
        f"epsilon {spent:.6g} (charged {charged})"
    )
    assert spent <= charged, findings

    on_d0, on_d1 = column(replies[d0]), column(replies[d1])
    # The true means differ by a quarter (SQL) to an eighth (OpenDP) of the noise, so this bound
    # stays far below the charge: honest, but the scale checks are what would catch a leak.
    lower_bound = empirical_epsilon_lower_bound(
        on_d0, on_d1, (total / count + heavy_total / heavy_count) / 2
    )
    findings.add(f"epsilon >= {lower_bound:.2f} (charged {charged})")
    assert lower_bound <= charged, findings
    check_releases(
        findings,
        on_d0,
        on_d1,
        true0=total / count,
        true1=heavy_total / heavy_count,
        noise0=ratio_noise(total, count, claimed["sum"], claimed["count"]),
        noise1=ratio_noise(heavy_total, heavy_count, claimed["sum"], claimed["count"]),
        sensitivity=None,  # a mean has none of its own; its true difference is known
    )
    print(findings)
    if not sql:
        return

    raw = release_many(
        user, (d0, d1), *request(engine, AVG_SQL, MEAN_OPENDP, postprocess=False), releases
    )
    assert charge(raw) == charged and claimed_values(raw) == list(parts.values())
    findings = Findings(f"{engine} AVG as noisy sum and count", [])
    bounds = []
    for kind, true0, true1 in (("sum", total, heavy_total), ("count", count, heavy_count)):
        name = parts[kind]["name"]
        raw0, raw1 = column(raw[d0], name), column(raw[d1], name)
        bounds.append(empirical_epsilon_lower_bound(raw0, raw1, true1))
        check_releases(
            findings,
            raw0,
            raw1,
            true0=true0,
            true1=true1,
            noise0=claimed[kind],
            noise1=claimed[kind],
            sensitivity=sensitivities[kind],
        )
    # released together, the two epsilons add up; so do lower bounds on them
    findings.add(f"epsilon >= {bounds[0]:.2f} + {bounds[1]:.2f} (charged {charged})")
    assert sum(bounds) <= charged, findings
    print(findings)


@pytest.mark.parametrize("engine", ENGINES)
def test_counts_per_species_are_as_private_and_as_noisy_as_claimed(
    engine, heavy_neighbours, make_user
):
    """Species are public keys: every release shows the three declared groups. The heavy
    penguin is a Gentoo, so only that group's count may move, by one."""
    d0, d1 = heavy_neighbours
    sql = engine == "smartnoise-sql"
    releases = RELEASES if sql else OPENDP_RELEASES
    grant = (releases * EPSILON + 10, 0.0)
    user = make_user(**{d0: grant, d1: grant})
    replies = release_many(
        user,
        (d0, d1),
        *request(
            engine,
            "SELECT species, COUNT(*) AS n FROM df GROUP BY species",
            {"group_by": ["species"], "aggregates": [{"op": "count", "as": "n"}]},
        ),
        releases,
    )
    findings = Findings(f"{engine} COUNT per species", [])

    charged = charge(replies)
    (value,) = claimed_values(replies)
    # A person is in one group: the vector of counts moves by at most max_ids in L1.
    sensitivity = count_sensitivity(PENGUIN_METADATA)
    assert laplace_epsilon([(sensitivity, value["scale"])]) <= charged, value
    noise = claimed_noise(engine, value)
    noise = rounded(noise) if sql else noise

    groups0, groups1 = per_group(replies[d0]), per_group(replies[d1])
    species = PENGUIN_METADATA["columns"]["species"]["categories"]
    assert sorted(groups0) == sorted(groups1) == sorted(species)
    assert all(len(groups0[s]) == len(groups1[s]) == releases for s in species)
    true_counts = PENGUINS.species.value_counts()
    for name in species:
        extra = int(name == HEAVY_PENGUIN["species"])
        true0 = int(true_counts[name])
        if extra:
            lower_bound = empirical_epsilon_lower_bound(groups0[name], groups1[name], true0 + 0.5)
            findings.add(f"{name}: epsilon >= {lower_bound:.2f} (charged {charged})")
            assert lower_bound <= charged, findings
        findings.add(name)
        check_releases(
            findings,
            groups0[name],
            groups1[name],
            true0=true0,
            true1=true0 + extra,
            noise0=noise,
            noise1=noise,
            sensitivity=sensitivity if extra else None,
        )
    print(findings)


def test_opendp_gaussian_sums_are_as_private_and_as_noisy_as_claimed(zcdp_neighbours, make_user):
    d0, d1 = zcdp_neighbours
    # the grant is (epsilon, delta); at delta' 1e-6, 300 releases of rho 1 need epsilon ~430
    grant = (1000.0, 1e-3)
    user = make_user(**{d0: grant, d1: grant})
    body = {"query": SUM_OPENDP, "mechanism": "gaussian", "rho": RHO}
    replies = release_many(user, (d0, d1), "opendp", body, OPENDP_RELEASES)
    on_d0, on_d1 = column(replies[d0]), column(replies[d1])
    findings = Findings("opendp Gaussian SUM", [])

    sensitivity = sum_sensitivity(PENGUIN_METADATA, "body_mass_g")
    total = true_mass()[0]
    charged = charge(replies, "rho")
    (value,) = claimed_values(replies)
    findings.add(
        f"sigma {value['scale']:.6g} (at least {sensitivity / math.sqrt(2 * charged):.6g})"
    )
    assert gaussian_rho([(sensitivity, value["scale"])]) <= charged, findings

    lower_bound = empirical_rho_lower_bound(on_d0, on_d1, total + sensitivity / 2)
    findings.add(f"rho >= {lower_bound:.2f} (charged {charged})")
    assert lower_bound <= charged, findings

    noise = claimed_noise("opendp", value)
    assert noise.kurtosis == 3.0, value
    check_releases(
        findings,
        on_d0,
        on_d1,
        true0=total,
        true1=total + sensitivity,
        noise0=noise,
        noise1=noise,
        sensitivity=sensitivity,
    )
    print(findings)


def test_smartnoise_sql_adds_laplace_noise_even_with_delta(heavy_neighbours, make_user):
    """SmartNoise-SQL can be set up to use Gaussian noise when given delta; this server's is not
    (every statistic gets Laplace noise, which needs no delta), so the Laplace checks above
    cover SQL queries with delta too. Should that change, Gaussian SQL releases need a check.
    Without groups to threshold, a delta given is not charged either."""
    d0, _ = heavy_neighbours
    user = make_user(**{d0: (10.0, 1e-3)})
    for query in (SUM_SQL, AVG_SQL, "SELECT COUNT(*) AS n FROM df"):
        noise = []
        for delta in (0.0, 1e-5):
            body = {"query": query, "epsilon": EPSILON, "delta": delta}
            reply = user.api.post(f"/datasets/{d0}/smartnoise-sql/cost", body)
            assert reply.status_code == 200, reply.text
            values = reply.json()["accuracy"]["noisy_values"]
            noise.append([(v["name"], v["epsilon"], v["scale"]) for v in values])
            assert reply.json()["cost"]["epsilon"] == sum(v["epsilon"] for v in values)
            assert reply.json()["cost"]["delta"] == 0.0
        assert noise[0] == noise[1], (query, noise)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_person_with_many_rows_counts_for_max_ids_rows(engine, id_neighbours, make_user):
    """The extra person owns 50 rows at the upper bound; the server keeps max_ids of them, so
    the true sums differ by max_ids x upper bound, the sensitivity."""
    (d0, d1), total = id_neighbours
    sql = engine == "smartnoise-sql"
    releases = RELEASES if sql else OPENDP_RELEASES
    grant = (releases * EPSILON + 10, 0.0)
    user = make_user(**{d0: grant, d1: grant})
    replies = release_many(
        user,
        (d0, d1),
        *request(
            engine,
            "SELECT SUM(x) AS total FROM df",
            {"aggregates": [{"op": "sum", "column": "x", "as": "total"}]},
        ),
        releases,
    )
    sensitivity = sum_sensitivity(IDS_METADATA, "x")
    _check_laplace_sum(
        f"{engine} SUM with max_ids 2", engine, replies, (d0, d1), total, sensitivity
    )
