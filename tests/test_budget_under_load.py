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
        return user.api.sql("PENGUIN", QUERY, 0.1)

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
