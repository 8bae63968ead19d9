"""The SmartNoise-SQL engine: plans priced from metadata alone, execution, OpenDP feature hygiene."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pandas as pd
import pytest
import snsql
from opendp.mod import GLOBAL_FEATURES

from lomas_server.accounting import AccountingRule, PrivacyAmount
from lomas_server.datasets import conform_to_metadata, to_arrow
from lomas_server.engines.smartnoise_sql import SmartnoiseSqlEngine
from lomas_server.errors import InvalidQuery
from lomas_server.metadata import DatasetMetadata
from tests.conftest import SAMPLE_DATA, sample_metadata

PENGUIN = DatasetMetadata.from_dict(sample_metadata("penguin"))
TITANIC = DatasetMetadata.from_dict(sample_metadata("titanic"))


@pytest.fixture(scope="module")
def engine():
    engine = SmartnoiseSqlEngine()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return conform_to_metadata(pd.read_csv(SAMPLE_DATA / "penguin.csv", dtype=str), PENGUIN)


@pytest.fixture(scope="module")
def penguin_table(penguins):
    return to_arrow(penguins, PENGUIN)


def _run(engine, plan, frame, metadata=PENGUIN):
    table = frame if not isinstance(frame, pd.DataFrame) else to_arrow(frame, metadata)
    return engine.execute(plan, metadata, "v1", lambda: table)


@pytest.mark.parametrize(
    ("sql", "epsilon", "delta", "expected"),
    [
        ("SELECT COUNT(*) AS n FROM df", 0.5, 0.0, (0.5, 0.0)),
        ("SELECT AVG(body_mass_g) AS m FROM df", 0.5, 0.0, (1.0, 0.0)),  # SUM + COUNT
        ("SELECT COUNT(*) AS n, AVG(body_mass_g) AS m FROM df", 0.5, 0.0, (1.5, 0.0)),
        (
            "SELECT SUM(body_mass_g) AS s, AVG(body_mass_g) AS m FROM df",
            0.5,
            0.0,
            (1.0, 0.0),
        ),  # shared SUM
        (
            "SELECT VAR(bill_depth_mm) AS v FROM df",
            0.5,
            0.0,
            (1.5, 0.0),
        ),  # SUM, SUM of squares, COUNT
    ],
)
def test_costs_are_the_sum_of_the_mechanisms(engine, sql, epsilon, delta, expected):
    plan = engine.plan("PENGUIN", PENGUIN, sql, epsilon, delta)
    assert AccountingRule().charge(plan.loss) == PrivacyAmount.cost(*expected)


def test_cost_never_exceeds_smartnoises_own_odometer_and_skips_its_slack_delta(engine):
    sql = "SELECT AVG(body_mass_g) AS m FROM df"
    plan = engine.plan("PENGUIN", PENGUIN, sql, 0.5, 1e-5)
    reader = snsql.from_df(
        pd.DataFrame(columns=list(PENGUIN.columns)),
        privacy=snsql.Privacy(epsilon=0.5, delta=1e-5),
        metadata={"": {"": {"df": PENGUIN.smartnoise_table()}}},
    )
    odometer_eps, odometer_delta = reader.get_privacy_cost(sql)
    assert AccountingRule().charge(plan.loss).epsilon <= odometer_eps
    assert (
        AccountingRule().charge(plan.loss).delta == 0.0 < odometer_delta
    )  # pure mechanisms need no delta at all


def test_thresholded_query_costs_delta(engine):
    plan = engine.plan(
        "TITANIC", TITANIC, "SELECT Name, COUNT(*) AS n FROM df GROUP BY Name", 1.0, 1e-5
    )
    assert plan.thresholded
    assert AccountingRule().charge(plan.loss).epsilon == 1.0 and AccountingRule().charge(
        plan.loss
    ).delta == pytest.approx(1e-5)


def test_thresholding_without_delta_is_refused_before_spending(engine):
    with pytest.raises(InvalidQuery, match="delta"):
        engine.plan(
            "TITANIC", TITANIC, "SELECT Name, COUNT(*) AS n FROM df GROUP BY Name", 1.0, 0.0
        )
    # public keys need no threshold, and a query without groups none either: a delta given
    # anyway is not charged
    for sql in ("SELECT Sex, COUNT(*) AS n FROM df GROUP BY Sex", "SELECT COUNT(*) AS n FROM df"):
        for delta in (0.0, 1e-5):
            plan = engine.plan("TITANIC", TITANIC, sql, 1.0, delta)
            assert not plan.thresholded and AccountingRule().charge(plan.loss).delta == 0


def test_mechanism_that_cannot_be_built_is_refused_before_spending(engine):
    meta = DatasetMetadata.from_dict(
        {
            "max_ids": 1,
            "row_privacy": True,
            "columns": {"x": {"type": "float", "lower": 0.0, "upper": 1e12}},
        }
    )
    with pytest.raises(InvalidQuery, match="SmartNoise-SQL refused"):
        engine.plan("X", meta, "SELECT VAR(x) AS v FROM df", 0.01, 0.0)


def test_execute_releases_noisy_values_close_to_the_truth(engine, penguins):
    plan = engine.plan(
        "PENGUIN", PENGUIN, "SELECT species, COUNT(*) AS n FROM df GROUP BY species", 5.0, 0.0
    )
    result = _run(engine, plan, penguins)
    assert result.columns == ["species", "n"]
    counts = dict(result.rows)
    truth = penguins["species"].value_counts().to_dict()
    assert set(counts) == set(truth)
    assert all(abs(counts[k] - truth[k]) < 15 for k in truth)


def test_results_are_noisy(engine, penguins):
    plan = engine.plan("PENGUIN", PENGUIN, "SELECT AVG(body_mass_g) AS m FROM df", 0.5, 0.0)
    releases = {_run(engine, plan, penguins).rows[0][0] for _ in range(5)}
    assert len(releases) == 5


def test_floating_point_feature_is_off_after_every_call(engine, penguins):
    plan = engine.plan("PENGUIN", PENGUIN, "SELECT AVG(body_mass_g) AS m FROM df", 0.5, 0.0)
    assert "floating-point" not in GLOBAL_FEATURES
    _run(engine, plan, penguins)
    assert "floating-point" not in GLOBAL_FEATURES
    assert "honest-but-curious" not in GLOBAL_FEATURES


def test_a_changed_dataset_version_is_read_again(engine, penguins):
    plan = engine.plan("PENGUIN", PENGUIN, "SELECT COUNT(*) AS n FROM df", 10.0, 0.0)
    loads = []

    def frame():
        loads.append(1)
        return to_arrow(penguins, PENGUIN)

    engine.execute(plan, PENGUIN, "version-a", frame)
    engine.execute(plan, PENGUIN, "version-a", frame)
    engine.execute(plan, PENGUIN, "version-b", frame)
    assert len(loads) == 2


def test_sorting_a_column_with_nulls_is_a_real_data_dependent_failure(penguins):
    """Why the guard refuses ORDER BY on nullable columns: SmartNoise-SQL itself fails on some
    datasets (with a NULL group) and not on their neighbours (without one)."""
    query = "SELECT sex, COUNT(*) AS n FROM df GROUP BY sex ORDER BY sex"
    document = {"": {"": {"df": PENGUIN.smartnoise_table()}}}
    privacy = snsql.Privacy(epsilon=50.0, delta=0.0)
    without_nulls = penguins[penguins["sex"].notna()].reset_index(drop=True)
    assert snsql.from_df(without_nulls, privacy=privacy, metadata=document).execute(query)
    with pytest.raises(ValueError, match="sort"):
        snsql.from_df(penguins, privacy=privacy, metadata=document).execute(query)
    # the guarded engine refuses it for every dataset, before any spend
    with pytest.raises(InvalidQuery, match="NULLs"):
        SmartnoiseSqlEngine().plan("PENGUIN", PENGUIN, query, 1.0, 0.0)


def test_the_configured_duckdb_memory_limit_reaches_the_readers(penguin_table):
    from lomas_server.engines.smartnoise_sql import _open_reader

    reader = _open_reader(lambda: penguin_table, PENGUIN, 256 * 1024**2)
    (_, (limit,)) = reader.execute("SELECT current_setting('memory_limit')")
    assert limit == "256.0 MiB"
    default = _open_reader(lambda: penguin_table, PENGUIN)
    (_, (unlimited,)) = default.execute("SELECT current_setting('memory_limit')")
    assert unlimited != "256.0 MiB"


def test_a_plan_is_made_once_per_query_and_metadata_and_refusals_are_not_kept(engine):
    sql = "SELECT COUNT(*) AS n FROM df"
    first = engine.plan("PENGUIN", PENGUIN, sql, 1.0, 0.0)
    assert engine.plan("PENGUIN", PENGUIN, sql, 1.0, 0.0) is first
    assert engine.plan("PENGUIN", PENGUIN, sql, 2.0, 0.0) is not first
    other = DatasetMetadata.from_dict({**sample_metadata("penguin"), "max_ids": 2})
    # another contribution limit, another noise scale: the metadata is part of the key
    assert engine.plan("PENGUIN", other, sql, 1.0, 0.0).columns != first.columns
    for _ in range(2):
        with pytest.raises(InvalidQuery):
            engine.plan("PENGUIN", PENGUIN, "SELECT sex FROM df", 1.0, 0.0)


def test_a_column_scaled_from_one_aggregate_has_its_half_width_scaled(engine):
    sql = (
        "SELECT SUM(body_mass_g) AS s, SUM(body_mass_g) / 1000 AS kg, 2 * (COUNT(*) + 1) AS c2, "
        "COUNT(*) AS n, ABS(COUNT(*) - 3) AS a, AVG(body_mass_g) AS m, "
        "AVG(body_mass_g) * 2 + 1 AS m2, SUM(body_mass_g) + COUNT(*) AS mixed FROM df"
    )
    plan = engine.plan("PENGUIN", PENGUIN, sql, 1.0, 0.0)
    columns = {c.column: c for c in plan.columns}
    drawn = {v.name: v.half_width for v in plan.noisy_values}
    assert columns["kg"].half_width == pytest.approx(columns["s"].half_width / 1000)
    assert columns["a"].half_width == pytest.approx(drawn["count_star"])  # a decimal output
    assert columns["m2"].half_width_times_count == pytest.approx(
        columns["m"].half_width_times_count * 2
    )
    # whole-number outputs: a count is released as the nearest whole number, so the least
    # whole k >= w - 0.5; arithmetic on it is cut to a whole number, so the least k >= w
    assert columns["n"].half_width == math.ceil(drawn["count_star"] - 0.5)
    assert columns["c2"].half_width == math.ceil(2 * drawn["count_star"])
    # several noisy values: no half-width is stated
    assert columns["mixed"].half_width is None and columns["mixed"].half_width_times_count is None
    # a scaled value is not kept in its aggregate's range, which the numbers moved
    assert all(columns[c].kind is None for c in ("kg", "c2", "a", "m2", "mixed"))
    assert all(columns[c].lower is None is columns[c].upper for c in ("kg", "m2"))


@pytest.mark.parametrize("epsilon", [1.0, 3.33])
def test_whole_numbers_are_released_as_the_nearest_and_their_half_width_holds(
    engine, penguins, epsilon
):
    """A count was cut towards 0 (1.97 became 1): half a unit low on average, and a stated
    half-width under 1 held about half the time. Now the nearest whole number is released."""
    sql = "SELECT COUNT(*) AS n, 2 * (COUNT(*) + 1) AS c2 FROM df"
    plan = engine.plan("PENGUIN", PENGUIN, sql, epsilon, 0.0)
    widths = {c.column: c.half_width for c in plan.columns}
    truth = len(penguins)
    table = to_arrow(penguins, PENGUIN)
    errors, errors2 = [], []
    for _ in range(400):
        (row,) = engine.execute(plan, PENGUIN, "v1", lambda: table).rows
        errors.append(row[0] - truth)
        errors2.append(row[1] - 2 * (truth + 1))
    assert sum(abs(e) <= widths["n"] for e in errors) / len(errors) >= 0.93
    assert sum(abs(e) <= widths["c2"] for e in errors2) / len(errors2) >= 0.93
    assert abs(sum(errors) / len(errors)) < 0.25  # no longer half a unit low


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT Sex, AVG(survived) AS r FROM df GROUP BY Sex HAVING AVG(Survived) > 0.3",
        "SELECT t.Sex, AVG(t.Survived) FROM titanic AS t GROUP BY t.Sex ORDER BY AVG(Survived)",
        "SELECT t.Pclass, COUNT(*) AS n FROM df AS t GROUP BY t.Pclass ORDER BY t.Pclass DESC",
        "SELECT Sex, SUM(t.Age) AS a FROM df AS t GROUP BY Sex HAVING SUM(age) > 3",
    ],
)
def test_what_the_guard_accepts_in_having_and_order_by_runs(engine, sql):
    """HAVING and ORDER BY name outputs however the SELECT list spelled them; the engine
    must then run the query, not fail after the budget was reserved."""
    frame = conform_to_metadata(pd.read_csv(SAMPLE_DATA / "titanic.csv", dtype=str), TITANIC)
    plan = engine.plan("TITANIC", TITANIC, sql, 5.0, 0.0)
    assert _run(engine, plan, frame, TITANIC).rows


def test_rounded_values_are_numbers(engine, penguins):
    sql = "SELECT ROUND(AVG(body_mass_g), 2) AS m, ROUND(COUNT(*), 0) AS n FROM df"
    plan = engine.plan("PENGUIN", PENGUIN, sql, 1.0, 0.0)
    (row,) = _run(engine, plan, penguins).rows
    assert all(isinstance(value, float) for value in row)


def test_a_long_exact_aggregation_does_not_hold_up_another_analysts_query(penguin_table):
    """Alice's rows take long to come (a big first load, a long scan): Bob's query on another
    dataset is released meanwhile, and Alice's once hers are there."""
    engine = SmartnoiseSqlEngine()
    sql = "SELECT COUNT(*) AS n FROM df"
    gate = threading.Event()
    alice: list[Any] = []

    def slow_rows():
        gate.wait(30)
        return penguin_table

    try:
        plan = engine.plan("SLOW", PENGUIN, sql, 1.0, 0.0, scope="alice")
        caller = threading.Thread(
            target=lambda: alice.append(
                engine.execute(plan, PENGUIN, "v1", slow_rows, owner="alice")
            )
        )
        caller.start()
        time.sleep(0.2)  # alice's scan is waiting for its rows
        bob_plan = engine.plan("PENGUIN", PENGUIN, sql, 1.0, 0.0, scope="bob")
        released = engine.execute(bob_plan, PENGUIN, "v1", lambda: penguin_table, owner="bob")
        assert released.columns == ["n"] and alice == []
        gate.set()
        caller.join(30)
        assert alice and alice[0].columns == ["n"]
    finally:
        gate.set()
        engine.close()


