"""The synthetic-data engine: planned from metadata alone, charged (epsilon, delta), fitted at
the per-row share of it with OpenDP's discrete Gaussian and the accounting's own conversion,
and never failing on what the data holds (no rows, one row, many rows per person)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from opendp.mod import GLOBAL_FEATURES, disable_features, enable_features

from lomas_server.accounting import PrivacyLoss
from lomas_server.accounting.conversion import rho_within
from lomas_server.accounting.group_privacy import group_guarantee, per_row_share
from lomas_server.datasets import conform_to_metadata, to_arrow
from lomas_server.engines import synthesizers
from lomas_server.engines.person_rows import person_rows
from lomas_server.engines.synth_engine import SynthEngine, SynthQuery
from lomas_server.errors import InvalidQuery
from lomas_server.metadata import DatasetMetadata
from tests.conftest import SAMPLE_DATA, sample_metadata

PENGUIN = DatasetMetadata.from_dict(sample_metadata("penguin"))
ROWS_PER_PERSON = 3
PEOPLE_DOCUMENT = {
    "max_ids": ROWS_PER_PERSON,
    "row_privacy": False,
    "columns": {
        "pid": {"type": "int", "private_id": True, "nullable": False},
        "kind": {"type": "string", "categories": ["a", "b"], "nullable": False},
        "level": {"type": "int", "lower": 1, "upper": 3, "nullable": False},
        "x": {"type": "float", "lower": 0.0, "upper": 10.0},
    },
}
PEOPLE = DatasetMetadata.from_dict(PEOPLE_DOCUMENT)


def people_frame(people: int = 150, most: int = 6, seed: int = 5) -> pd.DataFrame:
    """Each of ``people`` persons owns 1 to ``most`` rows; kind and level go together."""
    rng = np.random.default_rng(seed)
    owners = np.repeat(np.arange(people), rng.integers(1, most + 1, people))
    kind = rng.choice(["a", "b"], len(owners))
    level = np.where(kind == "a", 1, 3)
    frame = pd.DataFrame(
        {"pid": owners, "kind": kind, "level": level, "x": rng.uniform(0, 10, len(owners))}
    )
    return conform_to_metadata(frame.astype(str), PEOPLE)


@pytest.fixture(scope="module")
def penguin_rows():
    frame = conform_to_metadata(pd.read_csv(SAMPLE_DATA / "penguin.csv", dtype=str), PENGUIN)
    return to_arrow(frame, PENGUIN)


@pytest.fixture(scope="module")
def people_rows():
    return to_arrow(people_frame(), PEOPLE)


@pytest.fixture(scope="module")
def engine():
    synth = SynthEngine()
    yield synth
    synth.close()


@pytest.fixture
def fitted(monkeypatch):
    """Every synthesizer the engine builds, as built (a spy: the real one is returned)."""
    built = []
    new = synthesizers._new

    def spy(name, epsilon, delta):
        synthesizer = new(name, epsilon, delta)
        built.append(synthesizer)
        return synthesizer

    monkeypatch.setattr(synthesizers, "_new", spy)
    return built


@pytest.fixture
def only_contrib():
    """OpenDP's process-wide features as the server keeps them: "contrib", nothing else."""
    others = [f for f in GLOBAL_FEATURES if f != "contrib"]
    if others:
        disable_features(*others)
    enable_features("contrib")


def _query(synthesizer="mst", columns=("kind", "level"), rows=40, bins=10) -> SynthQuery:
    return SynthQuery(synthesizer, tuple(columns), rows, bins)


# -- planning: from metadata alone ---------------------------------------------------------------
def test_the_charge_is_what_was_asked_and_the_fit_gets_the_per_row_share(engine):
    plan = engine.plan(PEOPLE, _query(), 3.0, 1e-5)
    assert plan.loss == PrivacyLoss.approx_dp([(3.0, 1e-5)])
    assert (plan.epsilon, plan.delta) == (3.0, 1e-5)
    assert plan.rows_per_person == ROWS_PER_PERSON
    assert (plan.row_epsilon, plan.row_delta) == per_row_share(3.0, 1e-5, ROWS_PER_PERSON)
    assert plan.row_epsilon == pytest.approx(1.0)
    assert plan.row_delta == pytest.approx(1e-5 / (3 * math.exp(2.0)))
    group_epsilon, group_delta = group_guarantee(plan.row_epsilon, plan.row_delta, 3)
    assert group_epsilon <= 3.0 and group_delta <= 1e-5


def test_one_row_per_person_gives_the_fit_the_whole_charge(engine):
    plan = engine.plan(PENGUIN, _query(columns=("species", "sex")), 2.0, 1e-6)
    assert (plan.row_epsilon, plan.row_delta) == (2.0, 1e-6)


