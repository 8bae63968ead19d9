"""The OpenDP engine: measurements built from metadata, calibrated like OpenDP, contrib only."""

from __future__ import annotations

import pandas as pd
import pytest
from opendp.accuracy import summarize_polars_measurement
from opendp.mod import GLOBAL_FEATURES, enable_features

from lomas_server.datasets import conform_to_metadata, to_arrow
from lomas_server.engines.engine_thread import EngineThread
from lomas_server.engines.opendp_calibration import resolve
from lomas_server.engines.opendp_compiler import Compiler
from lomas_server.engines.opendp_engine import Noise, OpenDPEngine
from lomas_server.engines.opendp_query import parse_opendp_query
from lomas_server.engines.smartnoise_sql import SmartnoiseSqlEngine
from lomas_server.errors import InvalidQuery
from lomas_server.metadata import DatasetMetadata
from tests.conftest import SAMPLE_DATA, sample_metadata

PENGUIN = DatasetMetadata.from_dict(sample_metadata("penguin"))
# with a column whose values are not public: its groups are thresholded
_banded = sample_metadata("penguin")
_banded["columns"]["bill_length_mm_band"] = {"type": "string", "categories": ["short", "long"]}
BANDED = DatasetMetadata.from_dict(_banded)


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
            Noise("laplace", 1.0),
        ),
        (
            {"group_by": ["bill_length_mm_band"], "aggregates": [{"op": "count"}]},
            Noise("laplace", 1.0, delta=1e-6),
        ),
    ],
)
def test_calibration_matches_opendps_own_search(query, noise):
    """Our one-step calibration lands on the scale OpenDP's generic search finds, or a hair below
    its noise (never above the budget: both are checked by OpenDP's privacy map)."""
    compiler = Compiler(BANDED, parse_opendp_query(query, BANDED), noise)
    enable_features("contrib")
    _, (built,) = compiler.build(compiler.frame(None), noise.budget)
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


def test_groups_of_free_text_need_delta_and_then_a_threshold(frame):
    """No bound on the number of groups is needed any more, and none is claimed: keys that are
    not public are released only above a noisy threshold, which needs delta."""
    metadata = sample_metadata("penguin")
    metadata["columns"]["note"] = {"type": "string"}  # free text: no categories, no cardinality
    parsed = DatasetMetadata.from_dict(metadata)
    query = parse_opendp_query({"group_by": ["note"], "aggregates": [{"op": "count"}]}, parsed)
    with pytest.raises(InvalidQuery, match="delta"):
        OpenDPEngine().plan("P", parsed, query, Noise("laplace", 1.0))
    engine = OpenDPEngine()
    plan = engine.plan("P", parsed, query, Noise("laplace", 1.0, delta=1e-6))
    notes = frame.assign(note=["rare"] + ["common"] * (len(frame) - 1))
    released = engine.execute(plan, parsed, lambda: to_arrow(notes, parsed))
    assert [row[0] for row in released.rows] == ["common"]  # one person's value never shows


def test_public_keys_release_exactly_the_declared_grid(frame):
    """Values outside the declaration (and NULL) are never shown; a declared value with no row
    is a group like any other."""
    rows = frame.copy()
    rows.loc[0, "species"] = "Emperor"
    rows = rows[rows["species"] != "Chinstrap"]
    engine = OpenDPEngine()
    for query in (
        {
            "group_by": ["species"],
            "aggregates": [{"op": "count"}, {"op": "sum", "column": "body_mass_g"}],
        },
        {"aggregates": [{"op": "histogram", "column": "species"}]},
    ):
        plan = engine.plan("P", PENGUIN, parse_opendp_query(query, PENGUIN), Noise("laplace", 1.0))
        released = engine.execute(plan, PENGUIN, lambda: to_arrow(rows, PENGUIN))
        assert [row[0] for row in released.rows] == ["Adelie", "Chinstrap", "Gentoo"]