def test_smartnoise_gets_only_the_exact_aggregates_of_the_statement_that_was_run(engine):
    from lomas_server.engines.duckdb_reader import ExactAggregates

    plan = engine.plan("PENGUIN", PENGUIN, "SELECT COUNT(*) AS n FROM df", 1.0, 0.0)
    assert plan.duckdb_sql.upper().startswith("SELECT")
    rows = ExactAggregates(plan.duckdb_sql, [("count_star",), (3,)])
    assert rows.execute(plan.duckdb_sql) == [("count_star",), (3,)]
    with pytest.raises(RuntimeError, match="differs"):
        rows.execute(plan.duckdb_sql + " LIMIT 1")


def test_every_database_of_a_parquet_scan_has_the_scans_settings(tmp_path):
    """Concurrent queries on one dataset run on databases of their own; each must carry the
    settings that keep NaN clamped (statistics propagation off), not only the first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lomas_server.datasets import LocalFileSource
    from lomas_server.datasets.parquet_scan import plan_scan
    from lomas_server.engines.duckdb_reader import DuckDBReader

    path = tmp_path / "penguin.parquet"
    pq.write_table(
        pa.Table.from_pandas(
            pd.read_csv(SAMPLE_DATA / "penguin.csv").head(20), preserve_index=False
        ),
        path,
    )
    reader = DuckDBReader(plan_scan(LocalFileSource(path), PENGUIN), memory_limit_bytes=2**28)
    cursors = [reader._new_connection() for _ in range(2)]
    for cursor in cursors:
        (disabled,) = cursor.execute("SELECT current_setting('disabled_optimizers')").fetchone()
        assert "statistics_propagation" in disabled
        (limit,) = cursor.execute("SELECT current_setting('memory_limit')").fetchone()
        assert limit == "256.0 MiB"
        assert cursor.execute("SELECT COUNT(*) FROM df").fetchone() == (20,)


def test_queries_that_spill_to_disk_side_by_side_both_run():
    """DuckDB refuses to set its spill folder again while something is spilled: a second
    query on the same dataset must run while the first spills, each with the whole limit."""
    import numpy as np
    import pyarrow as pa

    from lomas_server.engines.duckdb_reader import DuckDBReader

    rows = 1_000_000
    rng = np.random.default_rng(1)
    table = pa.table(
        {
            "g": pa.array([f"k{i}" for i in rng.integers(0, rows, rows)]),
            "x": rng.integers(0, 1000, rows),
        }
    )
    reader = DuckDBReader(table, memory_limit_bytes=40 * 2**20, threads=1)
    spilling = "SELECT COUNT(*), SUM(s) FROM (SELECT g, SUM(x) AS s FROM df GROUP BY g) AS t"
    outcomes: list[Any] = []

    def run() -> None:
        try:
            outcomes.append(reader.execute(spilling)[1])
        except Exception as err:  # recorded for the assertion below
            outcomes.append(err)

    callers = [threading.Thread(target=run) for _ in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)
    assert len(outcomes) == 3 and len(set(outcomes)) == 1, outcomes
    assert isinstance(outcomes[0], tuple)
