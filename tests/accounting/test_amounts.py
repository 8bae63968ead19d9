"""Exact privacy amounts: no drift, rounding only ever in the data subject's favour."""

from __future__ import annotations

import math

import pytest

from lomas_server.accounting import Budget, PrivacyAmount


def test_ten_thousand_spends_of_a_tenth_sum_exactly():
    tenth = PrivacyAmount.cost(0.1, 0.0)
    total = PrivacyAmount.zero()
    for _ in range(10_000):
        total = total + tenth
    assert total == PrivacyAmount.budget(1000, 0)
    assert total.epsilon == 1000.0
    # the float sum drifts; the exact one does not
    assert sum([0.1] * 10_000) != 1000.0


def test_a_cap_is_never_passed_by_many_small_spends():
    budget = Budget(PrivacyAmount.budget(999.95, 0), PrivacyAmount.zero())
    tenth = PrivacyAmount.cost(0.1, 0)
    accepted = 0
    for _ in range(10_000):
        if budget.allows(tenth):
            budget = Budget(budget.initial, budget.spent + tenth)
            accepted += 1
    assert accepted == 9999
    assert budget.spent.fits_within(budget.initial)


def test_costs_round_up_and_budgets_round_down():
    third = 1 / 3
    assert PrivacyAmount.cost(third, 0).eps_units == 333_333_333_334
    assert PrivacyAmount.budget(third, 0).eps_units == 333_333_333_333
    assert PrivacyAmount.cost(0, 1e-20).delta_units == 1  # a tiny delta still costs something
    assert PrivacyAmount.budget(0, 1e-20).delta_units == 0


def test_float_noise_does_not_bump_a_cost_by_a_unit():
    assert PrivacyAmount.cost(0.1 + 0.2, 0) == PrivacyAmount.cost(0.3, 0)
    assert PrivacyAmount.cost(0, 1.5000000000000002e-05) == PrivacyAmount.cost(0, 1.5e-05)


def test_remaining_never_goes_negative():
    budget = Budget(PrivacyAmount.budget(1, 0), PrivacyAmount.cost(2, 0))
    assert budget.remaining == PrivacyAmount.zero()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, True, "abc"])
def test_non_numbers_are_refused(bad):
    with pytest.raises(ValueError):
        PrivacyAmount.cost(bad, 0)


def test_negative_amounts_are_refused():
    with pytest.raises(ValueError):
        PrivacyAmount.cost(-0.1, 0)
