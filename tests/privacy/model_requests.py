"""Synthetic-data and DiffPrivLib requests over the neighbouring datasets' metadata, and what
their releases may look like whatever the data holds.

Each request says whether the server must refuse it (a refusal is decided from the request and
the metadata, so it is the same on every dataset). An answer's shape comes from the request and
the metadata alone: synthetic rows have the asked columns, the asked number of rows, and only
values of each column's declared domain (a category, a boolean, a number within its bounds,
NULL only where the column may lack a value); a model has the parameters its kind has, of the
sizes its features and declared classes give, with the declared classes in declared order, and
only finite numbers. ``*_problem`` says what in a reply breaks that, or None.

``answer_alike`` sends every request to every registered dataset over HTTP, one fresh release
each, and compares the replies of each pair (``release_problem``).
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tests.privacy.neighbours import METADATA, adversaries, base_of, register, small_datasets
from tests.servers import Api

EPSILON = 1.0
DELTA = 1e-5


@dataclass(frozen=True)
class Request:
    path: str  # "synth" or "diffprivlib"
    body: dict[str, Any]
    expect_refusal: bool = False

    @property
    def label(self) -> str:
        body = {k: v for k, v in self.body.items() if k not in ("epsilon", "delta")}
        return f"{self.path} {body}"


# -- synthetic data ------------------------------------------------------------------------------
def synth_requests(kind: str, synthesizer: str) -> list[Request]:
    """One request modelling declared categories, a boolean, a non-nullable int with
    categories and a bounded int in bins; and requests the metadata must refuse."""
    identity = "pid" if kind == "people" else "score"
    body = {"synthesizer": synthesizer, "epsilon": EPSILON, "delta": DELTA, "rows": 40}
    return [
        Request("synth", {**body, "columns": ["kind", "flag", "level", "age"], "bins": 4}),
        # free text, a number without bounds, a date, the person's id: no public domain
        Request("synth", {**body, "columns": ["kind", "note"]}, True),
        Request("synth", {**body, "columns": ["kind", identity]}, True),
        Request("synth", {**body, "columns": ["born", "flag"]}, True),
        Request("synth", {**body, "columns": ["kind", "zz"]}, True),
        Request("synth", {**body, "columns": ["kind", "flag"], "delta": 0.0}, True),
        Request("synth", {**body, "columns": ["kind"]}, True),
        Request("synth", {**body, "columns": ["kind", "flag"], "rows": 10**9}, True),
    ]


def _declared(kind: str, name: str) -> dict[str, Any]:
    return METADATA[kind]["columns"][name]


def synth_rows_problem(kind: str, request: Request, result: dict[str, Any]) -> str | None:
    """Why ``result`` is not rows of the declared domain in the asked shape, or None."""
    columns = request.body["columns"]
    if result.get("columns") != columns:
        return f"columns {result.get('columns')} are not the asked {columns}"
    data = result.get("data")
    if not isinstance(data, list) or len(data) != request.body["rows"]:
        return f"{len(data or [])} rows, not the asked {request.body['rows']}"
    for row in data:
        if len(row) != len(columns):
            return f"a row of {len(row)} values: {row!r}"
        for name, value in zip(columns, row, strict=True):
            problem = _outside_domain(_declared(kind, name), value)
            if problem:
                return f"column {name!r}: {value!r} {problem}"
    return None


def _outside_domain(spec: dict[str, Any], value: Any) -> str | None:
    if value is None:
        return None if spec.get("nullable", True) else "is NULL in a column that cannot be"
    if spec["type"] == "boolean":
        return None if isinstance(value, bool) else "is not a boolean"
    if "categories" in spec:
        # by type too: True == 1 would pass a membership test among [1, 2, 3]
        declared = [type(c) is type(value) and c == value for c in spec["categories"]]
        return None if any(declared) else "is not a declared category"
    if spec["type"] in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "is not a number"
        if spec["type"] == "int" and not isinstance(value, int):
            return "is not an int"
        if not math.isfinite(value) or not spec["lower"] <= value <= spec["upper"]:
            return f"is outside the bounds [{spec['lower']}, {spec['upper']}]"
        return None
    return "is in a column that has no declared domain"


# -- DiffPrivLib models --------------------------------------------------------------------------
def model_requests(kind: str) -> list[Request]:
    """The models offered: logistic regression on declared categories, a boolean and a declared
    but non-public column, with the scaler and options; PCA. Then requests the server must
    refuse: the models withdrawn (their DiffPrivLib mechanisms fall short of their epsilon,
    test_model_neighbours.py shows how), and columns the metadata gives no bounds or classes."""
    identity = "pid" if kind == "people" else "score"

    def model(body: dict[str, Any], refused: bool = False) -> Request:
        return Request("diffprivlib", {"epsilon": EPSILON, **body}, refused)

    logistic = "logistic_regression"
    return [
        model({"model": logistic, "features": ["age", "income", "flag"], "target": "kind"}),
        model(
            {
                "model": logistic,
                "features": ["age", "level"],
                "target": "flag",
                "scaler": True,
                "options": {"C": 0.5, "max_iter": 50},
            }
        ),
        model({"model": logistic, "features": ["income"], "target": "region"}),
        model(
            {
                "model": logistic,
                "features": ["flag", "age"],
                "target": "level",
                "epsilon": 2.0,
                "options": {"fit_intercept": False},
            }
        ),
        model(
            {"model": "pca", "features": ["age", "income", "level"], "options": {"n_components": 2}}
        ),
        model({"model": "pca", "features": ["flag", "income"], "scaler": True}),
        # withdrawn
        model(
            {"model": "linear_regression", "features": ["age", "flag"], "target": "income"}, True
        ),
        model({"model": "gaussian_nb", "features": ["age", "income"], "target": "region"}, True),
        model(
            {"model": "k_means", "features": ["age", "income"], "options": {"n_clusters": 4}}, True
        ),
        # no bounds, no categories, a date, the person's id, an option of another model, a
        # target where none is taken, no such column: refused from the metadata
        model({"model": "pca", "features": ["age", "note"]}, True),
        model({"model": "pca", "features": ["age", identity]}, True),
        model({"model": logistic, "features": ["income"], "target": "age"}, True),
        model({"model": logistic, "features": ["age"], "target": "note"}, True),
        model({"model": logistic, "features": ["age"], "target": "born"}, True),
        model({"model": logistic, "features": ["born"], "target": "kind"}, True),
        model(
            {
                "model": logistic,
                "features": ["age"],
                "target": "kind",
                "options": {"n_clusters": 3},
            },
            True,
        ),
        model({"model": "pca", "features": ["age"], "target": "kind"}, True),
        model({"model": logistic, "features": ["age"], "target": "zz"}, True),
    ]


def _classes(kind: str, target: str) -> list[Any]:
    spec = _declared(kind, target)
    return [False, True] if spec["type"] == "boolean" else list(spec["categories"])


def _bounds(kind: str, feature: str) -> tuple[float, float]:
    spec = _declared(kind, feature)
    return (0.0, 1.0) if spec["type"] == "boolean" else (spec["lower"], spec["upper"])


def expected_shapes(kind: str, body: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Each parameter's shape, from the request and the metadata alone."""
    f = len(body["features"])
    options = body.get("options", {})
    model = body["model"]
    if model in ("logistic_regression", "gaussian_nb"):
        k = len(_classes(kind, body["target"]))
        if model == "logistic_regression":
            rows = 1 if k == 2 else k
            return {"classes": (k,), "coef": (rows, f), "intercept": (rows,)}
        return {"classes": (k,), "theta": (k, f), "var": (k, f), "class_prior": (k,)}
    if model == "linear_regression":
        return {"coef": (f,), "intercept": ()}
    if model == "k_means":
        return {"cluster_centers": (options.get("n_clusters", 3), f)}
    n = options.get("n_components", f)
    return {"components": (n, f), "explained_variance": (n,), "mean": (f,)}


def shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        return ()
    inner = {shape(v) for v in value}
    if len(inner) > 1:
        return (len(value), -1)  # ragged
    return (len(value), *(inner.pop() if inner else ()))


def numbers(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return [value]


def model_problem(kind: str, request: Request, result: dict[str, Any]) -> str | None:
    """Why ``result`` is not a model of the asked kind, shape and classes, or None."""
    body = request.body
    for field, asked in (
        ("model", body["model"]),
        ("features", body["features"]),
        ("target", body.get("target")),
    ):
        if result.get(field) != asked:
            return f"{field} {result.get(field)!r}, not the asked {asked!r}"
    parameters = result.get("parameters")
    shapes = expected_shapes(kind, body)
    if not isinstance(parameters, dict) or sorted(parameters) != sorted(shapes):
        return f"parameters {sorted(parameters or {})}, not {sorted(shapes)}"
    for name, expected in shapes.items():
        if shape(parameters[name]) != expected:
            return f"{name} has shape {shape(parameters[name])}, not {expected}"
        if name == "classes":
            declared = _classes(kind, body["target"])
            # by type too, as for synthetic values
            if [(type(c), c) for c in parameters[name]] != [(type(c), c) for c in declared]:
                return f"classes {parameters[name]!r} are not the declared {declared!r}"
            continue
        values = numbers(parameters[name])
        if not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        ):
            return f"{name} holds a value that is not a finite number"
    problem = _within_bounds(kind, body, parameters)
    if problem:
        return problem
    scaler = result.get("scaler")
    if body.get("scaler"):
        if not isinstance(scaler, dict) or any(
            shape(scaler.get(k)) != (len(body["features"]),) for k in ("mean", "scale")
        ):
            return f"scaler {scaler!r} is not a mean and a scale per feature"
    elif scaler is not None:
        return f"a scaler {scaler!r} that was not asked for"
    return None


