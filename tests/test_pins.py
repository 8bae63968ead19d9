"""The engine versions the project is built and tested with, and that they work together."""

from __future__ import annotations

from importlib.metadata import version

import pytest

PINS = {"smartnoise-sql": "1.0.10", "opendp": "0.14.2", "polars": "1.32.0"}


@pytest.mark.parametrize(("package", "expected"), sorted(PINS.items()))
def test_pinned_versions_are_installed(package, expected):
    assert version(package) == expected


def test_opendp_accepts_the_installed_polars():
    import opendp.prelude as dp
    import polars as pl

    dp.enable_features("contrib")
    context = dp.Context.compositor(
        data=pl.LazyFrame({"x": [1, 2, 3]}),
        privacy_unit=dp.unit_of(contributions=1),
        privacy_loss=dp.loss_of(epsilon=1.0),
        split_evenly_over=1,
    )
    assert context.query().select(pl.len().dp.noise()).release().collect().shape == (1, 1)
