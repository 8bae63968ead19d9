"""A bounded load run against a real stand-alone server on loopback, checked for correctness.

Starts ``python -m lomas_server`` on a fresh admin store (SQLite, or MongoDB-wire on a FerretDB
started for the run) holding the sample PENGUIN and TITANIC datasets and six analysts. Then
``--clients`` threads, each with its own ``requests.Session`` and acting for one of the
analysts, send ``--queries`` requests in all: SmartNoise-SQL and OpenDP cost estimates, fresh
releases, releases that replay an earlier identical one, and budget reads (a fixed,
seeded mix). One analyst's grant on PENGUIN is small: it runs out during the run, so some of
that analyst's releases are refused (403 ``budget_exceeded``).

Prints the requests sent, the count per status (and error code), the throughput, p50/p95
latency (overall and per kind of request), the server's resident memory (VmRSS from
/proc/PID/status) after warm-up (the first 10% of the requests) and at the end, with the
growth, and then checks, from the admin store itself:

- no reply other than 200 and 403 ``budget_exceeded``, and no refusal for a grant that still
  had room for the query (only the small grant may refuse), no traceback in the server log;
- per analyst and dataset, the ledger total equals, in exact units (``PrivacyAmount``), the sum
  of the costs the replies said were charged; every ledger entry belongs to exactly one paid
  reply, with the same amount (nothing lost, nothing spent twice);
- every charge equals the cost estimate of the same request; replays cost nothing and name a
  release of the same analyst;
- no grant (nor the dataset-wide cap on TITANIC) exceeded, and the small grant was reached;
- every paid release is archived as ``done``; ``/budget`` agrees with the ledger.

It exits 1 when one of these fails (memory growth is printed, never judged).

    .venv/bin/python benchmarks/bench_load.py [--clients 16] [--queries 2000]
                                              [--store sqlite|mongo]

``tests/integration/test_load.py`` runs the same ``run_load`` smaller and asserts the checks.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lomas_server.accounting import PrivacyAmount
from lomas_server.service.admin import AdminService
from lomas_server.store import open_store
from tests.conftest import seed_datasets
from tests.servers import Api, FerretDB, ServerProcess

USERS = [f"analyst{i}" for i in range(6)]
CAPPED = ("analyst0", "PENGUIN")  # the one grant meant to run out during the run
BIG_GRANT = (1000.0, 1e-3)
TITANIC_CAP = (1e5, 1e-2)  # a dataset-wide cap, far above what the run spends, checked too

SQL = {
    "PENGUIN": [
        ("SELECT COUNT(*) AS n FROM df", 0.0),
        (
            "SELECT species, COUNT(*) AS n, AVG(bill_length_mm) AS bill FROM df GROUP BY species",
            0.0,
        ),
        ("SELECT island, SUM(body_mass_g) AS mass FROM df GROUP BY island", 0.0),
    ],
    "TITANIC": [
        ("SELECT Pclass, COUNT(*) AS n FROM df GROUP BY Pclass", 0.0),
        ("SELECT Sex, AVG(Age) AS age FROM df GROUP BY Sex", 0.0),
        # SibSp has no public keys: its groups are thresholded, which is charged delta
        ("SELECT SibSp, COUNT(*) AS n FROM df GROUP BY SibSp", 1e-6),
    ],
}
OPENDP = {
    "PENGUIN": [
        {
            "group_by": ["species"],
            "aggregates": [{"op": "count"}, {"op": "mean", "column": "bill_length_mm"}],
        },
        {"aggregates": [{"op": "count"}, {"op": "sum", "column": "body_mass_g"}]},
    ],
    "TITANIC": [
        {"group_by": ["Sex"], "aggregates": [{"op": "count"}]},
        {"aggregates": [{"op": "mean", "column": "Fare"}]},
    ],
}
FRESH_EPSILONS = (0.01, 0.02, 0.05)
REPLAY_EPSILONS = (0.05, 0.1)  # few values, so that identical requests recur and replay
# (kind, weight): what one request is, drawn with these weights
MIX = (
    ("sql-cost", 12),
    ("opendp-cost", 8),
    ("sql-fresh", 22),
    ("sql-replay", 20),
    ("opendp-fresh", 16),
    ("opendp-replay", 14),
    ("budget", 8),
)
RELEASES = ("sql-fresh", "sql-replay", "opendp-fresh", "opendp-replay")


@dataclass(frozen=True)
class Request:
    kind: str
    dataset: str
    path: str
    body: dict[str, Any] | None
    template: str  # the request without 'fresh': its estimate and its charges must agree


@dataclass
class Outcome:
    client: int
    user: str
    request: Request
    status: int  # 0: no HTTP reply at all
    body: Any
    seconds: float
    problem: str = ""


@dataclass
class LoadReport:
    clients: int
    store: str
    outcomes: list[Outcome]
    seconds: float
    rss_warm_kb: int
    rss_end_kb: int
    rss_peak_kb: int
    ledger_lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def status_counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for outcome in self.outcomes:
            code = outcome.body.get("error") if isinstance(outcome.body, dict) else None
            label = str(outcome.status) if outcome.status else "no reply"
            counts[f"{label} {code}" if code else label] += 1
        return counts

    def summary(self) -> str:
        sent = len(self.outcomes)
        latencies = sorted(o.seconds for o in self.outcomes)
        lines = [
            f"store {self.store}, {self.clients} clients, {sent} requests in "
            f"{self.seconds:.1f} s: {sent / self.seconds:.1f} requests/s",
            "statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(self.status_counts().items())),
            f"latency p50 {_ms(_quantile(latencies, 0.5))}, p95 {_ms(_quantile(latencies, 0.95))}",
        ]
        by_kind: dict[str, list[float]] = defaultdict(list)
        for outcome in self.outcomes:
            by_kind[outcome.request.kind].append(outcome.seconds)
        for kind, _ in MIX:
            times = sorted(by_kind.get(kind, []))
            if times:
                lines.append(
                    f"  {kind:<14} {len(times):>5}  p50 {_ms(_quantile(times, 0.5))}"
                    f"  p95 {_ms(_quantile(times, 0.95))}"
                )
        lines.append(
            f"server RSS after warm-up {self.rss_warm_kb / 1024:.1f} MB, at the end "
            f"{self.rss_end_kb / 1024:.1f} MB, growth {(self.rss_end_kb - self.rss_warm_kb) / 1024:+.1f} MB"
            f" (peak {self.rss_peak_kb / 1024:.1f} MB)"
        )
        lines.extend(self.ledger_lines)
        return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[round(q * 100) - 1]


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def capped_epsilon(queries: int) -> float:
    """A grant that the capped analyst's PENGUIN releases use up about a third of the way in.

    Each analyst sends about queries/6 requests, half on PENGUIN, of which about 40% are paid
    releases (fresh ones always, replayable ones the first time) at about 0.07 epsilon (AVG
    and grouped statistics pay for several noisy values; Gaussian noise converts dearly)."""
    expected = queries / len(USERS) / 2 * 0.4 * 0.07
    return round(max(0.1, expected / 3), 2)


def draw(rng: random.Random) -> Request:
    kinds, weights = zip(*MIX, strict=True)
    kind = rng.choices(kinds, weights)[0]
    dataset = rng.choice(("PENGUIN", "TITANIC"))
    base = f"/datasets/{dataset}"
    if kind == "budget":
        return Request(kind, dataset, f"{base}/budget", None, "")
    if kind.startswith("sql"):
        query, delta = rng.choice(SQL[dataset])
        epsilon = rng.choice(REPLAY_EPSILONS if kind != "sql-fresh" else FRESH_EPSILONS)
        body: dict[str, Any] = {"query": query, "epsilon": epsilon, "delta": delta}
        template = f"sql|{dataset}|{query}|{epsilon}|{delta}"
        if kind == "sql-cost":
            return Request(kind, dataset, f"{base}/smartnoise-sql/cost", body, template)
        if kind == "sql-fresh":
            body["fresh"] = True
        return Request(kind, dataset, f"{base}/smartnoise-sql", body, template)
    index = rng.randrange(len(OPENDP[dataset]))
    query = OPENDP[dataset][index]
    if rng.random() < 0.25:
        # Gaussian noise: in a basic dataset its rho is charged as a converted (epsilon, delta)
        rho = rng.choice((0.0005, 0.001))
        body = {"query": query, "mechanism": "gaussian", "rho": rho}
        template = f"opendp|{dataset}|{index}|rho={rho}"
    else:
        epsilon = rng.choice(REPLAY_EPSILONS if kind != "opendp-fresh" else FRESH_EPSILONS)
        body = {"query": query, "epsilon": epsilon}
        template = f"opendp|{dataset}|{index}|eps={epsilon}"
    if kind == "opendp-cost":
        return Request(kind, dataset, f"{base}/opendp/cost", body, template)
    if kind == "opendp-fresh":
        body["fresh"] = True
    return Request(kind, dataset, f"{base}/opendp", body, template)


def seed_store(store_url: str, data_dir: Path, queries: int) -> tuple[dict[str, str], dict]:
    """Datasets, analysts and grants; returns the tokens and the grants as stated."""
    store = open_store(store_url)
    try:
        admin = AdminService(store)
        seed_datasets(admin, data_dir)
        admin.set_limits("TITANIC", max_query=None, cap=TITANIC_CAP)
        tokens, grants = {}, {}
        for user in USERS:
            tokens[user] = admin.add_user(user)
            for dataset in ("PENGUIN", "TITANIC"):
                grant = (capped_epsilon(queries), 0.0) if (user, dataset) == CAPPED else BIG_GRANT
                admin.grant(user, dataset, *grant)
                grants[user, dataset] = grant
    finally:
        store.close()
    return tokens, grants


def run_load(
    workdir: Path,
    *,
    clients: int = 16,
    queries: int = 2000,
    store: str = "sqlite",
    seed: int = 0,
    ferretdb_url: str | None = None,
) -> LoadReport:
    """Start a server on a fresh store in ``workdir``, send the load, check the store."""
    ferret = None
    if store == "sqlite":
        store_url: str = f"sqlite:///{workdir / 'admin.sqlite'}"
        server_store: Path | str = workdir / "admin.sqlite"
    elif store == "mongo":
        if ferretdb_url is None:
            ferret = FerretDB(workdir / "ferretdb").start()
            ferretdb_url = ferret.url
        store_url = server_store = f"{ferretdb_url.rstrip('/')}/load_{random.randrange(16**8):08x}"
    else:
        raise ValueError(f"unknown store {store!r}")
    try:
        tokens, grants = seed_store(store_url, workdir / "data", queries)
        server = ServerProcess(server_store, workdir).start(timeout=120)
        try:
            report = _drive(server, tokens, clients, queries, seed, store)
            _check(report, server, store_url, tokens, grants)
        finally:
            server.stop()
    finally:
        if ferret is not None:
            ferret.stop()
    return report


def _drive(
    server: ServerProcess, tokens: dict[str, str], clients: int, queries: int, seed: int, store: str
) -> LoadReport:
    pid = server.process.pid  # type: ignore[union-attr]
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    warm_up = max(1, queries // 10)
    rss_warm = [0]
    start_gate = threading.Barrier(clients)

    def client(index: int, count: int) -> None:
        rng = random.Random(seed * 10_000 + index)
        user = USERS[index % len(USERS)]
        api = Api(server.api, tokens[user])
        mine = []
        start_gate.wait()
        for _ in range(count):
            request = draw(rng)
            started = time.perf_counter()
            status, body, problem = 0, None, ""
            try:
                if request.body is None:
                    reply = api.get(request.path)
                else:
                    reply = api.post(request.path, request.body)
                status = reply.status_code
                try:
                    body = reply.json()
                except ValueError:
                    body, problem = reply.text[:500], "the reply is not JSON"
            except Exception as err:  # a dropped connection or a timeout is a failure
                problem = f"{type(err).__name__}: {err}"
            mine.append(
                Outcome(index, user, request, status, body, time.perf_counter() - started, problem)
            )
            with lock:
                outcomes.append(mine[-1])
                if len(outcomes) == warm_up:
                    rss_warm[0] = proc_status_kb(pid, "VmRSS")
        api.session.close()

    shares = [queries // clients + (1 if i < queries % clients else 0) for i in range(clients)]
    threads = [threading.Thread(target=client, args=(i, n)) for i, n in enumerate(shares)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return LoadReport(
        clients=clients,
        store=store,
        outcomes=outcomes,
        seconds=seconds,
        rss_warm_kb=rss_warm[0],
        rss_end_kb=proc_status_kb(pid, "VmRSS"),
        rss_peak_kb=proc_status_kb(pid, "VmHWM"),
    )


def _charged(body: dict[str, Any]) -> PrivacyAmount:
    """The cost a reply states, back in the ledger's exact units (basic datasets)."""
    return PrivacyAmount.cost(body["cost"]["epsilon"], body["cost"]["delta"])


