"""Conversions between zero-concentrated DP (rho) and approximate DP (epsilon, delta).

- pure epsilon-DP implies (epsilon^2 / 2)-zCDP (Bun & Steinke 2016, Proposition 1.4);
- an (epsilon, delta)-DP mechanism is delta-approximately (epsilon^2 / 2)-zCDP (Bun & Steinke
  2016, Section 8, approximate zCDP);
- rho-zCDP implies (epsilon, delta')-DP for every delta' > 0; we use OpenDP's conversion
  (``make_zCDP_to_approxDP``, the bound of Canonne, Kamath & Steinke 2020), tighter than
  Bun & Steinke's rho + 2 sqrt(rho log(1/delta')). It is computed on an OpenDP Gaussian
  measurement whose privacy map is rho; OpenDP rounds rho up, so a conversion never
  understates epsilon.

See docs/accounting.md for the worked examples that the tests check.
"""

from __future__ import annotations

import math
from functools import lru_cache

RHO_SEARCH_STEPS = 200


def rho_of_pure_epsilon(epsilon: float) -> float:
    """Bun & Steinke 2016, Proposition 1.4."""
    return epsilon * epsilon / 2.0


@lru_cache(maxsize=4096)
def epsilon_of_rho(rho: float, delta: float) -> float:
    """The epsilon at ``delta`` of rho-zCDP, by OpenDP's conversion."""
    if rho <= 0:
        return 0.0
    if not 0 < delta < 1:
        raise ValueError("the conversion delta must be in (0, 1)")
    import opendp.prelude as dp
    from opendp.mod import GLOBAL_FEATURES

    if "contrib" not in GLOBAL_FEATURES:
        # "contrib" is the one feature the server always runs with; it is switched on and left
        # on, never off: another thread may be drawing OpenDP noise meanwhile.
        dp.enable_features("contrib")
    gaussian = dp.m.make_gaussian(
        dp.atom_domain(T=float, nan=False),
        dp.absolute_distance(T=float),
        scale=1.0 / math.sqrt(2.0 * rho),
    )
    profile = dp.c.make_zCDP_to_approxDP(gaussian).map(1.0)
    return float(profile.epsilon(delta))


@lru_cache(maxsize=4096)
def rho_within(epsilon: float, delta: float) -> float:
    """The largest rho whose conversion at ``delta`` stays within ``epsilon``.

    Found by bisection on ``epsilon_of_rho``, which increases with rho; the answer errs low, so
    a budget converted to rho never grants more than the (epsilon, delta) the admin wrote.
    """
    if epsilon <= 0:
        return 0.0
    low, high = 0.0, max(epsilon, 1.0)
    while epsilon_of_rho(high, delta) <= epsilon:
        high *= 2.0
    for _ in range(RHO_SEARCH_STEPS):
        middle = (low + high) / 2.0
        if middle in (low, high):
            break
        if epsilon_of_rho(middle, delta) <= epsilon:
            low = middle
        else:
            high = middle
    return low
