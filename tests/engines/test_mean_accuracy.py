"""A mean's stated half-width (half_width_times_count / n, delta method) covers its error at
least as often as the stated confidence, under the noise the plan says it adds: simulated
with the plan's own Laplace scales, for the worst case |mean| = the larger bound and for a
mean in the middle, on both engines."""

from __future__ import annotations

import numpy as np
import pytest

from lomas_server.engines.opendp_engine import Noise, OpenDPEngine
from lomas_server.engines.opendp_query import parse_opendp_query
from lomas_server.engines.smartnoise_sql import SmartnoiseSqlEngine
from lomas_server.metadata import DatasetMetadata
from tests.conftest import sample_metadata

PENGUIN = DatasetMetadata.from_dict(sample_metadata("penguin"))
LOW, HIGH = PENGUIN.columns["body_mass_g"].numeric_bounds()
DRAWS = 200_000


def _coverage(times_count: float, sum_scale: float, count_scale: float, n: int, mean: float):
    rng = np.random.default_rng(7)
    noisy_sum = n * mean + rng.laplace(0.0, sum_scale, DRAWS)
    noisy_count = n + rng.laplace(0.0, count_scale, DRAWS)
    error = np.abs(noisy_sum / noisy_count - mean)
    return float(np.mean(error <= times_count / n))


@pytest.fixture(scope="module")
def sql_mean():
    engine = SmartnoiseSqlEngine()
    plan = engine.plan("P", PENGUIN, "SELECT AVG(body_mass_g) AS m FROM df", 0.5, 0.0)
    engine.close()
    (column,) = plan.columns
    scales = {v.name: v.scale for v in plan.noisy_values}
    return column.half_width_times_count, scales["sum_body_mass_g"], scales["count_body_mass_g"]


@pytest.fixture(scope="module")
def opendp_mean():
    engine = OpenDPEngine()
    query = parse_opendp_query({"aggregates": [{"op": "mean", "column": "body_mass_g"}]}, PENGUIN)
    plan = engine.plan("P", PENGUIN, query, Noise("laplace", 0.5))
    engine.close()
    (column,) = plan.columns
    scales = {v["name"]: v["scale"] for v in plan.noisy_values}
    return (
        column["half_width_times_count"],
        scales["mean_body_mass_g__sum"],
        scales["mean_body_mass_g__n"],
    )


@pytest.mark.parametrize("engine", ["sql_mean", "opendp_mean"])
@pytest.mark.parametrize("n", [300, 3000])
@pytest.mark.parametrize("mean", [HIGH, (LOW + HIGH) / 2])
def test_the_stated_half_width_covers_the_mean(request, engine, n, mean):
    times_count, sum_scale, count_scale = request.getfixturevalue(engine)
    assert times_count > 0
    assert _coverage(times_count, sum_scale, count_scale, n, mean) >= 0.95