def _check(
    report: LoadReport,
    server: ServerProcess,
    store_url: str,
    tokens: dict[str, str],
    grants: dict[tuple[str, str], tuple[float, float]],
) -> None:
    failures = report.failures
    paid: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    estimates: dict[str, PrivacyAmount] = {}
    refused: Counter[tuple[str, str]] = Counter()
    replays: list[Outcome] = []
    for o in report.outcomes:
        body = o.body if isinstance(o.body, dict) else {}
        if o.problem:
            failures.append(f"{o.request.kind} {o.request.path}: {o.problem} ({o.status})")
            continue
        if o.status == 403 and body.get("error") == "budget_exceeded":
            refused[o.user, o.request.dataset] += 1
            if o.request.kind not in RELEASES:
                failures.append(f"a {o.request.kind} request was refused for budget")
            continue
        if o.status != 200:
            failures.append(
                f"{o.request.kind} {o.request.path} by {o.user}: {o.status} {str(o.body)[:300]}"
            )
            continue
        if o.request.kind.endswith("-cost"):
            cost = _charged(body)
            if estimates.setdefault(o.request.template, cost) != cost:
                failures.append(f"two estimates differ for {o.request.template}")
        elif o.request.kind in RELEASES:
            if body.get("replay_of") is None:
                paid[o.user, o.request.dataset].append(o)
            else:
                replays.append(o)
    for (user, dataset), count in sorted(refused.items()):
        if (user, dataset) != CAPPED:
            failures.append(f"{user} was refused {count} times on {dataset}, with budget to spare")
    if refused[CAPPED] == 0:
        failures.append(f"{CAPPED[0]}'s small grant on {CAPPED[1]} was never reached")
    for outcomes in paid.values():
        for o in outcomes:
            estimate = estimates.get(o.request.template)
            if estimate is not None and estimate != _charged(o.body):
                failures.append(
                    f"{o.request.template} was charged {_charged(o.body)}, estimated {estimate}"
                )
    for o in replays:
        if not _charged(o.body).is_zero():
            failures.append(f"a replay of {o.body['replay_of']} cost {o.body['cost']}")

    store = open_store(store_url)
    try:
        for user in USERS:
            for dataset in ("PENGUIN", "TITANIC"):
                _check_pair(report, store, user, dataset, paid[user, dataset], grants, replays)
                _check_budget_endpoint(report, server, tokens[user], user, dataset, store)
        for dataset in ("PENGUIN", "TITANIC"):
            record = store.get_dataset(dataset)
            total = store.dataset_spent(dataset)
            expected = PrivacyAmount.zero()
            for user in USERS:
                expected = expected + store.spent(user, dataset)
            if total != expected:
                failures.append(f"{dataset}: dataset total {total} != sum over users {expected}")
            if record is not None and record.cap is not None and not total.fits_within(record.cap):
                failures.append(f"{dataset}: dataset-wide cap {record.cap} exceeded: {total}")
    finally:
        store.close()
    log = server.log()
    if "Traceback" in log:
        at = log.index("Traceback")
        failures.append("a traceback in the server log:\n" + log[at : at + 3000])


