"""The OpenDP engine: measurements built from metadata, calibrated like OpenDP, contrib only."""

from __future__ import annotations

import pandas as pd
import pytest
from opendp.accuracy import summarize_polars_measurement
from opendp.mod import GLOBAL_FEATURES, enable_features

from lomas_server.datasets import conform_to_metadata, to_arrow
from lomas_server.engines.engine_thread import EngineThread
from lomas_server.engines.opendp_engine import Noise, OpenDPEngine, _Compiler, resolve
from lomas_server.engines.opendp_query import parse_opendp_query
from lomas_server.engines.smartnoise_sql import SmartnoiseSqlEngine
from lomas_server.errors import InvalidQuery
from lomas_server.metadata import DatasetMetadata
from tests.conftest import SAMPLE_DATA, sample_metadata

PENGUIN = DatasetMetadata.from_dict(sample_metadata("penguin"))


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return conform_to_metadata(pd.read_csv(SAMPLE_DATA / "penguin.csv", dtype=str), PENGUIN)


@pytest.fixture(scope="module")
def rows(frame):
    return to_arrow(frame, PENGUIN)


@pytest.mark.parametrize(
    ("query", "noise"),
    [
        ({"aggregates": [{"op": "count"}]}, Noise("laplace", 0.7)),
        (
            {"aggregates": [{"op": "count"}, {"op": "sum", "column": "body_mass_g"}]},
            Noise("laplace", 1.3),
        ),
        ({"aggregates": [{"op": "count"}]}, Noise("gaussian", 0.2)),
        (
            {"group_by": ["species"], "aggregates": [{"op": "count"}]},
            Noise("laplace", 1.0, delta=1e-6),
        ),
    ],
)
def test_calibration_matches_opendps_own_search(query, noise):
    """Our one-step calibration lands on the scale OpenDP's generic search finds, or a hair below
    its noise (never above the budget: both are checked by OpenDP's privacy map)."""
    compiler = _Compiler(PENGUIN, parse_opendp_query(query, PENGUIN), noise)
    enable_features("contrib")
    _, built = compiler.build(compiler.frame(None), noise.budget)
    ours = summarize_polars_measurement(resolve(built), alpha=0.05).to_dicts()
    theirs = summarize_polars_measurement(built.resolve(), alpha=0.05).to_dicts()
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine["scale"] == pytest.approx(reference["scale"], rel=1e-6)


def test_only_contrib_is_on_even_after_smartnoise_and_stray_switches(rows):
    thread = EngineThread()
    smartnoise, opendp = SmartnoiseSqlEngine(thread=thread), OpenDPEngine(thread=thread)
    plan = smartnoise.plan("P", PENGUIN, "SELECT AVG(body_mass_g) AS m FROM df", 1.0, 0.0)
    smartnoise.execute(plan, PENGUIN, "v", lambda: rows)
    enable_features("floating-point", "honest-but-curious")  # as if something had left them on
    seen = []

    def spy():
        return rows

    query = parse_opendp_query({"aggregates": [{"op": "count"}]}, PENGUIN)
    opendp_plan = opendp.plan("P", PENGUIN, query, Noise("laplace", 1.0))
    thread.run(lambda: seen.append(set(GLOBAL_FEATURES)))
    opendp.execute(opendp_plan, PENGUIN, spy)
    thread.run(lambda: seen.append(set(GLOBAL_FEATURES)))
    assert seen == [{"contrib"}, {"contrib"}]
    thread.close()


def test_grouping_needs_a_bound_on_the_number_of_groups():
    metadata = sample_metadata("penguin")
    metadata["columns"]["note"] = {"type": "string"}  # free text: no categories, no cardinality
    parsed = DatasetMetadata.from_dict(metadata)
    query = parse_opendp_query({"group_by": ["note"], "aggregates": [{"op": "count"}]}, parsed)
    with pytest.raises(InvalidQuery, match="cardinality"):
        OpenDPEngine().plan("P", parsed, query, Noise("laplace", 1.0, delta=1e-6))


def test_nulls_are_left_out_of_sums_and_means(rows):
    """With a huge budget the released values are the exact ones, and NULLs must not count."""
    query = parse_opendp_query(
        {
            "aggregates": [
                {"op": "sum", "column": "body_mass_g"},
                {"op": "mean", "column": "body_mass_g"},
                {"op": "count", "column": "body_mass_g"},
            ]
        },
        PENGUIN,
    )
    engine = OpenDPEngine()
    plan = engine.plan("P", PENGUIN, query, Noise("laplace", 50_000.0))
    result = dict(
        zip(
            engine.execute(plan, PENGUIN, lambda: rows).columns,
            engine.execute(plan, PENGUIN, lambda: rows).rows[0],
            strict=True,
        )
    )
    truth = rows.to_pandas()["body_mass_g"].dropna()
    assert result["count_body_mass_g"] == pytest.approx(len(truth), abs=2)
    assert result["sum_body_mass_g"] == pytest.approx(truth.sum(), rel=1e-3)
    assert result["mean_body_mass_g"] == pytest.approx(truth.mean(), rel=1e-3)