def test_the_plan_describes_the_public_domain(engine):
    plan = engine.plan(
        PENGUIN, _query("aim", ("species", "bill_length_mm", "sex"), bins=5), 1, 1e-6
    )
    assert plan.query.as_dict() == {
        "synthesizer": "aim",
        "columns": ["species", "bill_length_mm", "sex"],
        "rows": 40,
        "bins": 5,
    }
    described = plan.described()
    assert described["synthesizer"] == "aim" and described["rows_per_person"] == 1
    assert described["purpose"] == synthesizers.PURPOSE["aim"]
    assert described["domain"] == [
        {"column": "species", "values": 3, "nullable": False},
        {"column": "bill_length_mm", "bins": 5, "nullable": True},
        {"column": "sex", "values": 2, "nullable": True},
    ]


@pytest.mark.parametrize(
    ("query", "epsilon", "delta", "metadata", "says"),
    [
        (_query("gan"), 1.0, 1e-6, PEOPLE, "unknown synthesizer 'gan'; choose one of aim, mst"),
        (_query(), 1.0, 0.0, PEOPLE, "needs 'delta' above 0"),
        (_query(columns=("kind", "kind")), 1.0, 1e-6, PEOPLE, "'kind' is named twice"),
        (_query(columns=("kind",)), 1.0, 1e-6, PEOPLE, "name at least two 'columns'"),
        (_query("aim", ("kind",)), 1.0, 1e-6, PEOPLE, "name at least two 'columns'"),
        (_query(columns=("kind", "pid")), 1.0, 1e-6, PEOPLE, "'pid' identifies people"),
        (_query(columns=("kind", "nope")), 1.0, 1e-6, PEOPLE, "no column 'nope'"),
        (
            _query("aim", ("bill_length_mm", "bill_depth_mm"), bins=100),
            1.0,
            1e-6,
            PENGUIN,
            "aim models pairs of columns with at most 10000 value combinations",
        ),
        (
            _query(),
            1000.0,
            1e-6,
            DatasetMetadata.from_dict({**PEOPLE_DOCUMENT, "max_ids": 4}),
            "leaves each row no 'delta'",
        ),
    ],
)
def test_what_no_fit_could_take_is_refused_at_planning(
    engine, query, epsilon, delta, metadata, says
):
    """Each of these once failed only when fitted, after the budget was reserved (a single
    column, an AIM workload with no pair small enough, a per-row delta of 0), or is refused
    by design; planning reads no data, so each refusal costs nothing."""
    with pytest.raises(InvalidQuery) as refused:
        engine.plan(metadata, query, epsilon, delta)
    assert says in refused.value.message


def test_aim_takes_the_pairs_small_enough_and_mst_any(engine):
    wide = ("bill_length_mm", "bill_depth_mm", "species")  # 101 x 101 codes, but x 3 fits
    assert engine.plan(PENGUIN, _query("aim", wide, bins=100), 1.0, 1e-6)
    assert engine.plan(PENGUIN, _query("mst", wide[:2], bins=100), 1.0, 1e-6)


# -- the fit -------------------------------------------------------------------------------------
def test_mst_is_fitted_at_the_per_row_share_with_integer_noise_and_no_exact_total(
    engine, people_rows, fitted, monkeypatch, only_contrib
):
    """Three rows per person: the synthesizer gets (epsilon/3, its delta share); rho is the
    accounting's conversion of that share; every noisy count is a discrete Gaussian draw at the
    scale MST derives from that rho; the estimator is never told the exact number of rows."""
    synthesizers._install_safe_noise()
    import snsynth.mst.mst as mst

    conversions, draws, totals = [], [], []
    convert, noise = mst.cdp_rho, synthesizers.discrete_gaussian
    estimation = mst.estimation._module  # mbi's, under the server's wrapper

    def spy_rho(epsilon, delta, *args):
        rho = convert(epsilon, delta, *args)
        conversions.append((epsilon, delta, rho))
        return rho

    def spy_noise(sigma, size):
        values = noise(sigma, size)
        draws.append((sigma, values))
        return values

    def spy_estimate(*args, **kwargs):
        totals.append(kwargs.get("known_total"))
        return mirror_descent(*args, **kwargs)

    mirror_descent = estimation.mirror_descent
    monkeypatch.setattr(mst, "cdp_rho", spy_rho)
    monkeypatch.setattr(synthesizers, "discrete_gaussian", spy_noise)
    monkeypatch.setattr(estimation, "mirror_descent", spy_estimate)

    plan = engine.plan(PEOPLE, _query(columns=("kind", "x")), 3.0, 1e-5)
    result = engine.execute(plan, PEOPLE, lambda: people_rows, owner="test")

    (synthesizer,) = fitted
    assert (synthesizer.epsilon, synthesizer.delta) == (plan.row_epsilon, plan.row_delta)
    ((epsilon, delta, rho),) = conversions
    assert (epsilon, delta) == (plan.row_epsilon, plan.row_delta)
    assert rho == rho_within(plan.row_epsilon, plan.row_delta)
    # MST's first round: each column's counts at sigma sqrt(3 / (2 rho)) per unit weight
    first = math.sqrt(3 / (2 * rho)) * math.sqrt(2)
    assert draws and draws[0][0] == pytest.approx(first)
    assert all(isinstance(v, int) for _, values in draws for v in values)
    assert totals and totals == [None] * len(totals)
    assert result["columns"] == ["kind", "x"] and len(result["data"]) == 40
    assert set(GLOBAL_FEATURES) == {"contrib"}


