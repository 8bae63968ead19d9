"""The Python client against the real server: typed results, and errors as their classes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lomas_jupyter import (
    Budget,
    BudgetExceeded,
    Client,
    ClientUsageError,
    DatasetInfo,
    Estimate,
    InvalidQuery,
    LomasError,
    Metadata,
    NotFound,
    QueryRecord,
    QueryTooExpensive,
    Release,
    TransportError,
    Unauthorized,
)

COUNT = "SELECT COUNT(*) AS n FROM df"


@pytest.fixture
def client(make_user, server):
    user = make_user(PENGUIN=(3.0, 1e-5))
    return Client(server.url, user.token)


def test_client_round_trip(client):
    assert [d.name for d in client.datasets()] == ["PENGUIN"]
    assert "bill_length_mm" in set(client.metadata("PENGUIN").columns["column"])
    dummy = client.dummy("PENGUIN", rows=20, seed=1)
    assert isinstance(dummy, pd.DataFrame) and dummy.shape == (20, 7)
    assert client.smartnoise_sql_cost("PENGUIN", COUNT, epsilon=0.5).cost == {
        "epsilon": 0.5,
        "delta": 0.0,
    }
    frame = client.smartnoise_sql("PENGUIN", COUNT, epsilon=0.5)
    assert list(frame.columns) == ["n"] and len(frame) == 1
    assert client.budget("PENGUIN").spent["epsilon"] == 0.5
    assert len(client.queries("PENGUIN")) == 1


def test_replies_are_typed(client):
    (info,) = client.datasets()
    assert isinstance(info, DatasetInfo) and isinstance(info.budget, Budget)
    assert info.budget.remaining == {"epsilon": 3.0, "delta": 1e-5}
    assert info.max_query["epsilon"] > 0 and "smartnoise_sql" in info.engines

    estimate = client.smartnoise_sql_cost("PENGUIN", COUNT, epsilon=0.5)
    assert isinstance(estimate, Estimate)
    assert estimate.fits and not estimate.free and estimate.queries_left == 6
    assert estimate.budget.dataset == "PENGUIN" and estimate.query
    assert list(estimate.accuracy_table()["column"]) == ["n"]

    release = client.smartnoise_sql_response("PENGUIN", COUNT, epsilon=0.5)
    assert isinstance(release, Release) and release.df is release.frame
    assert (release.dataset, release.epsilon, release.delta) == ("PENGUIN", 0.5, 0.0)
    assert release.cost == {"epsilon": 0.5, "delta": 0.0} and not release.is_replay
    assert release.budget.spent["epsilon"] == 0.5
    attrs = release.frame.attrs
    assert {k: attrs[k] for k in ("dataset", "query_id", "epsilon", "delta", "cost")} == {
        "dataset": "PENGUIN",
        "query_id": release.query_id,
        "epsilon": 0.5,
        "delta": 0.0,
        "cost": {"epsilon": 0.5, "delta": 0.0},
    }
    assert attrs["replay_of"] is None and attrs["accuracy"] == release.accuracy
    assert attrs["half_width"]["n"] == release.accuracy["columns"][0]["half_width"] > 0
    assert attrs["confidence"] == 0.95 and attrs["clamped"] == {}
    assert release.raw["query_id"] == release.query_id

    replay = client.smartnoise_sql_response("PENGUIN", COUNT, epsilon=0.5)
    assert replay.is_replay and replay.replay_of == release.query_id
    assert replay.cost == {"epsilon": 0.0, "delta": 0.0}
    assert replay.frame.attrs["replay_of"] == release.query_id
    pd.testing.assert_frame_equal(replay.frame, release.frame)

    budget = client.budget("PENGUIN")
    assert budget.last_query is not None and budget.last_query.query_id == release.query_id
    assert budget.queries_left == 5  # 2.5 left, 0.5 each


def test_opendp_builder_returns_typed_results(client):
    query = client.opendp("PENGUIN").group_by("species").count().laplace(epsilon=0.5)
    assert isinstance(query.estimate(), Estimate) and query.estimate().noise["epsilon"] == 0.5
    release = query.response()
    assert isinstance(release, Release) and release.epsilon == 0.5
    assert list(release.frame.columns) == ["species", "count"]
    assert query.release().attrs["replay_of"] == release.query_id
    with pytest.raises(ClientUsageError, match="choose the noise first"):
        client.opendp("PENGUIN").count().release()


def test_client_errors_carry_the_server_message(client):
    with pytest.raises(LomasError) as info:
        client.smartnoise_sql("PENGUIN", "SELECT * FROM df", epsilon=0.5)
    assert info.value.code == "invalid_query" and info.value.status == 400
    assert "SELECT *" in str(info.value)


def test_server_refusals_raise_their_class(client, server):
    with pytest.raises(InvalidQuery) as info:
        client.smartnoise_sql("PENGUIN", "SELECT * FROM df", epsilon=0.5)
    assert info.value.reply["error"] == "invalid_query"
    with pytest.raises(NotFound, match="no dataset 'NOPE'"):
        client.budget("NOPE")
    with pytest.raises(QueryTooExpensive):
        client.smartnoise_sql_cost("PENGUIN", COUNT, epsilon=50.0)
    with pytest.raises(BudgetExceeded, match="nothing was spent"):
        client.smartnoise_sql("PENGUIN", COUNT, epsilon=2.0)
        client.smartnoise_sql("PENGUIN", COUNT, epsilon=2.0, fresh=True)
    with pytest.raises(Unauthorized) as info:
        Client(server.url, "wrong").datasets()
    assert info.value.status == 401 and str(info.value).endswith("[unauthorized]")


def test_a_refused_token_names_where_it_came_from(server, tmp_path, monkeypatch):
    """The server's 401 explains the HTTP header; the analyst set a variable or a file."""
    with pytest.raises(Unauthorized) as info:
        Client(server.url, "wrong").datasets()
    assert str(info.value) == (
        f"the server at {server.url} refused the token: check the token given to Client, "
        "or ask the administrator for a new one [unauthorized]"
    )
    assert "Authorization" in info.value.reply["message"]  # the server's words stay at hand
    assert "Authorization" not in str(info.value)
    monkeypatch.setenv("LOMAS_URL", server.url)
    monkeypatch.setenv("LOMAS_TOKEN", "wrong")
    with pytest.raises(Unauthorized, match="check LOMAS_TOKEN, or ask"):
        Client.from_env().budget("PENGUIN")
    path = tmp_path / "connection.json"
    path.write_text(json.dumps({"url": server.url, "token": "wrong"}))
    with pytest.raises(Unauthorized, match=f"check the token in {path}, or ask"):
        Client.from_file(path).queries()


