"""Group privacy: the per-row share a library gets, whose guarantee for a person's ``k`` rows
is within what the analyst pays (Dwork & Roth 2014, Lemma 2.2 and its approximate form)."""

from __future__ import annotations

import math

import pytest

from lomas_server.accounting.group_privacy import group_guarantee, per_row_share

EPSILONS = [1e-4, 0.01, 0.1, 0.3, 1.0, 2.5, 7.0, 10.0, 1000.0]
DELTAS = [0.0, 1e-15, 1e-9, 1e-6, 1e-5, 1e-3, 0.1]
ROWS = [1, 2, 3, 4, 5, 7, 10, 16, 100, 1000]


@pytest.mark.parametrize("k", ROWS)
def test_the_group_guarantee_of_the_share_never_exceeds_the_charge(k):
    for epsilon in EPSILONS:
        for delta in DELTAS:
            row_epsilon, row_delta = per_row_share(epsilon, delta, k)
            group_epsilon, group_delta = group_guarantee(row_epsilon, row_delta, k)
            assert group_epsilon <= epsilon, (epsilon, delta, k)
            assert group_delta <= delta, (epsilon, delta, k)


@pytest.mark.parametrize("k", ROWS)
def test_the_share_gives_away_nothing_but_rounding(k):
    """Within the charge, and as large as it can be: the guarantee is the charge up to a few
    units in the last place (where the share is not so small that it underflows)."""
    for epsilon in EPSILONS:
        for delta in DELTAS:
            row_epsilon, row_delta = per_row_share(epsilon, delta, k)
            group_epsilon, group_delta = group_guarantee(row_epsilon, row_delta, k)
            assert group_epsilon == pytest.approx(epsilon, rel=1e-12)
            if delta > 0 and row_delta > 1e-300:
                assert group_delta == pytest.approx(delta, rel=1e-12), (epsilon, delta, k)


@pytest.mark.parametrize(
    ("epsilon", "delta", "k", "row_epsilon", "row_delta"),
    [
        (3.0, 1e-6, 3, 1.0, 1e-6 / (3 * math.e**2)),
        (1.0, 1e-5, 2, 0.5, 1e-5 / (2 * math.exp(0.5))),
        (2.0, 0.0, 4, 0.5, 0.0),
        (0.1, 1e-9, 10, 0.01, 1e-9 / (10 * math.exp(0.09))),
    ],
)
def test_the_share_by_hand(epsilon, delta, k, row_epsilon, row_delta):
    """(epsilon/k, delta / (k e^((k-1) epsilon/k))): the worked numbers of the lemma."""
    share = per_row_share(epsilon, delta, k)
    assert share[0] == pytest.approx(row_epsilon, rel=1e-14)
    assert share[1] == pytest.approx(row_delta, rel=1e-14)
    assert share[0] < row_epsilon or share[0] == row_epsilon < epsilon  # rounded down


def test_one_row_per_person_is_the_charge_itself():
    for epsilon in EPSILONS:
        for delta in DELTAS:
            assert per_row_share(epsilon, delta, 1) == (epsilon, delta)
            assert group_guarantee(epsilon, delta, 1) == (epsilon, delta)


def test_pure_dp_stays_pure():
    for k in ROWS:
        assert per_row_share(1.0, 0.0, k)[1] == 0.0
        assert group_guarantee(0.5, 0.0, k)[1] == 0.0


def test_more_rows_per_person_give_each_row_less():
    shares = [per_row_share(2.0, 1e-6, k) for k in ROWS]
    assert all(a[0] > b[0] and a[1] > b[1] for a, b in zip(shares, shares[1:], strict=False))


def test_the_group_guarantee_is_the_lemma():
    assert group_guarantee(0.5, 1e-6, 3) == pytest.approx((1.5, 3 * math.exp(1.0) * 1e-6))
    # for approximate DP the delta grows faster than k: e^((k-1) epsilon)
    assert group_guarantee(1.0, 1e-6, 5)[1] == pytest.approx(5 * math.exp(4.0) * 1e-6)


@pytest.mark.parametrize("k", [0, -1])
def test_a_person_holds_at_least_one_row(k):
    with pytest.raises(ValueError, match="at least one row"):
        per_row_share(1.0, 1e-6, k)


def test_an_epsilon_too_large_for_any_delta_per_row_leaves_none_and_never_overflows():
    """e^((k-1) epsilon / k) past the largest float: the share has no delta (the synthesizer
    then refuses the request before anything is spent), and the guarantee says so."""
    row_epsilon, row_delta = per_row_share(1000.0, 1e-6, 4)
    assert row_epsilon == pytest.approx(250.0) and row_delta == 0.0
    assert group_guarantee(300.0, 1e-6, 4) == (1200.0, math.inf)
    assert group_guarantee(300.0, 0.0, 4) == (1200.0, 0.0)