def test_aim_is_fitted_at_the_rho_of_the_per_row_share(engine, people_rows, fitted, only_contrib):
    plan = engine.plan(PEOPLE, _query("aim", ("kind", "level"), rows=30), 1.5, 1e-6)
    result = engine.execute(plan, PEOPLE, lambda: people_rows, owner="test")
    (synthesizer,) = fitted
    assert synthesizer.epsilon == plan.row_epsilon == pytest.approx(0.5)
    assert synthesizer.rho == rho_within(plan.row_epsilon, plan.row_delta)
    assert len(result["data"]) == 30
    assert {tuple(row) for row in result["data"]} <= {
        (k, level) for k in ("a", "b") for level in (1, 2, 3)
    }
    assert set(GLOBAL_FEATURES) == {"contrib"}


def test_the_library_can_switch_no_opendp_feature_on():
    synthesizers._install_safe_noise()
    import snsynth.transform.standard as standard
    import snsynth.utils as utils

    for module in (utils, standard):
        with pytest.raises(RuntimeError, match="tried to switch OpenDP features"):
            module.enable_features("floating-point")
    with pytest.raises(RuntimeError):  # the library's own noise would switch one on
        utils.gaussian_noise(1.0)
    assert "floating-point" not in GLOBAL_FEATURES


@pytest.mark.parametrize("count", [0, 1])
def test_no_rows_or_one_row_never_fail_a_fit(engine, count, only_contrib):
    frame = people_frame().iloc[:count]
    rows = to_arrow(frame, PEOPLE)
    plan = engine.plan(PEOPLE, _query(columns=("kind", "x"), rows=25), 1.0, 1e-6)
    result = engine.execute(plan, PEOPLE, lambda: rows, owner="test")
    assert len(result["data"]) == 25
    assert all(k in ("a", "b") for k, _ in result["data"])
    assert all(x is None or 0.0 <= x <= 10.0 for _, x in result["data"])
    assert set(GLOBAL_FEATURES) == {"contrib"}


def test_the_rows_asked_for_are_sampled_whatever_the_data_holds(engine, penguin_rows):
    plan = engine.plan(PENGUIN, _query(columns=("species", "island"), rows=7), 5.0, 1e-6)
    result = engine.execute(plan, PENGUIN, lambda: penguin_rows, owner="test")
    assert result["columns"] == ["species", "island"] and len(result["data"]) == 7
    assert all(
        s in ("Adelie", "Chinstrap", "Gentoo") and i in ("Torgersen", "Biscoe", "Dream")
        for s, i in result["data"]
    )


# -- rows per person -----------------------------------------------------------------------------
def test_each_person_keeps_at_most_max_ids_rows():
    frame = people_frame()
    table = to_arrow(frame, PEOPLE)
    counts = frame.groupby("pid").size()
    expected = int(counts.clip(upper=ROWS_PER_PERSON).sum())
    kept = person_rows(table, PEOPLE, ["pid", "x"])
    assert len(kept) == expected
    assert kept.groupby("pid").size().max() == ROWS_PER_PERSON
    # those with no more rows than max_ids keep every one of them
    few = counts[counts <= ROWS_PER_PERSON].index
    mine = frame[frame["pid"].isin(few)]["x"].sort_values().tolist()
    assert kept[kept["pid"].isin(few)]["x"].sort_values().tolist() == mine


def test_the_rows_kept_are_drawn_at_random():
    frame = people_frame()
    table = to_arrow(frame, PEOPLE)
    busiest = int(frame.groupby("pid").size().idxmax())
    draws = set()
    for _ in range(20):
        kept = person_rows(table, PEOPLE, ["pid", "x"])
        draws.add(tuple(sorted(kept[kept["pid"] == busiest]["x"])))
    assert len(draws) > 1


def test_only_the_columns_asked_for_come_back():
    table = to_arrow(people_frame(), PEOPLE)
    assert list(person_rows(table, PEOPLE, ["x", "kind"]).columns) == ["x", "kind"]


def test_under_row_privacy_every_row_is_kept():
    metadata = DatasetMetadata.from_dict({**sample_metadata("penguin"), "max_ids": 2})
    frame = conform_to_metadata(pd.read_csv(SAMPLE_DATA / "penguin.csv", dtype=str), metadata)
    kept = person_rows(to_arrow(frame, metadata), metadata, ["species"])
    assert len(kept) == len(frame) == 344
