"""Latency and throughput of SmartNoise-SQL queries through the HTTP API.

For a COUNT/AVG GROUP BY query on generated datasets of 10k and 1M rows, prints the median
end-to-end latency over HTTP next to SmartNoise-SQL run in-process (on a reader built once,
and building the reader per query as the reference system does), their ratio, and the
queries per second of 8 concurrent clients.

    .venv/bin/python benchmarks/bench_smartnoise_sql.py [--rows 10000 1000000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import snsql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lomas_server.datasets import conform_to_metadata
from lomas_server.engines.noise_scales import forget_noise_scales, remember_noise_scales
from lomas_server.engines.xpath_memo import forget_xpaths, remember_xpaths
from lomas_server.metadata import DatasetMetadata
from lomas_server.service.admin import AdminService
from lomas_server.store.sqlite import SqliteStore
from tests.servers import Api, ServerProcess

QUERY = "SELECT sex, COUNT(*) AS n, AVG(income) AS income FROM df GROUP BY sex"
EPSILON = 1.0
METADATA = {
    "max_ids": 1,
    "row_privacy": True,
    "columns": {
        "sex": {"type": "string", "categories": ["F", "M"], "nullable": False, "public_keys": True},
        "age": {"type": "int", "lower": 0, "upper": 100, "nullable": False},
        "income": {"type": "float", "lower": 0.0, "upper": 500000.0, "nullable": False},
    },
}


def generate(rows: int, path: Path) -> None:
    rng = np.random.default_rng(rows)
    frame = pd.DataFrame(
        {
            "sex": rng.choice(["F", "M"], rows),
            "age": rng.integers(0, 101, rows),
            "income": rng.gamma(2.0, 30000.0, rows).clip(0, 500000),
        }
    )
    frame.to_parquet(path)


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def in_process(path: Path, repeat: int) -> tuple[float, float, float]:
    metadata = DatasetMetadata.from_dict(METADATA)
    frame = conform_to_metadata(pd.read_parquet(path), metadata)
    document = {"": {"": {"df": metadata.smartnoise_table()}}}
    privacy = snsql.Privacy(epsilon=EPSILON, delta=0.0)
    reader = snsql.from_df(frame, privacy=privacy, metadata=document)
    reader.execute(QUERY)
    prebuilt = statistics.median(timed(lambda: reader.execute(QUERY), repeat))
    per_query = statistics.median(
        timed(
            lambda: snsql.from_df(frame, privacy=privacy, metadata=document).execute(QUERY),
            max(3, repeat // 5),
        )
    )
    # The same reader with the server's memos (noise scales, XPath selectors), to show the
    # cost of HTTP alone.
    remember_noise_scales()
    remember_xpaths()
    reader.execute(QUERY)
    remembered = statistics.median(timed(lambda: reader.execute(QUERY), repeat))
    forget_noise_scales()
    forget_xpaths()
    return prebuilt, per_query, remembered


def over_http(api: Api, dataset: str, repeat: int, clients: int) -> tuple[float, float, float]:
    def one() -> None:
        reply = api.sql(dataset, QUERY, EPSILON)
        assert reply.status_code == 200, reply.text

    first = timed(one, 1)[0]  # loads and caches the dataset
    median = statistics.median(timed(one, repeat))
    total = clients * repeat
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: one(), range(total)))
    return first, median, total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = SqliteStore(folder / "admin.sqlite")
        admin = AdminService(store)
        token = admin.add_user("bench")
        for rows in args.rows:
            path = folder / f"d{rows}.parquet"
            generate(rows, path)
            admin.add_dataset(f"D{rows}", path, METADATA)
            admin.grant("bench", f"D{rows}", 1e6, 0.0)
        store.close()
        server = ServerProcess(folder / "admin.sqlite", folder).start()
        try:
            api = Api(server.api, token)
            print(f"query: {QUERY}  (epsilon {EPSILON})")
            print(
                "medians; 'in-process' = SmartNoise-SQL on a reader built once, 'reader per query' ="
                " building it for every query (the reference system), 'memo' = in-process with the"
                " server's remembered noise scales"
            )
            print(
                f"{'rows':>10} {'in-process':>11} {'reader/query':>13} {'memo':>9} {'HTTP 1st':>9} "
                f"{'HTTP':>9} {'HTTP/in-proc':>13} {f'q/s ({args.clients} clients)':>18}"
            )
            for rows in args.rows:
                prebuilt, per_query, remembered = in_process(
                    folder / f"d{rows}.parquet", args.repeat
                )
                first, median, qps = over_http(api, f"D{rows}", args.repeat, args.clients)
                print(
                    f"{rows:>10} {prebuilt * 1000:>9.1f}ms {per_query * 1000:>11.1f}ms "
                    f"{remembered * 1000:>7.1f}ms {first * 1000:>7.0f}ms {median * 1000:>7.1f}ms "
                    f"{median / prebuilt:>12.2f}x {qps:>18.1f}"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
