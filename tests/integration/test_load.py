"""The load run of benchmarks/bench_load.py, smaller: its correctness properties, not its speed.

8 clients send 300 requests (estimates, fresh releases, replays, budget reads, both engines)
to a real server: no reply but 200 and 403 ``budget_exceeded`` (and that only for the one
small grant), the ledger equal in exact units to what the replies said they charged, every
spend belonging to one reply, no cap exceeded. Timing and memory are printed by the
benchmark, never asserted here.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.bench_load import CAPPED, _check_pair, run_load
from lomas_server.store import open_store


@pytest.fixture(scope="module")
def sqlite_load(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("load")
    return workdir, run_load(workdir, clients=8, queries=300, store="sqlite", seed=1)


def test_load_on_sqlite_is_exact_and_within_caps(sqlite_load):
    _, report = sqlite_load
    assert report.failures == [], "\n".join(report.failures)
    counts = report.status_counts()
    assert sum(counts.values()) == 300
    assert set(counts) == {"200", "403 budget_exceeded"}, counts
    refused = {(o.user, o.request.dataset) for o in report.outcomes if o.status == 403}
    assert refused == {CAPPED}


def test_the_ledger_check_catches_a_single_unit_of_difference(sqlite_load):
    """The checker itself: one reply claiming one unit more than the ledger holds is found."""
    workdir, report = sqlite_load
    user, dataset = "analyst1", "TITANIC"
    paid = [
        o
        for o in report.outcomes
        if o.user == user
        and o.request.dataset == dataset
        and o.status == 200
        and o.request.kind in ("sql-fresh", "opendp-fresh")
    ]
    assert paid
    tampered = paid[0].body | {
        "cost": {**paid[0].body["cost"], "epsilon": paid[0].body["cost"]["epsilon"] + 1e-12}
    }
    forged = [replace(paid[0], body=tampered), *paid[1:]]
    # every other paid release of the pair, unchanged
    others = [
        o
        for o in report.outcomes
        if o.user == user
        and o.request.dataset == dataset
        and o.status == 200
        and o.request.kind in ("sql-replay", "opendp-replay")
        and o.body["replay_of"] is None
    ]
    grants = {(user, dataset): (1000.0, 1e-3)}
    store = open_store(f"sqlite:///{workdir / 'admin.sqlite'}")
    try:
        clean = replace(report, failures=[], ledger_lines=[])
        _check_pair(clean, store, user, dataset, [*paid, *others], grants, [])
        assert clean.failures == []
        caught = replace(report, failures=[], ledger_lines=[])
        _check_pair(caught, store, user, dataset, [*forged, *others], grants, [])
        assert any("replied" in f and "ledger" in f for f in caught.failures), caught.failures
        assert any("MISMATCH" in line for line in caught.ledger_lines)
    finally:
        store.close()


def test_load_on_mongodb_wire_store_is_exact_and_within_caps(ferretdb, tmp_path):
    report = run_load(
        tmp_path, clients=8, queries=200, store="mongo", seed=2, ferretdb_url=ferretdb.url
    )
    assert report.failures == [], "\n".join(report.failures)
    assert set(report.status_counts()) == {"200", "403 budget_exceeded"}
