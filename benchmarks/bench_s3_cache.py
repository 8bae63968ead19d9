"""First and cached query on a Parquet dataset on S3 (a local S3-compatible server, moto).

The first query downloads, converts and caches the rows; later ones only check the object's
ETag. Prints both times, the download size and the cache's memory.

    .venv/bin/python benchmarks/bench_s3_cache.py [--rows 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lomas_server.service.admin import AdminService
from lomas_server.store.sqlite import SqliteStore
from tests.servers import Api, MotoS3, ServerProcess

QUERY = "SELECT sex, COUNT(*) AS n, AVG(income) AS income FROM df GROUP BY sex"
METADATA = {
    "max_ids": 1,
    "row_privacy": True,
    "columns": {
        "sex": {"type": "string", "categories": ["F", "M"], "nullable": False, "public_keys": True},
        "age": {"type": "int", "lower": 0, "upper": 100, "nullable": False},
        "income": {"type": "float", "lower": 0.0, "upper": 500000.0, "nullable": False},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "sex": rng.choice(["F", "M"], args.rows),
            "age": rng.integers(0, 101, args.rows),
            "income": rng.gamma(2.0, 30000.0, args.rows).clip(0, 500000),
        }
    )
    body = io.BytesIO()
    frame.to_parquet(body)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        s3 = MotoS3(folder / "moto").start()
        try:
            s3.client().create_bucket(Bucket="bench")
            s3.client().put_object(Bucket="bench", Key="data.parquet", Body=body.getvalue())
            store = SqliteStore(folder / "admin.sqlite")
            admin = AdminService(store)
            token = admin.add_user("bench")
            admin.add_dataset(
                "S3DATA",
                "s3://bench/data.parquet",
                METADATA,
                source_options=s3.options(),
                check_data=False,
            )
            admin.grant("bench", "S3DATA", 1e6, 0.0)
            store.close()
            server = ServerProcess(folder / "admin.sqlite", folder).start()
            try:
                api = Api(server.api, token)

                def run() -> float:
                    start = time.perf_counter()
                    reply = api.sql("S3DATA", QUERY, 1.0, fresh=True)
                    assert reply.status_code == 200, reply.text
                    return time.perf_counter() - start

                first = run()
                cached = statistics.median(run() for _ in range(args.repeat))
            finally:
                server.stop()
        finally:
            s3.stop()
    print(f"{args.rows} rows, Parquet on S3: {len(body.getvalue()) / 1e6:.1f} MB")
    print(f"first query (download + load + query): {first:.2f} s")
    print(f"cached query (ETag check + query), median of {args.repeat}: {cached:.3f} s")
    print(f"speed-up: {first / cached:.1f}x")


if __name__ == "__main__":
    main()
