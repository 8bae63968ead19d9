"""Many analysts at once, and a long query beside short ones, on a real server.

Writes generated rows (those of ``bench_csv_load``: about 3 rows per person, ``max_ids`` 5,
so every query bounds each person's rows) as Parquet at 1M rows (MEDIUM), at ``--long-rows``
(LONG, 10M by default) and at 10k rows (SMALL), starts ``python -m lomas_server`` on a
fresh SQLite store, warms each dataset with one query, then measures over HTTP:

1. **throughput**: for 1 client, then ``--clients`` (8) clients, each acting for an analyst
   of its own, fresh releases of a GROUP BY with AVG on MEDIUM for ``--seconds`` each:
   releases per second, p50/p95 latency, and any reply other than 200. Target: 8 clients
   reach at least 1.5x one client's throughput.
2. **blocking**: a small COUNT on SMALL, sent one after another by one analyst, p50/p95
   latency when the server is idle, then while another analyst runs the GROUP BY on LONG in
   a loop (its own time per query is printed too). Target: the small query's p95 under load
   within 3x of its idle p95.

    .venv/bin/python benchmarks/bench_concurrency.py [--clients 8] [--seconds 20]
                                                     [--long-rows 10000000] [--small 60]
                                                     [--server-arg=--LomasServerApp.X=Y ...]

Run it on a quiet machine: other processes take the cores it measures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_csv_load import QUERY, add_dataset, generate
from lomas_server.service.admin import AdminService
from lomas_server.store.sqlite import SqliteStore
from tests.servers import ServerProcess

SMALL_QUERY = "SELECT COUNT(*) AS n FROM df"
EPSILON = 0.5


class Analyst:
    """One analyst's HTTP session (plain ``requests``: the client side stays light)."""

    def __init__(self, api: str, token: str) -> None:
        self.api = api
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    def release(self, dataset: str, query: str) -> tuple[int, float]:
        body = {"query": query, "epsilon": EPSILON, "delta": 0.0, "fresh": True}
        start = time.perf_counter()
        reply = self.session.post(
            f"{self.api}/datasets/{dataset}/smartnoise-sql", json=body, timeout=300
        )
        return reply.status_code, time.perf_counter() - start


def prepare(folder: Path, long_rows: int, analysts: int) -> dict[str, str]:
    """The datasets and analysts; returns each analyst's token."""
    for name, rows in (("SMALL", 10_000), ("MEDIUM", 1_000_000), ("LONG", long_rows)):
        data = folder / name.lower()
        data.mkdir()
        generate(rows, data)
        # add_dataset reads its metadata beside the store: one metadata for all three.
        (folder / "metadata.yaml").write_text((data / "metadata.yaml").read_text())
        add_dataset(folder, name, data / "data.parquet")
    store = SqliteStore(folder / "admin.sqlite")
    admin = AdminService(store)
    tokens = {}
    for number in range(analysts):
        user = f"analyst{number}"
        tokens[user] = admin.add_user(user)
        for dataset in ("SMALL", "MEDIUM", "LONG"):
            admin.grant(user, dataset, 1e6, 1e-3)
    store.close()
    return tokens


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) < 2:
        return ordered[0] if ordered else float("nan")
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]


def throughput(analysts: list[Analyst], seconds: float) -> tuple[float, list[float], list[int]]:
    """Releases per second with every analyst sending one after another for ``seconds``."""
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(analyst: Analyst) -> None:
        while time.perf_counter() < deadline:
            status, elapsed = analyst.release("MEDIUM", QUERY)
            with lock:
                (latencies if status == 200 else failures).append(
                    elapsed if status == 200 else status
                )

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(a,)) for a in analysts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.perf_counter() - start), latencies, failures


def small_latencies(analyst: Analyst, count: int) -> tuple[list[float], list[int]]:
    times, failures = [], []
    for _ in range(count):
        status, elapsed = analyst.release("SMALL", SMALL_QUERY)
        if status == 200:
            times.append(elapsed)
        else:
            failures.append(status)
    return times, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--long-rows", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=60, help="small queries per measure")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="an option for the server (repeatable), e.g. --server-arg=--LomasServerApp.scan_threads=2",
    )
    args = parser.parse_args()
    analysts_needed = max(args.clients, 2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokens = prepare(folder, args.long_rows, analysts_needed)
        server = ServerProcess(
            folder / "admin.sqlite", folder, extra_args=tuple(args.server_arg)
        ).start(timeout=120)
        try:
            analysts = [Analyst(server.api, token) for token in tokens.values()]
            for dataset, query in (("SMALL", SMALL_QUERY), ("MEDIUM", QUERY), ("LONG", QUERY)):
                status, _ = analysts[0].release(dataset, query)  # loads and warms
                assert status == 200, f"warm-up on {dataset} answered {status}"

            print(f"1. throughput: fresh releases on 1M rows, {args.seconds:.0f} s each")
            rates = {}
            for clients in (1, args.clients):
                rate, times, failed = throughput(analysts[:clients], args.seconds)
                rates[clients] = rate
                print(
                    f"   {clients:>2} clients: {rate:6.1f} releases/s, p50 "
                    f"{quantile(times, 0.5) * 1e3:7.1f} ms, p95 "
                    f"{quantile(times, 0.95) * 1e3:7.1f} ms, not 200: {len(failed)} {failed[:5]}"
                )
            print(f"   ratio {rates[args.clients] / rates[1]:.2f}x (target at least 1.5x)")

            print(f"2. blocking: {args.small} small COUNTs, idle and beside a long query")
            idle, failed_idle = small_latencies(analysts[0], args.small)
            stop = threading.Event()
            long_times: list[float] = []

            def long_loop() -> None:
                while not stop.is_set():
                    status, elapsed = analysts[1].release("LONG", QUERY)
                    if status == 200:
                        long_times.append(elapsed)

            runner = threading.Thread(target=long_loop)
            runner.start()
            time.sleep(0.5)  # the long query is running
            loaded, failed_loaded = small_latencies(analysts[0], args.small)
            stop.set()
            runner.join()
            idle_p95, loaded_p95 = quantile(idle, 0.95), quantile(loaded, 0.95)
            print(
                f"   idle:        p50 {quantile(idle, 0.5) * 1e3:7.1f} ms, "
                f"p95 {idle_p95 * 1e3:7.1f} ms, not 200: {len(failed_idle)}"
            )
            print(
                f"   beside long: p50 {quantile(loaded, 0.5) * 1e3:7.1f} ms, "
                f"p95 {loaded_p95 * 1e3:7.1f} ms, not 200: {len(failed_loaded)}"
            )
            print(
                f"   long query ({args.long_rows:,} rows, per person): {len(long_times)} ran, "
                f"p50 {quantile(long_times, 0.5):.2f} s"
            )
            print(f"   ratio {loaded_p95 / idle_p95:.2f}x (target at most 3x)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