def _check_pair(
    report: LoadReport,
    store: Any,
    user: str,
    dataset: str,
    paid: list[Outcome],
    grants: dict[tuple[str, str], tuple[float, float]],
    replays: list[Outcome],
) -> None:
    failures = report.failures
    where = f"{user}/{dataset}"
    replied = PrivacyAmount.zero()
    by_query: dict[str, PrivacyAmount] = {}
    for o in paid:
        replied = replied + _charged(o.body)
        if o.body["query_id"] in by_query:
            failures.append(f"{where}: two paid replies name query {o.body['query_id']}")
        by_query[o.body["query_id"]] = _charged(o.body)
    ledger = store.ledger(user=user, dataset=dataset)
    ledger_total = PrivacyAmount.zero()
    seen: Counter[str] = Counter()
    for entry in ledger:
        ledger_total = ledger_total + entry.amount
        seen[entry.query_id] += 1
        if entry.query_id not in by_query:
            failures.append(f"{where}: ledger entry {entry.seq} ({entry.amount}) has no paid reply")
        elif by_query[entry.query_id] != entry.amount:
            failures.append(
                f"{where}: query {entry.query_id} replied {by_query[entry.query_id]}, "
                f"ledger {entry.amount}"
            )
    for query_id, times in seen.items():
        if times > 1:
            failures.append(f"{where}: query {query_id} is in the ledger {times} times")
    for query_id in by_query:
        if query_id not in seen:
            failures.append(f"{where}: paid query {query_id} is not in the ledger (lost spend)")
    spent = store.spent(user, dataset)
    if not (spent == ledger_total == replied):
        failures.append(
            f"{where}: store spent {spent}, ledger sum {ledger_total}, replies {replied}"
        )
    cap = PrivacyAmount.budget(*grants[user, dataset])
    if not spent.fits_within(cap):
        failures.append(f"{where}: spent {spent} exceeds its grant {cap}")
    archive = {entry.query_id: entry for entry in store.archive(user, dataset=dataset)}
    for query_id in by_query:
        entry = archive.get(query_id)
        if entry is None or entry.status != "done":
            failures.append(f"{where}: paid query {query_id} archived as {entry and entry.status}")
    if set(archive) != set(by_query):
        failures.append(f"{where}: {len(archive)} archive entries for {len(by_query)} paid replies")
    for o in replays:
        if o.user == user and o.request.dataset == dataset:
            earlier = archive.get(o.body["replay_of"])
            if earlier is None or earlier.status != "done":
                failures.append(f"{where}: replay of {o.body['replay_of']}, not a done release")
    report.ledger_lines.append(
        f"  {where:<18} {len(ledger):>4} ledger entries, spent eps={spent.epsilon:.6f} "
        f"delta={spent.delta:.3g} of eps={cap.epsilon:g} = replies "
        f"{'(exact)' if spent == replied else '(MISMATCH)'}"
    )


def _check_budget_endpoint(
    report: LoadReport, server: ServerProcess, token: str, user: str, dataset: str, store: Any
) -> None:
    budget = Api(server.api, token).get(f"/datasets/{dataset}/budget").json()
    expected = store.spent(user, dataset).as_dict()
    if budget.get("spent") != expected:
        report.failures.append(
            f"{user}/{dataset}: /budget says spent {budget.get('spent')}, ledger {expected}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--store", choices=("sqlite", "mongo"), default="sqlite")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lomas-load-") as tmp:
        report = run_load(
            Path(tmp), clients=args.clients, queries=args.queries, store=args.store, seed=args.seed
        )
    print(report.summary())
    if report.failures:
        print(f"\nFAILED: {len(report.failures)} problems")
        for failure in report.failures[:50]:
            print("  " + failure)
        return 1
    print("\nOK: no errors besides budget refusals, ledger exact, no cap exceeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
