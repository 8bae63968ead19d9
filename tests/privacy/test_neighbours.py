"""The standing proof: queries generated from the allow-list, run on pairs of neighbouring
datasets (one person added, with adversarial values), on every engine, must be
indistinguishable except through their noise.

Over HTTP, against real servers: for each generated query and each pair, both datasets give the
same status and error (word for word), the same columns, cost and accuracy, and releases whose
groups are what the rule allows: the declared grid, in order, for public keys; one row without
GROUP BY; above a threshold otherwise, never a value only the added person holds.

In process, with the noise removed by a test-only hook (exact.py): the exact aggregates of the
two datasets differ, summed over all groups, by no more than the sensitivity the metadata gives
each noisy value (rows per person times the largest clamped magnitude).

The default run covers a few hundred query-pair combinations per engine; ``-m slow`` (part of
.ci/run) runs thousands, and Spark. Each test prints what it ran.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lomas_server.datasets import conformed_table
from lomas_server.engines.opendp_engine import Noise, OpenDPEngine
from lomas_server.engines.opendp_query import parse_opendp_query
from lomas_server.engines.smartnoise_sql import SmartnoiseSqlEngine
from lomas_server.errors import ServiceError
from lomas_server.metadata import DatasetMetadata
from tests.privacy.exact import largest_change, opendp_exact, sql_exact
from tests.privacy.neighbours import (
    ADVERSARIAL_VALUES,
    METADATA,
    Pair,
    arrow_table,
    pairs,
    write_csv,
    write_parquet,
    write_postgres,
)
from tests.privacy.queries import Case, opendp_cases, sql_cases
from tests.servers import Api, ServerProcess

DEFAULT = {"sql": 24, "opendp": 12}
SLOW = {"sql": 120, "opendp": 50}
SPARK = {"sql": 12, "opendp": 0}  # each Spark query takes about a second
WORKERS = 4


@dataclass
class Datasets:
    """Registered dataset names: (engine, kind) -> base, (engine, kind, adversary) -> neighbour."""

    base: dict[tuple[str, str], str]
    neighbour: dict[tuple[str, str, str], str]
    token: str


@pytest.fixture(scope="module")
def scanning(store_path, shared_dir):
    """A server that scans every Parquet dataset at each query instead of loading it."""
    server = ServerProcess(
        store_path, shared_dir, extra_args=("--LomasServerApp.scan_parquet_above_bytes=0",)
    ).start()
    yield server
    server.stop()


def _register(admin, folder: Path, postgres_dsn: str | None, engines: tuple[str, ...]) -> Datasets:
    """Every pair's datasets on each of ``engines``, and a user with budget on all of them."""
    tag = uuid.uuid4().hex[:6]
    user = f"tester-{tag}"
    token = admin.add_user(user)
    base: dict[tuple[str, str], str] = {}
    neighbour: dict[tuple[str, str, str], str] = {}

    def register(engine: str, kind: str, label: str, rows: list[dict[str, Any]]) -> str:
        name = f"NB_{engine}_{kind}_{label}_{tag}".upper()
        if engine == "postgres":
            table = name.lower()
            assert postgres_dsn is not None
            write_postgres(rows, kind, postgres_dsn, table)
            location: Any = f"{postgres_dsn}?table={table}"
        elif engine == "duckdb":
            location = folder / f"{name}.csv"
            write_csv(rows, kind, location)
        else:
            location = folder / f"{name}.parquet"
            write_parquet(rows, kind, location)
        # The neighbour's rows would not pass add-dataset's strict check (a missing id, NaN
        # in a column, ...): it is the data changing after it was added, read at query time.
        admin.add_dataset(
            name,
            location,
            METADATA[kind],
            check_data=label == "base",
            engine="spark" if engine == "spark" else None,
        )
        admin.grant(user, name, 1e6, 0.5)
        return name

    for engine in engines:
        for pair in pairs():
            key = (engine, pair.kind)
            if key not in base:
                base[key] = register(engine, pair.kind, "base", pair.base)
            neighbour[(engine, pair.kind, pair.adversary)] = register(
                engine, pair.kind, pair.adversary, pair.neighbour
            )
    return Datasets(base, neighbour, token)


