"""Remembered noise scales are the very scales SmartNoise-SQL's search finds."""

from __future__ import annotations

import pytest
from snsql.sql._mechanisms.gaussian import Gaussian
from snsql.sql._mechanisms.laplace import Laplace

from lomas_server.engines import noise_scales


@pytest.fixture(autouse=True)
def installed():
    noise_scales.remember_noise_scales()
    noise_scales._scales.clear()


def _searched(cls, **kwargs):
    """The scale found by SmartNoise-SQL's own search, bypassing the memo."""
    mechanism = cls.__new__(cls)
    original = cls._compute_noise_scale.__wrapped__
    cls._compute_noise_scale, saved = original, cls._compute_noise_scale
    try:
        mechanism.__init__(**kwargs)
    finally:
        cls._compute_noise_scale = saved
    return mechanism.scale


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (Laplace, {"epsilon": 0.7, "lower": 0.0, "upper": 250.0, "max_contrib": 1}),
        (Laplace, {"epsilon": 0.1, "lower": -5.0, "upper": 5.0, "max_contrib": 3}),
        (Gaussian, {"epsilon": 1.0, "delta": 1e-5, "lower": 0.0, "upper": 10.0, "max_contrib": 1}),
    ],
)
def test_remembered_scale_equals_the_searched_one(cls, kwargs):
    first = cls(**kwargs)
    assert len(noise_scales._scales) == 1
    second = cls(**kwargs)
    assert second.scale == first.scale == _searched(cls, **kwargs)


def test_different_parameters_get_different_scales():
    a = Laplace(0.5, lower=0.0, upper=10.0, max_contrib=1).scale
    b = Laplace(1.0, lower=0.0, upper=10.0, max_contrib=1).scale
    c = Laplace(0.5, lower=0.0, upper=20.0, max_contrib=1).scale
    d = Laplace(0.5, lower=0.0, upper=10.0, max_contrib=2).scale
    assert len({a, b, c, d}) == 4


def test_failures_are_not_remembered():
    for _ in range(2):
        with pytest.raises(ValueError, match="too large"):
            Laplace(1e-9, lower=0.0, upper=1e9, max_contrib=1)
    assert not noise_scales._scales
