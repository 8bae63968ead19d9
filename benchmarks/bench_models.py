"""How long synthetic data and DP models take to fit, and what they cost in memory.

For generated datasets shaped like a survey (two categorical columns, a small int, two bounded
numbers; 10k and 100k rows by default), prints per synthesizer (MST, AIM) and per DiffPrivLib
model: the median wall time of a fit through the engine (rows read, bounded per person, coded
or resized, fitted, sampled), and the process's peak resident memory.

    .venv/bin/python benchmarks/bench_models.py [--rows 10000 100000] [--repeat 3]
                                                [--columns 3] [--skip-aim]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lomas_server.engines.diffprivlib_engine import DiffprivlibEngine
from lomas_server.engines.diffprivlib_models import model_spec
from lomas_server.engines.synth_engine import SynthEngine, SynthQuery
from lomas_server.metadata import DatasetMetadata

METADATA = {
    "max_ids": 2,
    "columns": {
        "pid": {"type": "int", "private_id": True},
        "region": {"type": "string", "categories": ["north", "south", "east", "west"]},
        "employed": {"type": "boolean"},
        "household": {"type": "int", "lower": 1, "upper": 8},
        "age": {"type": "int", "lower": 0, "upper": 100},
        "income": {"type": "float", "lower": 0.0, "upper": 200000.0},
    },
}
SYNTH_COLUMNS = ["region", "employed", "household", "age", "income"]
MODELS = [
    ("logistic_regression", ["age", "income", "household"], "employed", {}),
    ("pca", ["age", "income", "household"], None, {"n_components": 2}),
]


def table(rows: int, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    age = rng.integers(0, 101, rows)
    income = np.clip(rng.normal(30000 + 600 * age, 15000), 0, 200000)
    return pa.table(
        {
            "pid": rng.integers(0, rows // 2, rows),
            "region": rng.choice(["north", "south", "east", "west"], rows),
            "employed": income > 40000,
            "household": rng.integers(1, 9, rows),
            "age": age,
            "income": income,
        }
    )


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--columns", type=int, default=3, help="columns the synthesizers model")
    parser.add_argument("--skip-aim", action="store_true")
    args = parser.parse_args()
    metadata = DatasetMetadata.from_dict(METADATA)
    synth, models = SynthEngine(), DiffprivlibEngine()
    synthesizers = ["mst"] if args.skip_aim else ["mst", "aim"]
    try:
        for rows in args.rows:
            data = table(rows)
            print(f"\n{rows:,} rows ({data.nbytes / 1e6:.1f} MB in Arrow)")
            for name in synthesizers:
                query = SynthQuery(name, tuple(SYNTH_COLUMNS[: args.columns]), 1000, 10)
                plan = synth.plan(metadata, query, 1.0, 1e-6)
                seconds = timed(
                    lambda p=plan, d=data: synth.execute(p, metadata, lambda: d, owner="bench"),
                    args.repeat,
                )
                print(f"  synth {name:<20} {seconds * 1000:9.0f} ms")
            for model, features, target, options in MODELS:
                spec = model_spec(metadata, model, features, target, options, scaler=True)
                plan = models.plan(metadata, spec, 1.0)
                seconds = timed(
                    lambda p=plan, d=data: models.execute(p, metadata, lambda: d, owner="bench"),
                    args.repeat,
                )
                print(f"  model {model:<20} {seconds * 1000:9.0f} ms")
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  peak resident memory so far: {peak:.0f} MB")
    finally:
        synth.close()
        models.close()


if __name__ == "__main__":
    main()
