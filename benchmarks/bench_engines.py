"""How fast a DP GROUP BY runs through the server, next to the same work without DP.

For generated datasets (10k, 1M, 10M rows by default), prints per query:
- plain pandas and Polars group-by (no privacy: the floor to compare with), and the Polars
  group-by by person first (the least any per-person contribution bound costs: each person's
  rows must be counted before some can be dropped),
- SmartNoise-SQL in-process with its pandas reader, building the reader per query as the
  reference system does (skipped past 1M rows: minutes per query),
- the server over HTTP: median end-to-end latency with row privacy, and with 5 rows per person
  bounded by sampling (max_ids), and the first query (which loads the data),
- peak resident memory of the server process, after the row-privacy queries and after the
  sampling ones, next to the size of the data in Arrow;
- with --spark, the same two queries on the same Parquet file with the Spark engine (local
  Spark in the server process): first query (Spark start included) and median;
- with --scan, the server streams the Parquet file at each query instead of keeping it
  loaded (what it does for datasets larger than its cache allows): compare the peak memory.

    .venv/bin/python benchmarks/bench_engines.py [--rows 10000 1000000 10000000] [--repeat 10]
                                                 [--spark] [--scan]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import snsql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lomas_server.service.admin import AdminService
from lomas_server.store.sqlite import SqliteStore
from tests.servers import Api, ServerProcess

QUERY = (
    "SELECT sex, COUNT(*) AS n, SUM(income) AS total, AVG(income) AS income FROM df GROUP BY sex"
)
EPSILON = 1.0
COLUMNS = {
    "sex": {"type": "string", "categories": ["F", "M"], "nullable": False, "public_keys": True},
    "age": {"type": "int", "lower": 0, "upper": 100, "nullable": False},
    "income": {"type": "float", "lower": 0.0, "upper": 500000.0, "nullable": False},
}
ROW_PRIVACY = {"max_ids": 1, "row_privacy": True, "columns": COLUMNS}
PER_PERSON = {
    "max_ids": 5,
    "row_privacy": False,
    "columns": {**COLUMNS, "pid": {"type": "int", "private_id": True, "nullable": False}},
}


def generate(rows: int, path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(rows)
    frame = pd.DataFrame(
        {
            "sex": rng.choice(["F", "M"], rows),
            "age": rng.integers(0, 101, rows),
            "income": rng.gamma(2.0, 30000.0, rows).clip(0, 500000),
            "pid": rng.integers(0, max(1, rows // 3), rows),
        }
    )
    frame.to_parquet(path)
    return frame


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(rows: int, repeat: int, spark: bool, scan: bool) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame = generate(rows, folder / "data.parquet")
        data_mb = pa.Table.from_pandas(frame[list(COLUMNS)], preserve_index=False).nbytes / 1e6
        in_memory = pl.from_pandas(frame)  # the server, too, answers from memory
        # The baselines are cheap and their timings jumpy (thread start-up): more runs.
        baseline_repeat = max(25, repeat)
        plain_pandas = median_time(
            lambda: frame.groupby("sex")["income"].agg(["size", "sum", "mean"]), baseline_repeat
        )
        plain_polars = median_time(
            lambda: in_memory.group_by("sex").agg(
                pl.len(),
                pl.col("income").sum().alias("total"),
                pl.col("income").mean().alias("mean"),
            ),
            baseline_repeat,
        )
        per_person_floor = median_time(
            lambda: (
                in_memory.group_by("pid", "sex")
                .agg(pl.len().alias("n"), pl.col("income").sum().alias("total"))
                .group_by("sex")
                .agg(pl.col("n").sum(), pl.col("total").sum())
            ),
            repeat,
        )
        plain = min(plain_pandas, plain_polars)
        snsql_per_query = float("nan")
        if rows <= 1_000_000:
            document = {
                "": {"": {"df": {k: v for k, v in ROW_PRIVACY.items() if k != "columns"} | COLUMNS}}
            }
            privacy = snsql.Privacy(epsilon=EPSILON)
            subset = frame[list(COLUMNS)]
            snsql_per_query = median_time(
                lambda: snsql.from_df(subset, privacy=privacy, metadata=document).execute(QUERY),
                max(2, repeat // 5),
            )
        token = _seed(folder, spark)
        extra = ("--LomasServerApp.scan_parquet_above_bytes=0",) if scan else ()
        server = ServerProcess(folder / "admin.sqlite", folder, extra_args=extra).start(timeout=120)
        try:
            api = Api(server.api, token)

            def run(dataset: str) -> None:
                reply = api.sql(dataset, QUERY, EPSILON, fresh=True)
                assert reply.status_code == 200, reply.text

            start = time.perf_counter()
            run("ROWS")
            first = time.perf_counter() - start
            row_privacy = median_time(lambda: run("ROWS"), repeat)
            peak = peak_rss_mb(server.process.pid)
            run("PEOPLE")
            per_person = median_time(lambda: run("PEOPLE"), repeat)
            peak_sampling = peak_rss_mb(server.process.pid)
            spark_line = ""
            if spark:
                start = time.perf_counter()
                run("SPARK_ROWS")
                spark_first = time.perf_counter() - start
                spark_rows = median_time(lambda: run("SPARK_ROWS"), repeat)
                spark_people = median_time(lambda: run("SPARK_PEOPLE"), repeat)
                spark_line = (
                    f"\n{'':>10} spark: first {spark_first:.2f}s, row privacy "
                    f"{spark_rows * 1e3:.0f}ms, max5 {spark_people * 1e3:.0f}ms"
                )
        finally:
            server.stop()
    return (
        f"{rows:>10} {plain_pandas * 1e3:>6.1f}ms {plain_polars * 1e3:>6.1f}ms {snsql_per_query * 1e3:>7.0f}ms "
        f"{first:>8.2f}s {row_privacy * 1e3:>7.1f}ms {row_privacy / plain:>7.1f}x "
        f"{per_person * 1e3:>8.1f}ms {per_person / plain:>7.1f}x "
        f"{per_person_floor * 1e3:>8.1f}ms {per_person / per_person_floor:>7.1f}x "
        f"{peak:>8.0f} {peak_sampling:>8.0f}  "
        f"(data {data_mb:.0f} MB in Arrow)" + spark_line
    )


def _seed(folder: Path, spark: bool) -> str:
    store = SqliteStore(folder / "admin.sqlite")
    admin = AdminService(store)
    token = admin.add_user("bench")
    datasets = {"ROWS": (ROW_PRIVACY, None), "PEOPLE": (PER_PERSON, None)}
    if spark:
        datasets |= {"SPARK_ROWS": (ROW_PRIVACY, "spark"), "SPARK_PEOPLE": (PER_PERSON, "spark")}
    for name, (metadata, engine) in datasets.items():
        admin.add_dataset(name, folder / "data.parquet", metadata, check_data=False, engine=engine)
        admin.grant("bench", name, 1e6, 0.0)
    store.close()
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--spark", action="store_true", help="also time the Spark engine")
    parser.add_argument(
        "--scan", action="store_true", help="the server scans the file instead of loading it"
    )
    args = parser.parse_args()
    print(f"query: {QUERY}  (epsilon {EPSILON} per noisy value)")
    if args.scan:
        print("the server scans the Parquet file at each query (nothing kept loaded)")
    print("x plain = HTTP latency / the faster of the plain pandas and Polars group-bys")
    print("pl/person = Polars grouping by person first; x floor = HTTP max5 / pl/person")
    print(
        f"{'rows':>10} {'pandas':>8} {'polars':>8} {'snsql/q':>9} {'HTTP 1st':>9} "
        f"{'HTTP row':>9} {'x plain':>8} {'HTTP max5':>10} {'x plain':>8} {'pl/person':>10} "
        f"{'x floor':>8} {'peak MB':>8} {'+max5':>8}"
    )
    for rows in args.rows:
        print(measure(rows, args.repeat, args.spark, args.scan), flush=True)


if __name__ == "__main__":
    main()
