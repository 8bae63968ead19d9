"""The first query on a big CSV file, next to the same rows as Parquet (issue: first load).

For each row count (1M by default; 10M is the target size), writes one generated dataset as
CSV and as Parquet, then measures for each format:
- ``lomas-admin add-dataset`` (which reads the whole file once, a part at a time, to check it
  against its metadata): wall time (``add s``), and the command's peak resident memory above
  that of adding a 10-row file, the interpreter and its libraries (``add +MB``);
- the server's first query (which loads the file into memory as Arrow, then runs the query),
  over HTTP: wall time (``first s``), and how far the server's peak resident memory rose above
  its resident memory before the query (``load +MB``), beside the data's size in Arrow
  (``x arrow``). This includes what the engine itself takes to run the query on 10M rows;
- the load alone, as the server does it before any engine runs (the file read and conformed
  to its metadata, in a fresh process warmed up on a 10-row file): how far its peak resident
  memory rose (``conf +MB``), beside the data's size in Arrow (``conf x``).

    .venv/bin/python benchmarks/bench_csv_load.py [--rows 1000000 10000000]

Targets: first query from CSV within 2x of Parquet, peak memory during the load at most 2x the
data's Arrow size, add-dataset on the CSV within 2x of the Parquet's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lomas_server.service.admin import AdminService
from lomas_server.store.sqlite import SqliteStore
from tests.servers import Api, ServerProcess

QUERY = "SELECT sex, COUNT(*) AS n, AVG(income) AS income FROM df GROUP BY sex"
METADATA = {
    "max_ids": 5,
    "row_privacy": False,
    "rows": 100_000_000,
    "columns": {
        "pid": {"type": "int", "private_id": True, "nullable": False},
        "sex": {"type": "string", "categories": ["F", "M"], "public_keys": True, "nullable": False},
        "region": {"type": "string", "categories": [f"R{i:02d}" for i in range(20)]},
        "age": {"type": "int", "lower": 0, "upper": 100, "nullable": False},
        "income": {"type": "float", "lower": 0.0, "upper": 500000.0},
        "employed": {"type": "boolean"},
    },
}
BIN = Path(sys.executable).parent


def generate(rows: int, folder: Path) -> float:
    """Writes data.csv and data.parquet; returns the rows' size in Arrow, in MB."""
    rng = np.random.default_rng(rows)
    frame = pd.DataFrame(
        {
            "pid": rng.integers(0, max(1, rows // 3), rows),
            "sex": rng.choice(["F", "M"], rows),
            "region": rng.choice([f"R{i:02d}" for i in range(20)], rows),
            "age": rng.integers(0, 101, rows),
            "income": rng.gamma(2.0, 30000.0, rows).clip(0, 500000).round(2),
            "employed": rng.random(rows) < 0.6,
        }
    )
    frame.to_parquet(folder / "data.parquet")
    frame.to_csv(folder / "data.csv", index=False)
    (folder / "metadata.yaml").write_text(yaml.safe_dump(METADATA))
    return pa.Table.from_pandas(frame, preserve_index=False).nbytes / 1e6


def add_dataset(folder: Path, name: str, data: Path) -> tuple[float, float]:
    """``lomas-admin add-dataset``: wall seconds and peak resident MB of the command."""
    command = [
        str(BIN / "lomas-admin"),
        "--store",
        f"sqlite:///{folder / 'admin.sqlite'}",
        "--json",
        "add-dataset",
        name,
        "--file",
        str(data),
        "--metadata",
        str(folder / "metadata.yaml"),
    ]
    start = time.perf_counter()
    # The child's own peak, read while it runs: wait4's ru_maxrss would report this big
    # process's memory, which a child keeps as its maximum across fork and exec.
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        peak = 0.0
        while process.poll() is None:
            try:
                peak = max(peak, memory_mb(process.pid))
            except OSError:
                pass
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        if process.returncode != 0:
            errors.seek(0)
            raise RuntimeError(errors.read().decode())
    return elapsed, peak


LOAD_ONLY = """
import sys
from pathlib import Path
import yaml
from lomas_server.datasets import LocalFileSource, conformed_table
from lomas_server.metadata import DatasetMetadata

def memory(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

folder, data = Path(sys.argv[1]), Path(sys.argv[2])
meta = DatasetMetadata.from_dict(yaml.safe_load((folder / "metadata.yaml").read_text()))

def load(path):
    source = LocalFileSource(path)
    if hasattr(source, "stream"):
        return conformed_table(source.stream(list(meta.columns)), meta)
    return conformed_table(source.load(list(meta.columns)), meta)

load(folder / "small.csv")
before = memory("VmRSS")
load(data)
print(memory("VmHWM") - before)
"""


def load_only(folder: Path, data: Path) -> float:
    """How many MB the peak resident memory of a fresh process rose while it loaded ``data``
    as the server does (after loading a 10-row file, so libraries are in memory)."""
    command = [sys.executable, "-c", LOAD_ONLY, str(folder), str(data)]
    # Run from the data's folder, as the other commands are: the code imported is the
    # installed one (or PYTHONPATH's), not whatever the current folder holds.
    done = subprocess.run(command, capture_output=True, check=True, text=True, cwd=folder)
    return float(done.stdout)


def memory_mb(pid: int, field: str = "VmHWM") -> float:
    """A /proc figure of the process: VmHWM (peak resident) or VmRSS (resident now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def first_query(folder: Path, token: str, dataset: str) -> tuple[float, float]:
    """A fresh server's first query on ``dataset``: wall seconds, and how many MB its peak
    resident memory rose above what it held before."""
    server = ServerProcess(folder / "admin.sqlite", folder).start(timeout=120)
    try:
        assert server.process is not None
        api = Api(server.api, token)
        # The engines warmed up on a 10-row file: only the load of ``dataset`` remains.
        warm = api.sql("SMALL", QUERY, 1.0, fresh=True)
        assert warm.status_code == 200, warm.text
        before = memory_mb(server.process.pid, "VmRSS")
        start = time.perf_counter()
        reply = api.sql(dataset, QUERY, 1.0, fresh=True)
        elapsed = time.perf_counter() - start
        assert reply.status_code == 200, reply.text
        return elapsed, memory_mb(server.process.pid) - before
    finally:
        server.stop()


def measure(rows: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        arrow_mb = generate(rows, folder)
        small = folder / "small.csv"
        pd.read_csv(folder / "data.csv", nrows=10).to_csv(small, index=False)
        _, base_mb = add_dataset(folder, "SMALL", small)
        added = {
            kind: add_dataset(folder, kind.upper(), folder / f"data.{kind}")
            for kind in ("parquet", "csv")
        }
        added = {kind: (s, mb - base_mb) for kind, (s, mb) in added.items()}
        store = SqliteStore(folder / "admin.sqlite")
        admin = AdminService(store)
        token = admin.add_user("bench")
        for name in ("PARQUET", "CSV", "SMALL"):
            admin.grant("bench", name, 1000.0, 1e-3)
        store.close()
        queried = {kind: first_query(folder, token, kind.upper()) for kind in ("parquet", "csv")}
        loaded = {kind: load_only(folder, folder / f"data.{kind}") for kind in ("parquet", "csv")}
        lines = []
        for kind in ("parquet", "csv"):
            (add_s, add_mb), (query_s, query_mb) = added[kind], queried[kind]
            lines.append(
                f"{rows:>11,} {kind:>8} {arrow_mb:>9.0f} {add_s:>9.1f} {add_mb:>9.0f} "
                f"{query_s:>9.1f} {query_mb:>9.0f} {query_mb / arrow_mb:>8.1f} "
                f"{loaded[kind]:>9.0f} {loaded[kind] / arrow_mb:>7.1f}"
            )
        ratio = (
            f"{'':>11} {'csv/pq':>8} {'':>9} {added['csv'][0] / added['parquet'][0]:>9.1f} "
            f"{'':>9} {queried['csv'][0] / queried['parquet'][0]:>9.1f}"
        )
        return [*lines, ratio]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    args = parser.parse_args()
    print(
        f"{'rows':>11} {'format':>8} {'arrow MB':>9} {'add s':>9} {'add +MB':>9} "
        f"{'first s':>9} {'load +MB':>9} {'x arrow':>8} {'conf +MB':>9} {'conf x':>7}"
    )
    for rows in args.rows:
        for line in measure(rows):
            print(line, flush=True)
    print(json.dumps({"query": QUERY}))


if __name__ == "__main__":
    main()
