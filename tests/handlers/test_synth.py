"""Synthetic data over HTTP: a synthesizer the server builds from metadata, its cost, replays,
and the requests it must refuse."""

from __future__ import annotations

import pytest

SYNTH = "/datasets/PENGUIN/synth"


@pytest.fixture
def user(make_user):
    return make_user(PENGUIN=(10.0, 1e-4))


def _spent(user, dataset="PENGUIN"):
    return user.api.get(f"/datasets/{dataset}/budget").json()["spent"]


def test_mst_returns_rows_of_the_declared_domain_and_charges_what_was_asked(user):
    body = {
        "synthesizer": "mst",
        "columns": ["species", "island", "bill_length_mm"],
        "epsilon": 3.0,
        "delta": 1e-6,
        "rows": 200,
    }
    reply = user.api.post(SYNTH, body)
    assert reply.status_code == 200, reply.text
    result = reply.json()["result"]
    assert result["columns"] == ["species", "island", "bill_length_mm"]
    assert len(result["data"]) == 200
    assert {row[0] for row in result["data"]} <= {"Adelie", "Chinstrap", "Gentoo"}
    assert all(30.0 <= row[2] <= 65.0 for row in result["data"] if row[2] is not None)
    assert reply.json()["cost"] == {"epsilon": 3.0, "delta": 1e-6}
    assert _spent(user) == {"epsilon": 3.0, "delta": 1e-6}