def _within_bounds(kind: str, body: dict[str, Any], parameters: dict[str, Any]) -> str | None:
    """Centres and class means are averages of clamped values: within the features' bounds
    (DiffPrivLib keeps its noisy sums within them); a class prior is a distribution."""
    bounds = [_bounds(kind, f) for f in body["features"]]
    rows = parameters.get("cluster_centers") or parameters.get("theta")
    if rows is not None and not body.get("scaler"):
        for row in rows:
            for value, (low, high) in zip(row, bounds, strict=True):
                if not low - 1e-9 <= value <= high + 1e-9:
                    return f"a centre or class mean {value!r} outside the bounds [{low}, {high}]"
    prior = parameters.get("class_prior")
    if prior is not None and (min(prior) < 0 or abs(sum(prior) - 1) > 1e-9):
        return f"class priors {prior!r} are not a distribution"
    return None


# -- both ----------------------------------------------------------------------------------------
def release_problem(
    kind: str,
    request: Request,
    base: tuple[int, dict[str, Any]],
    near: tuple[int, dict[str, Any]],
    names: tuple[str, str],
) -> str | None:
    """Why two replies to ``request`` (on two datasets) tell them apart, or None: the same
    status and error word for word, a refusal exactly where the metadata calls for one, the
    asked cost, and releases each of the shape the request and metadata give."""
    (status, body), (near_status, near_body) = base, near
    if status >= 500 or near_status >= 500:
        return f"a server error: {status} / {near_status}: {body} / {near_body}"
    if status != near_status:
        return f"status {status} on one, {near_status} on the other: {body} / {near_body}"
    if status != 200:
        if not request.expect_refusal or status != 400:
            return f"refused with {status}: {body}"
        words = [
            str(b.get("message", "")).replace(n, "<dataset>")
            for b, n in ((body, names[0]), (near_body, names[1]))
        ]
        if body.get("error") != near_body.get("error") or words[0] != words[1]:
            return f"different errors: {body} / {near_body}"
        return None
    if request.expect_refusal:
        return "a request that must be refused was answered"
    asked = {
        "epsilon": request.body["epsilon"],
        "delta": request.body.get("delta", 0.0) if request.path == "synth" else 0.0,
    }
    for reply in (body, near_body):
        if reply["cost"] != asked:
            return f"cost {reply['cost']}, not the asked {asked}"
        check = synth_rows_problem if request.path == "synth" else model_problem
        problem = check(kind, request, reply["result"])
        if problem:
            return problem
    return None