def test_client_connection_failure_is_readable():
    with pytest.raises(TransportError, match="cannot reach") as info:
        Client("http://127.0.0.1:9", "t", timeout=2).datasets()
    assert info.value.code == "connection_error" and str(info.value).startswith("cannot reach")


def test_client_from_file_and_env(tmp_path, server, make_user, monkeypatch):
    user = make_user(PENGUIN=(1.0, 0.0))
    path = tmp_path / "connection.json"
    path.write_text(json.dumps({"url": server.url, "token": user.token, "user": user.name}))
    with Client.from_file(path) as client:
        assert client.datasets()[0].name == "PENGUIN"
        assert user.token not in repr(client)
    monkeypatch.setenv("LOMAS_URL", server.url)
    monkeypatch.setenv("LOMAS_TOKEN", user.token)
    assert Client.from_env().datasets()[0].name == "PENGUIN"
    with pytest.raises(ClientUsageError, match="connection file"):
        Client.from_file(tmp_path / "missing.json")


def test_metadata_is_typed_like_the_magic_shows_it(client):
    metadata = client.metadata("PENGUIN")
    assert isinstance(metadata, Metadata) and metadata.dataset == "PENGUIN"
    columns = metadata.columns.set_index("column")
    assert list(metadata.columns.columns) == [
        "column",
        "type",
        "lower",
        "upper",
        "nullable",
        "categories",
        "public keys",
    ]
    assert columns.loc["bill_length_mm", "upper"] == 65.0
    assert columns.loc["species", "categories"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert columns.loc["species", "public keys"] and not columns.loc["species", "nullable"]
    assert metadata.options["max_ids"] == 1 and "columns" not in metadata.options
    assert metadata.raw["columns"]["bill_length_mm"]["upper"] == 65.0


def test_queries_are_typed_records_marked_for_replay(client):
    first = client.smartnoise_sql_response("PENGUIN", COUNT, epsilon=0.5)
    client.smartnoise_sql("PENGUIN", COUNT.lower(), epsilon=0.5)  # a replay: not archived
    fresh = client.smartnoise_sql_response("PENGUIN", COUNT, epsilon=0.5, fresh=True)
    opendp = client.opendp("PENGUIN").group_by("species").count().gaussian(rho=0.05).response()
    records = client.queries("PENGUIN")
    assert all(isinstance(r, QueryRecord) for r in records)
    assert [r.query_id for r in records] == [first.query_id, fresh.query_id, opendp.query_id]
    sql, again, counted = records
    assert (sql.engine, sql.query, sql.epsilon, sql.delta) == ("smartnoise_sql", COUNT, 0.5, 0.0)
    assert sql.cost == {"epsilon": 0.5, "delta": 0.0} and sql.status == "done"
    assert sql.created_at.tzinfo is not None and sql.finished_at >= sql.created_at
    pd.testing.assert_frame_equal(sql.result, first.frame, check_dtype=False)
    # a rerun returns the first release; the second was paid for with fresh=True
    assert sql.replayable and sql.repeats is None
    assert not again.replayable and again.repeats == first.query_id
    assert counted.engine == "opendp" and counted.query == "count(*) by species"
    assert (counted.mechanism, counted.rho, counted.epsilon) == ("gaussian", 0.05, None)
    assert counted.opendp is not None and counted.replayable
    assert client.queries("PENGUIN") == records