@pytest.fixture(scope="module")
def registered(admin, tmp_path_factory, postgres_server) -> Datasets:
    folder = tmp_path_factory.mktemp("neighbours")
    return _register(admin, folder, postgres_server.dsn, ("duckdb", "scan", "postgres"))


@pytest.fixture(scope="module")
def registered_on_spark(admin, tmp_path_factory) -> Datasets:
    return _register(admin, tmp_path_factory.mktemp("neighbours-spark"), None, ("spark",))


def _cases(kind: str, counts: dict[str, int]) -> list[Case]:
    return sql_cases(kind, counts["sql"]) + opendp_cases(kind, counts["opendp"])


def _request(api: Any, dataset: str, case: Case) -> tuple[int, dict[str, Any]]:
    """One fresh release; ``api`` gives this thread's client."""
    path = "smartnoise-sql" if case.engine == "sql" else "opendp"
    reply = api().post(f"/datasets/{dataset}/{path}", {**case.body, "fresh": True})
    return reply.status_code, reply.json()


def _keys(case: Case, reply: dict[str, Any]) -> list[tuple[Any, ...]]:
    width = len(case.group_columns)
    return [tuple(row[:width]) for row in reply["result"]["data"]]


def _same_answer(
    case: Case, base: tuple[int, dict], near: tuple[int, dict], names: tuple[str, str]
) -> str | None:
    """Why the two replies tell the datasets apart, or None."""
    (status, body), (near_status, near_body) = base, near
    if status >= 500 or near_status >= 500:
        return f"a server error: {status} / {near_status}"
    if status != near_status:
        return f"status {status} on the base, {near_status} on the neighbour"
    if status != 200:
        if case.expect_refusal and status != 400:
            return f"expected a refusal, got {status}"
        words = [
            str(b.get("message", "")).replace(n, "<dataset>")
            for b, n in ((body, names[0]), (near_body, names[1]))
        ]
        if body.get("error") != near_body.get("error") or words[0] != words[1]:
            return f"different errors: {body} / {near_body}"
        return None
    if case.expect_refusal:
        return "a query that must be refused was answered"
    for field in ("cost", "accuracy"):
        if body[field] != near_body[field]:
            return f"different {field}: {body[field]} / {near_body[field]}"
    if body["result"]["columns"] != near_body["result"]["columns"]:
        return "different columns"
    keys, near_keys = _keys(case, body), _keys(case, near_body)
    ordered = "ORDER BY" not in case.text
    if case.grid is not None:
        expected = [tuple(k) for k in case.grid]
        for shown in (keys, near_keys):
            if (shown if ordered else sorted(shown, key=repr)) != (
                expected if ordered else sorted(expected, key=repr)
            ):
                return f"groups {shown} are not the declared grid {expected}"
    elif not case.group_columns and (len(keys) != 1 or len(near_keys) != 1):
        return "an ungrouped query did not release one row"
    for key in near_keys:
        if set(key) & ADVERSARIAL_VALUES:
            return f"a group key only the added person holds was released: {key!r}"
    return None


def _run_over_http(
    engine: str, server: ServerProcess, data: Datasets, counts: dict[str, int]
) -> Counter:
    local = threading.local()

    def api() -> Api:
        if not hasattr(local, "api"):
            local.api = Api(server.api, data.token)
        return local.api

    tally: Counter = Counter()
    failures: list[str] = []
    for kind in METADATA:
        cases = _cases(kind, counts)
        base_name = data.base[(engine, kind)]
        neighbours = {a: n for (e, k, a), n in data.neighbour.items() if (e, k) == (engine, kind)}
        with ThreadPoolExecutor(WORKERS) as pool:
            on_base = list(pool.map(_request, [api] * len(cases), [base_name] * len(cases), cases))
            jobs = [
                (adversary, name, i)
                for adversary, name in neighbours.items()
                for i in range(len(cases))
            ]
            replies = list(
                pool.map(
                    _request, [api] * len(jobs), [j[1] for j in jobs], [cases[j[2]] for j in jobs]
                )
            )
        for (adversary, name, i), reply in zip(jobs, replies, strict=True):
            tally["pairs"] += 1
            tally["answered" if reply[0] == 200 else "refused"] += 1
            problem = _same_answer(cases[i], on_base[i], reply, (base_name, name))
            if problem:
                failures.append(f"[{engine}/{kind}/{adversary}] {cases[i].text}: {problem}")
        tally["queries"] += len(cases)
        tally["datasets"] += 1 + len(neighbours)
    assert not failures, f"{len(failures)} pair(s) told apart:\n" + "\n".join(failures[:20])
    assert tally["answered"] >= tally["pairs"] // 2, "most generated queries should be answerable"
    return tally


