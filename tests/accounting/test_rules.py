"""The accounting rules: every formula, the worked examples of docs/accounting.md, and
properties that must hold for any sequence of spends (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lomas_server.accounting import (
    BASIC,
    ZCDP,
    AccountingRule,
    MechanismLoss,
    PrivacyAmount,
    PrivacyLoss,
)
from lomas_server.accounting.conversion import epsilon_of_rho, rho_of_pure_epsilon, rho_within

DELTA_PRIME = 1e-6
basic, zcdp = AccountingRule(BASIC, DELTA_PRIME), AccountingRule(ZCDP, DELTA_PRIME)


# -- the formulas -------------------------------------------------------------------------------
def test_pure_dp_is_half_epsilon_squared_zcdp():
    # Bun & Steinke 2016, Proposition 1.4
    assert rho_of_pure_epsilon(0.1) == pytest.approx(0.005)
    assert rho_of_pure_epsilon(1.0) == 0.5


@pytest.mark.parametrize("rho", [0.001, 0.005, 0.1, 0.5, 2.0])
def test_conversion_is_at_least_as_tight_as_bun_steinke(rho):
    # Bun & Steinke 2016, Proposition 1.3: epsilon = rho + 2 sqrt(rho log(1/delta)) is valid;
    # OpenDP's conversion (Canonne, Kamath & Steinke 2020) is tighter, and never below rho.
    classical = rho + 2 * math.sqrt(rho * math.log(1 / DELTA_PRIME))
    converted = epsilon_of_rho(rho, DELTA_PRIME)
    assert rho <= converted <= classical


def test_basic_composition_sums_epsilons_and_deltas():
    # Dwork & Roth 2014, Theorem 3.16
    loss = PrivacyLoss.approx_dp([(0.5, 1e-6), (0.25, 0.0), (0.25, 2e-6)])
    assert basic.charge(loss) == PrivacyAmount.cost(1.0, 3e-6)


def test_basic_takes_an_engines_tighter_bound_when_it_has_one():
    loss = PrivacyLoss.approx_dp([(0.1, 0.0)] * 50, bound=(2.0, 1e-6))
    assert basic.charge(loss) == PrivacyAmount.cost(2.0, 1e-6)
    loose = PrivacyLoss.approx_dp([(0.1, 0.0)] * 5, bound=(2.0, 1e-6))
    assert basic.charge(loose) == PrivacyAmount.cost(0.5, 0.0)


def test_zcdp_composition_adds_rho_and_delta():
    # Bun & Steinke 2016, Lemma 2.3 (and Section 8 for the delta part)
    loss = PrivacyLoss([MechanismLoss("approx_dp", 1.0, 1e-7), MechanismLoss("zcdp", 0.25, 0.0)])
    assert zcdp.charge(loss) == PrivacyAmount.cost(0.5 + 0.25, 1e-7)


def test_a_gaussian_in_basic_mode_costs_its_conversion():
    loss = PrivacyLoss([MechanismLoss("zcdp", 0.1)])
    charged = basic.charge(loss)
    assert charged.epsilon == pytest.approx(epsilon_of_rho(0.1, DELTA_PRIME), rel=1e-9)
    assert charged.delta == pytest.approx(DELTA_PRIME)


# -- the worked examples (docs/accounting.md) ---------------------------------------------------
def test_worked_example_100_laplace_queries_at_a_tenth():
    loss = PrivacyLoss.approx_dp([(0.1, 0.0)])
    total_basic = PrivacyAmount.zero()
    total_zcdp = PrivacyAmount.zero()
    for _ in range(100):
        total_basic += basic.charge(loss)
        total_zcdp += zcdp.charge(loss)
    assert total_basic == PrivacyAmount.cost(10.0, 0.0)
    assert total_zcdp == PrivacyAmount.cost(0.5, 0.0)  # rho
    as_dp = zcdp.as_approx_dp(total_zcdp)
    assert as_dp.epsilon == pytest.approx(5.2215, abs=1e-4) and as_dp.delta == pytest.approx(1e-6)


def test_worked_example_100_gaussian_queries():
    loss = PrivacyLoss([MechanismLoss("zcdp", 0.005)])
    total_basic = sum((basic.charge(loss) for _ in range(100)), PrivacyAmount.zero())
    total_zcdp = sum((zcdp.charge(loss) for _ in range(100)), PrivacyAmount.zero())
    assert total_basic.epsilon == pytest.approx(
        42.9941, abs=1e-3
    ) and total_basic.delta == pytest.approx(1e-4)
    assert zcdp.as_approx_dp(total_zcdp).epsilon == pytest.approx(5.2215, abs=1e-4)


def test_worked_example_one_query_is_cheaper_in_basic_mode():
    one = PrivacyLoss.approx_dp([(1.0, 0.0)])
    assert basic.charge(one).epsilon == 1.0
    assert zcdp.as_approx_dp(zcdp.charge(one)).epsilon > 5  # rho 0.5 at delta 1e-6


def test_a_budget_becomes_the_largest_rho_that_converts_within_it():
    cap = zcdp.cap(PrivacyAmount.budget(10.0, 1e-5))
    assert epsilon_of_rho(cap.epsilon, DELTA_PRIME) <= 10.0
    assert epsilon_of_rho(cap.epsilon * 1.0001, DELTA_PRIME) > 10.0
    assert cap.delta == pytest.approx(9e-6)  # what is left for approximate mechanisms
    with pytest.raises(ValueError, match="conversion delta"):
        zcdp.check_budget(PrivacyAmount.budget(10.0, 1e-7))


# -- properties -----------------------------------------------------------------------------------
costs = st.lists(
    st.tuples(st.floats(0.0001, 3.0), st.sampled_from([0.0, 1e-9, 1e-7, 1e-6])),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(costs, st.floats(0.01, 50.0), st.sampled_from([0.0, 1e-6, 1e-5, 1e-3]))
def test_no_sequence_of_spends_passes_a_basic_cap(sequence, epsilon, delta):
    cap = PrivacyAmount.budget(epsilon, delta)
    spent = PrivacyAmount.zero()
    for e, d in sequence:
        cost = basic.charge(PrivacyLoss.approx_dp([(e, d)]))
        if (spent + cost).fits_within(cap):
            spent = spent + cost
        assert spent.fits_within(cap)
    assert spent.eps_units <= cap.eps_units and spent.delta_units <= cap.delta_units


@settings(max_examples=60, deadline=None)
@given(costs, st.floats(0.5, 30.0), st.sampled_from([1e-5, 1e-4, 1e-3]))
def test_no_sequence_of_spends_passes_a_zcdp_budget_stated_in_epsilon_delta(
    sequence, epsilon, delta
):
    stated = PrivacyAmount.budget(epsilon, delta)
    cap = zcdp.cap(stated)
    spent = PrivacyAmount.zero()
    for e, d in sequence:
        cost = zcdp.charge(PrivacyLoss.approx_dp([(e, d)]))
        if (spent + cost).fits_within(cap):
            spent = spent + cost
    guarantee = zcdp.as_approx_dp(spent)
    assert guarantee.epsilon <= epsilon * (1 + 1e-9) and guarantee.delta <= delta * (1 + 1e-9)


@settings(max_examples=60, deadline=None)
@given(st.floats(1e-4, 5.0), st.floats(1e-4, 5.0), st.sampled_from([1e-8, 1e-6, 1e-3]))
def test_conversion_is_monotone_in_rho(a, b, delta):
    low, high = sorted((a, b))
    assert epsilon_of_rho(low, delta) <= epsilon_of_rho(high, delta)


@settings(max_examples=40, deadline=None)
@given(st.floats(1e-3, 5.0), st.sampled_from([1e-8, 1e-6]), st.sampled_from([1e-4, 1e-2]))
def test_conversion_is_monotone_in_delta(rho, small, large):
    assert epsilon_of_rho(rho, large) <= epsilon_of_rho(rho, small)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.1, 20.0), st.floats(0.1, 20.0))
def test_rho_within_is_monotone_and_safe(a, b):
    low, high = sorted((a, b))
    assert rho_within(low, DELTA_PRIME) <= rho_within(high, DELTA_PRIME)
    assert epsilon_of_rho(rho_within(high, DELTA_PRIME), DELTA_PRIME) <= high


@given(st.lists(st.floats(0.0, 100.0), min_size=1, max_size=200))
def test_exact_arithmetic_sum_is_order_independent_and_never_below_the_real_sum(values):
    amounts = [PrivacyAmount.cost(v, 0.0) for v in values]
    forward = sum(amounts, PrivacyAmount.zero())
    backward = sum(reversed(amounts), PrivacyAmount.zero())
    assert forward == backward
    assert forward.eps_units >= math.fsum(values) * 10**12 - len(values)  # costs round up
