"""OpenDP's exact integer noise samplers, for engines that add noise to counts themselves.

Both need only OpenDP's "contrib" feature, which the server switches on and never off
(accounting/conversion.py): so they can run on any thread while the DP libraries' thread
works, with no feature switched meanwhile.
"""

from __future__ import annotations

import functools
from typing import Any


def discrete_gaussian(sigma: float, size: int) -> list[int]:
    """``size`` draws of the discrete Gaussian of scale ``sigma``."""
    return list(_gaussian(float(sigma))([0] * int(size)))


def discrete_laplace(scale: float, size: int) -> list[int]:
    """``size`` draws of the discrete Laplace of scale ``scale``."""
    return list(_laplace(float(scale))([0] * int(size)))


def _contrib() -> Any:
    import opendp.prelude as dp
    from opendp.mod import GLOBAL_FEATURES

    if "contrib" not in GLOBAL_FEATURES:
        dp.enable_features("contrib")
    return dp


@functools.lru_cache(maxsize=256)
def _gaussian(sigma: float) -> Any:
    dp = _contrib()
    return dp.m.make_gaussian(
        dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int), scale=sigma
    )


@functools.lru_cache(maxsize=256)
def _laplace(scale: float) -> Any:
    dp = _contrib()
    return dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=scale
    )