# -- over HTTP -----------------------------------------------------------------------------------
WORKERS = 2  # the fits run on the server's scan workers; more would only contend for cores


@dataclass
class Registered:
    """Dataset names by (kind, source, label): "base", each adversary, each small dataset."""

    token: str
    names: dict[tuple[str, str, str], str]


def register_all(
    admin: Any,
    folder: Any,
    sources: dict[str, tuple[str, ...]],
    *,
    small: tuple[str, ...] | None = None,
    postgres_dsn: str | None = None,
) -> Registered:
    """For each kind and each of its sources: the base, the base plus each adversary, and the
    small datasets (those named in ``small``, or all), with one user holding budget on all."""
    tag = uuid.uuid4().hex[:6]
    user = f"tester-{tag}"
    token = admin.add_user(user)
    names: dict[tuple[str, str, str], str] = {}
    for kind, kind_sources in sources.items():
        base = base_of(kind)
        datasets = {"base": base}
        datasets.update({a: base + extra for a, extra in adversaries(kind).items()})
        datasets.update(
            {k: v for k, v in small_datasets(kind).items() if small is None or k in small}
        )
        for source in kind_sources:
            for label, rows in datasets.items():
                name = f"M_{kind}_{source}_{label}_{tag}".upper()
                register(
                    admin,
                    folder,
                    name,
                    rows,
                    kind,
                    source,
                    user,
                    checked=label == "base",
                    postgres_dsn=postgres_dsn,
                )
                names[(kind, source, label)] = name
    return Registered(token, names)


def pairs_of(registered: Registered, kind: str, source: str) -> list[tuple[str, str]]:
    """(label, label) of the datasets to compare: the base with each neighbour, and no rows
    with each other small dataset and with the base."""
    out = [("base", a) for a in adversaries(kind)]
    others = [s for s in small_datasets(kind) if s != "no_rows"]
    out += [("no_rows", s) for s in [*others, "base"]]
    return [p for p in out if all((kind, source, x) in registered.names for x in p)]


def answer_alike(
    server_api: str, registered: Registered, requests: dict[str, list[Request]]
) -> tuple[Counter, list[str]]:
    """Every request on every registered dataset of its kind, one fresh release each; the
    problems (``release_problem``) of every compared pair."""
    local = threading.local()
    sessions: list[Api] = []

    def post(job: tuple[str, Request]) -> tuple[int, dict[str, Any]]:
        dataset, request = job
        if not hasattr(local, "api"):
            local.api = Api(server_api, registered.token)
            sessions.append(local.api)
        reply = local.api.post(
            f"/datasets/{dataset}/{request.path}", {**request.body, "fresh": True}
        )
        return reply.status_code, reply.json()

    jobs = [
        (name, i, request)
        for (kind, _, _), name in registered.names.items()
        for i, request in enumerate(requests[kind])
    ]
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            replies = list(pool.map(post, [(name, request) for name, _, request in jobs]))
    finally:
        for api in sessions:
            api.session.close()
    by_job = {(name, i): reply for (name, i, _), reply in zip(jobs, replies, strict=True)}
    tally: Counter = Counter()
    problems = []
    sources = sorted({(kind, source) for kind, source, _ in registered.names})
    for kind, source in sources:
        for first, second in pairs_of(registered, kind, source):
            names = (
                registered.names[(kind, source, first)],
                registered.names[(kind, source, second)],
            )
            for i, request in enumerate(requests[kind]):
                replies_pair = by_job[(names[0], i)], by_job[(names[1], i)]
                tally["pairs"] += 1
                tally["answered" if replies_pair[0][0] == 200 else "refused"] += 1
                problem = release_problem(kind, request, *replies_pair, names)
                if problem:
                    problems.append(
                        f"[{kind}/{source}: {first} vs {second}] {request.label}: {problem}"
                    )
    tally["releases"] = len(jobs)
    tally["datasets"] = len(registered.names)
    return tally, problems