def test_an_empty_public_group_does_not_show_by_equal_counts(frame):
    """OpenDP fills a missing group's statistics with noise that Polars evaluates once for
    all statistics of the same scale; released separately, two counts of an empty group
    differ as often as those of any group."""
    rows = frame[frame["species"] != "Chinstrap"]
    query = {
        "group_by": ["species"],
        "aggregates": [{"op": "count"}, {"op": "count", "column": "species", "as": "n2"}],
    }
    engine = OpenDPEngine()
    # scale 10 per count: both clamped to 0 about 28% of the time, equal otherwise rarely
    plan = engine.plan("P", PENGUIN, parse_opendp_query(query, PENGUIN), Noise("laplace", 0.2))
    equal = 0
    for _ in range(40):
        released = engine.execute(plan, PENGUIN, lambda: to_arrow(rows, PENGUIN))
        (chinstrap,) = [row for row in released.rows if row[0] == "Chinstrap"]
        equal += chinstrap[1] == chinstrap[2]
    assert equal < 25  # about 12 of 40; 40 of 40 when the noise is shared


def test_rows_of_one_person_are_truncated_to_max_ids():
    """A person owning 1,000 rows moves a count by max_ids at most, as on the SQL path."""
    metadata = DatasetMetadata.from_dict(
        {
            "max_ids": 2,
            "rows": 5000,
            "columns": {
                "pid": {"type": "int", "private_id": True},
                "kind": {"type": "string", "categories": ["a", "b"], "public_keys": True},
            },
        }
    )
    heavy = pd.DataFrame({"pid": [1] * 1000 + list(range(2, 102)), "kind": ["a"] * 1100})
    table = to_arrow(conform_to_metadata(heavy.astype(str), metadata), metadata)
    engine = OpenDPEngine()
    for query in (
        {"aggregates": [{"op": "count"}]},
        {"group_by": ["kind"], "aggregates": [{"op": "count"}]},
    ):
        plan = engine.plan(
            "P", metadata, parse_opendp_query(query, metadata), Noise("laplace", 50.0)
        )
        released = engine.execute(plan, metadata, lambda: table)
        count = released.rows[0][-1]
        assert abs(count - 102) <= 3, count  # 100 people with one row, one with two kept


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


def test_filters_on_timestamps_compare_exactly():
    """Dates in the accepted format filter OpenDP queries (they were always refused)."""
    metadata = DatasetMetadata.from_dict(
        {"row_privacy": True, "rows": 100, "columns": {"when": {"type": "datetime"}}}
    )
    rows = pd.DataFrame({"when": ["0001-01-01", "1999-12-31 23:59:59.999999", "2000-01-01", None]})
    table = to_arrow(conform_to_metadata(rows, metadata), metadata)
    engine = OpenDPEngine()
    for op, value, expected in [
        (">=", "2000-01-01", 1),
        ("<", "2000-01-01", 2),
        ("==", "1999-12-31 23:59:59.999999", 1),
        ("in", ["0001-01-01", "2000-01-01"], 2),
    ]:
        query = {
            "filters": [{"column": "when", "op": op, "value": value}],
            "aggregates": [{"op": "count"}],
        }
        plan = engine.plan(
            "W", metadata, parse_opendp_query(query, metadata), Noise("laplace", 1e5)
        )
        assert engine.execute(plan, metadata, lambda: table).rows == [[expected]], (op, value)
    with pytest.raises(InvalidQuery, match="YYYY-MM-DD"):
        parse_opendp_query(
            {
                "filters": [{"column": "when", "op": ">", "value": "01/01/2000"}],
                "aggregates": [{"op": "count"}],
            },
            metadata,
        )


def test_every_output_name_is_checked_and_each_owns_only_its_noisy_values():
    doubled = sample_metadata("penguin")
    doubled["columns"]["body__mass"] = doubled["columns"]["body_mass_g"]
    metadata = DatasetMetadata.from_dict(doubled)
    with pytest.raises(InvalidQuery, match="give the aggregate another name with 'as'"):
        parse_opendp_query({"aggregates": [{"op": "mean", "column": "body__mass"}]}, metadata)
    histogram = {"aggregates": [{"op": "histogram", "column": "species", "as": "species"}]}
    with pytest.raises(InvalidQuery, match="same name"):
        parse_opendp_query(histogram, PENGUIN)
    query = {"aggregates": [{"op": "count", "as": "a"}, {"op": "count", "as": "a_"}]}
    engine = OpenDPEngine()
    plan = engine.plan("P", PENGUIN, parse_opendp_query(query, PENGUIN), Noise("laplace", 1.0))
    by_column = {c["column"]: c for c in plan.columns}
    assert by_column["a"]["noisy_values"] == ["a__n"] and by_column["a"]["half_width"]
    assert by_column["a_"]["noisy_values"] == ["a___n"] and by_column["a_"]["half_width"]
