"""50 concurrent queries at a budget that fits k of them: exactly k succeed, nothing more is spent."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from lomas_server.accounting import PrivacyAmount

QUERY = "SELECT COUNT(*) AS n FROM df"


def test_fifty_concurrent_queries_never_overspend(make_user, admin):
    k = 7
    user = make_user(PENGUIN=(0.1 * k + 0.05, 0.0))  # room for 7 queries of 0.1, not 8
    barrier = threading.Barrier(50)

    def fire(_):
        barrier.wait()
        return user.api.sql("PENGUIN", QUERY, 0.1, fresh=True)  # each one a new release

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(fire, range(50)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses.count(200) == k, statuses
    assert statuses.count(403) == 50 - k
    assert all(r.json()["error"] == "budget_exceeded" for r in replies if r.status_code == 403)
    ledger = admin.store.ledger(user=user.name, dataset="PENGUIN")
    assert len(ledger) == k
    total = PrivacyAmount.zero()
    for entry in ledger:
        total = total + entry.amount
    assert total == PrivacyAmount.cost(0.1, 0) + PrivacyAmount.cost(0.6, 0)  # exactly k * 0.1
    archive = user.api.get("/queries").json()["queries"]
    assert len(archive) == k and all(q["status"] == "done" for q in archive)


def test_fifty_concurrent_identical_queries_pay_at_most_once_each_release(make_user, admin):
    """Without 'fresh', identical requests replay a finished release; those racing the first
    one may each pay for their own, but never beyond the budget."""
    user = make_user(PENGUIN=(0.35, 0.0))
    barrier = threading.Barrier(50)

    def fire(_):
        barrier.wait()
        return user.api.sql("PENGUIN", QUERY, 0.1)

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(fire, range(50)))
    paid = [r for r in replies if r.status_code == 200 and r.json()["replay_of"] is None]
    replays = [r for r in replies if r.status_code == 200 and r.json()["replay_of"] is not None]
    refused = [r for r in replies if r.status_code == 403]
    assert len(paid) + len(replays) + len(refused) == 50
    assert 1 <= len(paid) <= 3
    spent = admin.store.spent(user.name, "PENGUIN")
    assert spent == PrivacyAmount.cost(0.1, 0) + PrivacyAmount.cost(0.1 * (len(paid) - 1), 0)
    first_ids = {r.json()["query_id"] for r in paid}
    assert all(r.json()["replay_of"] in first_ids for r in replays)
