"""The privacy tester for synthetic data (SmartNoise-Synth's MST and AIM, built by the server).

Over HTTP, against the real server: each synthesizer request on each neighbouring pair (a base,
and the base plus one adversarial person: NULLs, NaN and infinities, values far past the bounds,
undeclared categories, odd unicode, many rows for one id, a person alone in a declared group),
and on no rows, one row, and datasets whose every row lacks the modelled columns, must give the
same status and error word for word, the asked cost, and synthetic rows of the asked columns and
number whose every value is of the declared domain: no adversarial value (an undeclared category,
a huge number, NaN, odd unicode) can ever appear, and a column that cannot lack a value is
never NULL.

In process, through the real engine, what a fit measures (its estimator's calls recorded, the
real estimator run): the marginals' noise, summed as rho, converts to no more than the per-row
share of the charge (group privacy over ``max_ids``), the noisy counts are whole (OpenDP's
discrete noise, not the library's floating-point draws), and no estimation is told the exact
number of rows. And a fit takes about a second, so releases for an epsilon lower bound are few:
a person owning a thousand rows, all alone in a category the base leaves empty, may move the
synthetic share of that category only as much as ``max_ids`` of their rows can. At 20 fits per
dataset that bound can only catch a gross leak (the person's rows not bounded, a count released
without noise); the structural checks and the measured noise are where the synthesizers'
guarantee is checked.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from lomas_server.datasets import conformed_table
from lomas_server.engines.synth_engine import SynthEngine, SynthQuery
from lomas_server.metadata import DatasetMetadata
from tests.privacy.model_requests import (
    Request,
    answer_alike,
    register_all,
    synth_requests,
)
from tests.privacy.neighbours import METADATA, arrow_table, base_rows
from tests.privacy.noise_statistics import empirical_epsilon_lower_bound, zcdp_delta

# Each fit takes a second or more: the default run reads the people from CSV and the rows from
# Parquet, for MST; the thorough run the other way round, for AIM.
DEFAULT_SOURCES = {"people": ("csv",), "rows": ("parquet",)}
SLOW_SOURCES = {"people": ("parquet",), "rows": ("csv",)}


def _requests(synthesizer: str, columns: list[str]) -> dict[str, list[Request]]:
    out = {}
    for kind in METADATA:
        answered, *refused = synth_requests(kind, synthesizer)
        out[kind] = [Request("synth", {**answered.body, "columns": columns}), *refused]
    return out


def _check(capsys, what: str, tally, problems: list[str]) -> None:
    assert not problems, f"{len(problems)} pair(s) told apart:\n" + "\n".join(problems[:20])
    assert tally["answered"] > 0
    with capsys.disabled():
        print(
            f"\nprivacy tester [{what}]: {tally['releases']} requests over {tally['datasets']} "
            f"datasets, {tally['pairs']} pair comparisons ({tally['answered']} answered, "
            f"{tally['refused']} refused alike)"
        )


@pytest.fixture(scope="module")
def registered(admin, tmp_path_factory):
    # (the base with only 'level' missing matters to a request modelling it: the thorough run)
    small = ("no_rows", "one_row", "every_row_lacking")
    return register_all(admin, tmp_path_factory.mktemp("synth"), DEFAULT_SOURCES, small=small)


@pytest.fixture(scope="module")
def registered_thoroughly(admin, tmp_path_factory):
    return register_all(admin, tmp_path_factory.mktemp("synth-slow"), SLOW_SOURCES)


def test_mst_answers_neighbours_alike_with_values_of_the_declared_domain(
    registered, server, capsys
):
    # a nullable declared category (where the adversaries put undeclared ones) and an int in
    # bins (where they put huge, negative and NaN values)
    tally, problems = answer_alike(server.api, registered, _requests("mst", ["kind", "age"]))
    _check(capsys, "synth mst", tally, problems)


@pytest.mark.slow
def test_aim_answers_neighbours_alike_from_the_other_sources(registered_thoroughly, server, capsys):
    # a boolean and a non-nullable int with categories (AIM takes 2 to 5 seconds a fit), on
    # the datasets read from the other source, the base with only 'level' missing among them
    tally, problems = answer_alike(
        server.api, registered_thoroughly, _requests("aim", ["flag", "level"])
    )
    _check(capsys, "synth aim, other sources", tally, problems)


# -- what the synthesizer measures ----------------------------------------------------------------
CHARGE = (1.0, 1e-5)


@contextlib.contextmanager
def _estimations() -> Iterator[list[tuple[Any, list[Any]]]]:
    """Every call of mbi's estimator while a fit runs in this process: the total it was told
    (None: inferred from the noisy measurements) and the measurements. It records and calls the
    real estimator; nothing else changes."""
    import mbi.estimation as estimation

    real = estimation.mirror_descent
    calls: list[tuple[Any, list[Any]]] = []

    def recorded(domain: Any, loss_fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append((kwargs.get("known_total"), list(loss_fn)))
        return real(domain, loss_fn, *args, **kwargs)

    estimation.mirror_descent = recorded
    try:
        yield calls
    finally:
        estimation.mirror_descent = real


@pytest.mark.parametrize("synthesizer", ["mst", pytest.param("aim", marks=pytest.mark.slow)])
def test_synthesizer_measures_whole_counts_within_the_charge_and_is_never_told_the_total(
    synthesizer, capsys
):
    """The marginals a fit measures (each row is in one cell of a marginal: sensitivity 1) get
    noise whose rho, summed, converts (Canonne, Kamath & Steinke, worked out here) to no more
    than the per-row share of the charge; for MST the measurements are two thirds of its rho,
    the selection the last third. The noise is discrete (OpenDP's, in place of the library's
    floating-point draws): noisy counts stay whole. And no estimation is told the exact number
    of rows, which no measurement covers."""
    kind = "people"  # max_ids 2: the per-row share is what the fit gets
    metadata = DatasetMetadata.from_dict(METADATA[kind])
    table = conformed_table(arrow_table(base_rows(), kind), metadata)
    engine = SynthEngine()
    try:
        query = SynthQuery(synthesizer, ("kind", "flag", "level"), 20, 10)
        plan = engine.plan(metadata, query, *CHARGE)
        with _estimations() as calls, contextlib.redirect_stdout(io.StringIO()):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                engine.execute(plan, metadata, lambda: table, owner="privacy-tester")
    finally:
        engine.close()
    assert calls, "the fit ran no estimation"
    assert all(total is None for total, _ in calls), [total for total, _ in calls]
    measurements = calls[-1][1]  # the last estimation sees every measurement
    rho = sum(1 / (2 * m.stddev**2) for m in measurements)
    if synthesizer == "mst":
        rho *= 3 / 2
    delta = zcdp_delta(rho, plan.row_epsilon)
    whole = [m for m in measurements if synthesizer == "aim" or len(m.clique) == 2]
    with capsys.disabled():
        print(
            f"\nprivacy tester [synth {synthesizer}, measurements]: {len(measurements)} marginals, "
            f"rho {rho:.5g} -> delta {delta:.3g} at the row's epsilon {plan.row_epsilon:g} "
            f"(the row's delta {plan.row_delta:.3g})"
        )
    assert delta <= plan.row_delta * (1 + 1e-6)  # the search for the infimum errs high
    assert whole and all(
        np.array_equal(m.noisy_measurement, np.round(m.noisy_measurement)) for m in whole
    )
    assert 2 * plan.row_epsilon <= CHARGE[0]


# -- a person owning many rows, alone in a category ---------------------------------------------
EPSILON = 0.5  # charged: the most a detected leak must exceed
DELTA = 1e-5
RELEASES = 20  # per dataset; MST takes about a second a fit
SYNTHETIC_ROWS = 100
HEAVY_ROWS = 1000
# Without max_ids the person's 1000 rows would be most of the data (the base has about 120
# rows); bounded to two, the noisy count of 'c' (a standard deviation of about 40) rarely
# makes it half of the rows.
CUT = 0.5


def _share_of_c(engine: SynthEngine, metadata: DatasetMetadata, table: Any) -> float:
    query = SynthQuery("mst", ("kind", "flag"), SYNTHETIC_ROWS, 10)
    plan = engine.plan(metadata, query, EPSILON, DELTA)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the libraries' deprecation notes
        result = engine.execute(plan, metadata, lambda: table, owner="privacy-tester")
    kinds = [row[0] for row in result["data"]]
    return kinds.count("c") / len(kinds)


@pytest.mark.slow
def test_mst_hides_a_person_with_many_rows_alone_in_a_category(capsys):
    metadata = DatasetMetadata.from_dict(METADATA["people"])
    base = base_rows()
    heavy = {**base[0], "pid": 10**6, "kind": "c", "flag": True}
    tables = [
        conformed_table(arrow_table(rows, "people"), metadata)
        for rows in (base, base + [dict(heavy) for _ in range(HEAVY_ROWS)])
    ]
    engine = SynthEngine()
    try:
        shares: list[list[float]] = [[], []]
        for _ in range(RELEASES):
            for side, table in enumerate(tables):
                shares[side].append(_share_of_c(engine, metadata, table))
    finally:
        engine.close()
    bound = max(
        empirical_epsilon_lower_bound(shares[0], shares[1], CUT),
        empirical_epsilon_lower_bound(shares[1], shares[0], CUT),
    )
    with capsys.disabled():
        print(
            f"\nprivacy tester [synth mst, heavy person]: {RELEASES} fits each, share of 'c' "
            f"above {CUT}: {sum(s > CUT for s in shares[0])} / "
            f"{sum(s > CUT for s in shares[1])}, empirical epsilon >= {bound:.3f} "
            f"(charged {EPSILON})"
        )
    assert bound <= EPSILON


# -- the checks can fail -------------------------------------------------------------------------
def test_the_domain_check_flags_every_value_only_an_adversary_can_hold():
    from tests.privacy.model_requests import release_problem, synth_rows_problem
    from tests.privacy.neighbours import ODD_TEXT

    columns = ["kind", "flag", "level", "age"]
    request = Request("synth", {"columns": columns, "rows": 2, "epsilon": 1.0, "delta": 1e-5})
    good = [["a", None, 1, 0], [None, True, 3, 100]]
    assert synth_rows_problem("rows", request, {"columns": columns, "data": good}) is None
    for bad in (
        ["zz", True, 1, 5],  # an undeclared category
        [ODD_TEXT, True, 1, 5],
        ["a", 1, 1, 5],  # not a boolean
        ["a", True, None, 5],  # NULL where the column cannot lack a value
        ["a", True, True, 5],  # True == 1, but not the declared 1
        ["a", True, 4, 5],
        ["a", True, 1, 2**62],  # past the bounds
        ["a", True, 1, float("nan")],
        ["a", True, 1, 5.5],  # not an int
    ):
        result = {"columns": columns, "data": [good[0], bad]}
        assert synth_rows_problem("rows", request, result) is not None, bad
    assert synth_rows_problem("rows", request, {"columns": columns, "data": good[:1]})
    assert synth_rows_problem("rows", request, {"columns": columns[::-1], "data": good})
    reply = {"cost": {"epsilon": 1.0, "delta": 1e-5}, "result": {"columns": columns, "data": good}}
    names = ("D0", "D1")
    assert release_problem("rows", request, (200, reply), (200, reply), names) is None
    for other in (
        (400, {"error": "invalid_query", "message": "no"}),
        (500, {"error": "query_failed", "message": "failed"}),
        (200, {**reply, "cost": {"epsilon": 2.0, "delta": 1e-5}}),
    ):
        assert release_problem("rows", request, (200, reply), other, names) is not None
    refused = Request("synth", request.body, expect_refusal=True)
    error = {"error": "invalid_query", "message": "column 'note' on D0"}
    same = {"error": "invalid_query", "message": "column 'note' on D1"}
    assert release_problem("rows", refused, (400, error), (400, same), names) is None
    worded = {"error": "invalid_query", "message": "column 'age' on D1"}
    assert release_problem("rows", refused, (400, error), (400, worded), names) is not None
