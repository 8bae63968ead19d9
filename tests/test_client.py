"""The minimal Python client against the real server."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lomas_jupyter import Client, LomasError


@pytest.fixture
def client(make_user, server):
    user = make_user(PENGUIN=(3.0, 1e-5))
    return Client(server.url, user.token)


def test_client_round_trip(client):
    assert [d["name"] for d in client.datasets()] == ["PENGUIN"]
    assert "columns" in client.metadata("PENGUIN")
    dummy = client.dummy("PENGUIN", rows=20, seed=1)
    assert isinstance(dummy, pd.DataFrame) and dummy.shape == (20, 7)
    assert client.smartnoise_sql_cost("PENGUIN", "SELECT COUNT(*) AS n FROM df", epsilon=0.5)[
        "cost"
    ] == {
        "epsilon": 0.5,
        "delta": 0.0,
    }
    frame = client.smartnoise_sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", epsilon=0.5)
    assert list(frame.columns) == ["n"] and len(frame) == 1
    assert client.budget("PENGUIN")["spent"]["epsilon"] == 0.5
    assert len(client.queries("PENGUIN")) == 1


def test_client_errors_carry_the_server_message(client):
    with pytest.raises(LomasError) as info:
        client.smartnoise_sql("PENGUIN", "SELECT * FROM df", epsilon=0.5)
    assert info.value.code == "invalid_query" and info.value.status == 400
    assert "SELECT *" in str(info.value)


def test_client_connection_failure_is_readable():
    with pytest.raises(LomasError, match="cannot reach"):
        Client("http://127.0.0.1:9", "t", timeout=2).datasets()


def test_client_from_file_and_env(tmp_path, server, make_user, monkeypatch):
    user = make_user(PENGUIN=(1.0, 0.0))
    path = tmp_path / "connection.json"
    path.write_text(json.dumps({"url": server.url, "token": user.token, "user": user.name}))
    assert Client.from_file(path).datasets()[0]["name"] == "PENGUIN"
    monkeypatch.setenv("LOMAS_URL", server.url)
    monkeypatch.setenv("LOMAS_TOKEN", user.token)
    assert Client.from_env().datasets()[0]["name"] == "PENGUIN"
    with pytest.raises(LomasError, match="connection file"):
        Client.from_file(tmp_path / "missing.json")