def _report(capsys, what: str, tally: Counter) -> None:
    with capsys.disabled():
        print(
            f"\nprivacy tester [{what}]: {tally['queries']} queries x neighbouring pairs = "
            f"{tally['pairs']} pair runs ({tally['answered']} answered, {tally['refused']} refused "
            f"alike) over {tally['datasets']} datasets"
        )


@pytest.mark.parametrize("engine", ["duckdb", "scan", "postgres"])
def test_neighbours_answer_alike(engine, registered, server, scanning, capsys):
    tally = _run_over_http(engine, scanning if engine == "scan" else server, registered, DEFAULT)
    _report(capsys, engine, tally)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["duckdb", "scan", "postgres"])
def test_neighbours_answer_alike_thoroughly(engine, registered, server, scanning, capsys):
    tally = _run_over_http(engine, scanning if engine == "scan" else server, registered, SLOW)
    _report(capsys, f"{engine}, thorough", tally)


@pytest.mark.slow
def test_neighbours_answer_alike_on_spark(registered_on_spark, server, capsys):
    tally = _run_over_http("spark", server, registered_on_spark, SPARK)
    _report(capsys, "spark", tally)


# -- exact aggregates, noise removed ---------------------------------------------------------


def _exact(case: Case, metadata: DatasetMetadata, rows: Any, engines: tuple[Any, Any], label: str):
    sql, opendp = engines
    table = conformed_table(rows, metadata)
    if case.engine == "sql":
        plan = sql.plan("X", metadata, case.body["query"], case.body["epsilon"], case.body["delta"])
        return sql_exact(sql, plan, metadata, label, table)
    noise = Noise(
        case.body.get("mechanism", "laplace"),
        case.body.get("epsilon", case.body.get("rho")),
        delta=case.body.get("delta"),
    )
    plan = opendp.plan("X", metadata, parse_opendp_query(case.body["query"], metadata), noise)
    return opendp_exact(plan, metadata, table)


@pytest.mark.parametrize(
    "counts", [DEFAULT, pytest.param(SLOW, marks=pytest.mark.slow)], ids=["default", "thorough"]
)
def test_exact_aggregates_move_by_at_most_the_sensitivity(counts, capsys):
    engines = (SmartnoiseSqlEngine(), OpenDPEngine())
    tally: Counter = Counter()
    failures = []
    by_kind: dict[str, list[Pair]] = {}
    for pair in pairs():
        by_kind.setdefault(pair.kind, []).append(pair)
    for kind, kind_pairs in by_kind.items():
        metadata = DatasetMetadata.from_dict(METADATA[kind])
        base_rows = arrow_table(kind_pairs[0].base, kind)
        for case in _cases(kind, counts):
            if case.expect_refusal or case.thresholded or "LIMIT" in case.text:
                continue  # thresholds are the delta part of the guarantee: over HTTP above
            try:
                names, on_base, bounds = _exact(case, metadata, base_rows, engines, "base")
            except ServiceError:
                continue  # refused alike on both: over HTTP above
            tally["queries"] += 1
            for pair in kind_pairs:
                neighbour = arrow_table(pair.neighbour, kind)
                _, near, _ = _exact(case, metadata, neighbour, engines, pair.adversary)
                tally["pairs"] += 1
                for name, change, bound in zip(
                    names, largest_change(on_base, near), bounds, strict=True
                ):
                    tally["values"] += 1
                    if change > bound * (1 + 1e-9) + 1e-6:
                        failures.append(
                            f"[{kind}/{pair.adversary}] {case.text}: {name} moved by {change:g}, "
                            f"more than its sensitivity {bound:g}"
                        )
    for engine in engines:
        engine.close()
    assert not failures, "\n".join(failures[:20])
    assert tally["pairs"] > 0
    with capsys.disabled():
        print(
            f"\nprivacy tester [exact aggregates]: {tally['queries']} queries x neighbouring "
            f"pairs = {tally['pairs']} pair runs, {tally['values']} noisy values within their "
            "sensitivity"
        )
