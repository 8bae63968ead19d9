"""Quickstart for analysts: explore a dataset, estimate, query with DP, check the budget.

Run against the demo server:  python examples/quickstart.py lomas-demo/connection.json
"""

from __future__ import annotations

import sys

import pandas as pd

from lomas_jupyter import Client, InvalidQuery

pd.set_option("display.width", 120)


def main(connection: str) -> None:
    client = Client.from_file(connection)
    print("Datasets I may query:")
    for dataset in client.datasets():
        remaining = dataset.budget.remaining
        print(
            f"  {dataset.name:8}  remaining epsilon={remaining['epsilon']:g}, delta={remaining['delta']:g}"
        )

    metadata = client.metadata("PENGUIN")
    print("\nPENGUIN columns (public metadata, free):")
    print(metadata.columns.to_string(index=False))

    print("\nDummy rows (from metadata only, free):")
    print(client.dummy("PENGUIN", rows=5, seed=1).to_string(index=False))

    query = (
        "SELECT species, COUNT(*) AS n, AVG(bill_length_mm) AS bill_length FROM df GROUP BY species"
    )
    estimate = client.smartnoise_sql_cost("PENGUIN", query, epsilon=0.5)
    print(
        f"\nThis query would cost epsilon={estimate.cost['epsilon']:g} "
        "(AVG is a noisy SUM and a noisy COUNT)"
    )

    release = client.smartnoise_sql_response("PENGUIN", query, epsilon=0.5)
    print(f"\nNoisy result (query {release.query_id[:8]}):")
    print(release.frame.to_string(index=False))
    remaining = release.budget.remaining
    print(f"Remaining budget: epsilon={remaining['epsilon']:g}, delta={remaining['delta']:g}")

    try:
        client.smartnoise_sql("PENGUIN", "SELECT * FROM df", epsilon=0.5)
    except InvalidQuery as err:
        print(f"\nA refused query costs nothing: {err}")

    print("\nMy archive (an identical rerun replays the release marked 'free to rerun'):")
    history = pd.DataFrame([q.row() for q in client.queries("PENGUIN")])
    print(history.to_string(index=False))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "lomas-demo/connection.json")
