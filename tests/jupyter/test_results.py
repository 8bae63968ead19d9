"""The typed results, built from replies shaped as the server words them (service/analyst.py);
tests/jupyter/test_client.py gets the same types from the real server."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pandas as pd
import pytest

from lomas_jupyter import Budget, DatasetInfo, Estimate, LastQuery, Metadata, QueryRecord, Release
from lomas_jupyter._archive import archive_records, history_frame

BUDGET = {
    "initial": {"epsilon": 5.0, "delta": 1e-4},
    "spent": {"epsilon": 1.5, "delta": 0.0},
    "remaining": {"epsilon": 3.5, "delta": 1e-4},
    "accounting": {"mode": "basic", "conversion_delta": None},
}
ZCDP_COST = {"epsilon": 0.9, "delta": 1e-6, "rho": 0.05}
RESULT = {"columns": ["species", "n"], "data": [["Adelie", 151.2], ["Gentoo", 123.9]]}
SQL_ACCURACY = {
    "confidence": 0.95,
    "columns": [
        {"column": "species", "noisy_values": [], "half_width": None},
        {"column": "n", "noisy_values": ["count_n"], "half_width": 5.99},
        {"column": "mean", "noisy_values": ["sum_x", "count_x"], "half_width": 1.25},
    ],
    "noisy_values": [
        {"name": "count_n", "epsilon": 0.5, "delta": 0.0, "scale": 2.0, "half_width": 5.99},
        {"name": "sum_x", "epsilon": 0.5, "delta": 0.0, "scale": 9.0, "half_width": 27.0},
        {"name": "count_x", "epsilon": 0.5, "delta": 0.0, "scale": 2.0, "half_width": 5.99},
    ],
}


def test_budget_of_get_budget_with_its_last_query():
    reply = {
        "dataset": "PENGUIN",
        **BUDGET,
        "last_query": {
            "query_id": "ab" * 16,
            "cost": {"epsilon": 0.5, "delta": 0},
            "queries_left": 7,
        },
    }
    budget = Budget.from_reply(reply, dataset="ignored: the reply names it")
    assert budget.dataset == "PENGUIN"
    assert budget.remaining == {"epsilon": 3.5, "delta": 1e-4}
    assert budget.amounts == {k: BUDGET[k] for k in ("initial", "spent", "remaining")}
    assert budget.last_query == LastQuery("ab" * 16, {"epsilon": 0.5, "delta": 0.0}, 7)
    assert budget.queries_left == 7 and budget.accounting == {
        "mode": "basic",
        "conversion_delta": None,
    }
    assert budget.raw == reply


def test_budget_without_a_paid_query_has_no_count():
    budget = Budget.from_reply({**BUDGET, "last_query": None}, dataset="PENGUIN")
    assert budget.last_query is None and budget.queries_left is None
    free = Budget.from_reply(
        {
            **BUDGET,
            "last_query": {
                "query_id": "q",
                "cost": {"epsilon": 0, "delta": 0},
                "queries_left": None,
            },
        },
        dataset="PENGUIN",
    )
    assert free.last_query is not None and free.queries_left is None


def test_dataset_info():
    info = DatasetInfo.from_reply(
        {
            "name": "TITANIC",
            "engines": ["smartnoise_sql", "opendp"],
            "budget": BUDGET,
            "max_query": {"epsilon": 10.0, "delta": 0.001},
        }
    )
    assert info.name == "TITANIC" and info.engines == ("smartnoise_sql", "opendp")
    assert info.budget.dataset == "TITANIC" and info.budget.last_query is None
    assert info.max_query == {"epsilon": 10.0, "delta": 0.001}
    assert info.row() == {
        "dataset": "TITANIC",
        "epsilon left": 3.5,
        "delta left": 1e-4,
        "epsilon spent": 1.5,
        "delta spent": 0.0,
        "max epsilon per query": 10.0,
        "max delta per query": 0.001,
    }


def test_sql_estimate_and_its_accuracy_table():
    reply = {
        "cost": {"epsilon": 1.5, "delta": 0.0},
        "budget": BUDGET,
        "fits": True,
        "queries_left": 2,
        "replay_of": None,
        "normalized_query": "SELECT species, COUNT(*) AS n FROM df GROUP BY species",
        "accuracy": SQL_ACCURACY,
    }
    estimate = Estimate.from_reply(reply, dataset="PENGUIN")
    assert (estimate.fits, estimate.free, estimate.queries_left) == (True, False, 2)
    assert estimate.query == reply["normalized_query"] and estimate.noise is None
    assert list(estimate.accuracy_table().columns) == [
        "column",
        "noisy values",
        "epsilon",
        "±95%",
        "±95% × rows",
    ]
    table = estimate.accuracy_table().set_index("column")
    assert table.loc["n", "noisy values"] == 1 and table.loc["n", "epsilon"] == 0.5
    assert table.loc["mean", "epsilon"] == 1.0 and table.loc["mean", "±95%"] == 1.25
    assert pd.isna(table.loc["species", "epsilon"])  # a group key: no noise, no cost


def test_opendp_estimate_of_a_free_replay():
    reply = {
        "cost": {"epsilon": 0.0, "delta": 0.0, "rho": 0.0},
        "budget": BUDGET,
        "fits": True,
        "queries_left": None,
        "replay_of": "cd" * 16,
        "query_text": "count() by species",
        "noise": {"mechanism": "gaussian", "rho": 0.05, "delta": 0.0},
        "accuracy": {
            "confidence": 0.9,
            "columns": [{"column": "count", "noisy_values": ["count"], "half_width": 12.0}],
            "noisy_values": [{"name": "count", "scale": 3.2, "half_width": 12.0}],
        },
    }
    estimate = Estimate.from_reply(reply, dataset="PENGUIN")
    assert (
        estimate.free and estimate.queries_left is None and estimate.query == "count() by species"
    )
    assert estimate.noise == {"mechanism": "gaussian", "rho": 0.05, "delta": 0.0}
    table = estimate.accuracy_table()
    # OpenDP gives no epsilon per value: the column stays, empty, so the order never changes
    assert list(table.columns) == ["column", "noisy values", "epsilon", "±90%", "±90% × rows"]
    assert table["epsilon"].isna().all() and table.loc[0, "±90%"] == 12.0


def test_release_and_the_attrs_of_its_frame():
    reply = {
        "query_id": "ef" * 16,
        "replay_of": None,
        "result": RESULT,
        "cost": ZCDP_COST,
        "budget": BUDGET,
        "accuracy": SQL_ACCURACY,
    }
    request = {"query": "...", "epsilon": 0.5, "delta": 1e-6, "postprocess": True, "fresh": False}
    release = Release.from_reply(reply, dataset="PENGUIN", request=request)
    assert release.df is release.frame and list(release.frame.columns) == ["species", "n"]
    assert (release.query_id, release.dataset, release.epsilon, release.delta) == (
        "ef" * 16,
        "PENGUIN",
        0.5,
        1e-6,
    )
    assert release.cost == ZCDP_COST and not release.is_replay
    assert release.budget.spent["epsilon"] == 1.5 and release.request == request
    attrs = release.frame.attrs
    assert {k: attrs[k] for k in ("dataset", "query_id", "epsilon", "delta", "cost")} == {
        "dataset": "PENGUIN",
        "query_id": "ef" * 16,
        "epsilon": 0.5,
        "delta": 1e-6,
        "cost": ZCDP_COST,
    }
    assert attrs["replay_of"] is None and attrs["accuracy"] == SQL_ACCURACY
    assert set(attrs) >= {"half_width", "confidence", "threshold", "clamped", "notes"}
    assert "frame" not in repr(release) and "PENGUIN" in repr(release)


def test_release_of_a_gaussian_query_and_a_replay():
    reply = {
        "query_id": "01" * 16,
        "replay_of": "01" * 16,
        "result": {"columns": ["count"], "data": [[344]]},
        "cost": {"epsilon": 0.0, "delta": 0.0},
        "budget": BUDGET,
    }
    request = {"query": {"aggregates": [{"op": "count"}]}, "mechanism": "gaussian", "rho": 0.05}
    release = Release.from_reply(reply, dataset="PENGUIN", request=request)
    assert release.epsilon is None and release.delta == 0.0 and release.accuracy is None
    assert release.is_replay and release.frame.attrs["replay_of"] == "01" * 16


def test_results_are_frozen():
    budget = Budget.from_reply(BUDGET, dataset="PENGUIN")
    with pytest.raises(dataclasses.FrozenInstanceError):
        budget.dataset = "OTHER"


def test_metadata_columns_one_row_each_with_the_server_defaults():
    reply = {
        "max_ids": 1,
        "row_privacy": True,
        "columns": {
            "species": {"type": "string", "categories": ["A", "B"], "public_keys": True},
            "mass": {"type": "float", "lower": 2000.0, "upper": 7000.0, "nullable": False},
        },
    }
    metadata = Metadata.from_reply(reply, dataset="PENGUIN")
    assert metadata.options == {"max_ids": 1, "row_privacy": True} and metadata.raw == reply
    columns = metadata.columns.set_index("column")
    assert list(columns.index) == ["species", "mass"]
    assert columns.loc["species"].drop(["lower", "upper"]).to_dict() == {
        "type": "string",
        "nullable": True,  # the server's default for a column that does not say
        "categories": ["A", "B"],
        "public keys": True,
    }
    assert columns[["lower", "upper"]].loc["species"].isna().all()
    assert columns.loc["mass"].to_dict() == {
        "type": "float",
        "lower": 2000.0,
        "upper": 7000.0,
        "nullable": False,
        "categories": None,
        "public keys": False,
    }


def _entry(query_id, created, **fields):
    entry = {
        "query_id": query_id * 16,
        "dataset": "PENGUIN",
        "engine": "smartnoise_sql",
        "query": "SELECT COUNT(*) AS n\n    FROM df",
        "normalized_query": "SELECT COUNT ( * ) AS n FROM df",
        "epsilon": 0.5,
        "delta": 0.0,
        "postprocess": True,
        "cost": {"epsilon": 0.5, "delta": 0.0},
        "status": "done",
        "created_at": created,
        "finished_at": None,
        "result": {"columns": ["n"], "data": [[344.2]]},
    }
    return {**entry, **fields}


def test_archive_records_are_marked_as_the_server_replays():
    replies = [
        _entry("a1", "2025-03-01T09:00:00.123456+00:00", status="failed", result=None),
        _entry("b2", "2025-03-01T09:01:00+00:00"),
        _entry("c3", "2025-03-01T09:02:00+00:00"),  # the same request, paid again (fresh)
        _entry("d4", "2025-03-01T09:03:00+00:00", epsilon=1.0, cost={"epsilon": 1.0, "delta": 0}),
        _entry(
            "e5",
            "2025-03-01T09:04:00",  # no zone: taken as UTC
            engine="opendp",
            query="count(*) by species",
            normalized_query=None,
            opendp={"aggregates": [{"op": "count"}], "group_by": ["species"]},
            postprocess=None,
            mechanism="gaussian",
            epsilon=None,
            rho=0.05,
            delta=1e-6,
            cost={"epsilon": 0.9, "delta": 1e-6, "rho": 0.05},
        ),
    ]
    failed, first, fresh, other, opendp = archive_records(replies)
    assert isinstance(first, QueryRecord) and not failed.replayable and failed.result is None
    assert first.replayable and first.repeats is None
    assert fresh.repeats == "b2" * 16 and not fresh.replayable
    assert other.replayable  # another epsilon: another request
    assert opendp.created_at == datetime(2025, 3, 1, 9, 4, tzinfo=UTC) and opendp.replayable
    assert opendp.parameters() == "rho=0.05, delta=1e-06" and first.parameters() == "epsilon=0.5"
    assert list(first.result.columns) == ["n"]


def test_history_rows_are_readable():
    records = archive_records(
        [
            _entry("b2", "2025-03-01T09:01:00.654321+00:00", postprocess=False),
            _entry("c3", "2025-03-01T09:02:00+00:00", postprocess=False),
        ]
    )
    frame = history_frame(records)
    assert list(frame.columns) == [
        "at",
        "query_id",
        "dataset",
        "engine",
        "query",
        "parameters",
        "cost epsilon",
        "cost delta",
        "status",
        "replay",
    ]
    row = frame.iloc[0]
    local = datetime(2025, 3, 1, 9, 1, tzinfo=UTC).astimezone().replace(tzinfo=None)
    assert row["at"] == pd.Timestamp(local)  # local time, to the second
    assert (row["query_id"], row["engine"], row["query"]) == (
        "b2b2b2b2",
        "SQL",
        "SELECT COUNT(*) AS n FROM df",
    )
    assert row["parameters"] == "epsilon=0.5, no postprocess"
    assert (row["cost epsilon"], row["cost delta"], row["status"]) == (0.5, 0.0, "done")
    assert list(frame["replay"]) == ["free to rerun", "fresh repeat of b2b2b2b2"]
    assert history_frame([]).columns.tolist() == frame.columns.tolist()
