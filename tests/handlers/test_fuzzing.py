"""Every operation of the served OpenAPI document, fuzzed with schemathesis against a real server.

The schema is the document the server serves at ``/openapi.json``; every operation in it gets:

- schemathesis's coverage cases (boundary values, missing or mistyped fields, unexpected
  properties, other HTTP methods, bad content types, a missing ``Authorization``), sent as
  generated and again on a dataset the fuzzing user may query;
- generated requests that fit the schema (positive) and that break it (negative: wrong types,
  out-of-range numbers, unknown fields, random bytes as the body, mutated tokens), with dataset
  names generated too or taken from the user's own datasets so that the bodies reach the SQL
  guard and the OpenDP query language;
- on the SmartNoise-SQL and OpenDP operations, requests from a small grammar of the query
  languages (real column names, every aggregate, odd literals, extreme epsilon, delta and rho),
  so that releases happen and are paid for; on the synthetic-data and DiffPrivLib operations,
  requests of real modellable columns, models, targets and options (and odd ones).

``test_hostile_body`` and ``test_hostile_query`` add requests no generator here makes (JSON
edge cases on every POST operation; lone surrogates and the like in query values), checked
the same way.

Every reply must hold: no 5xx; every 4xx a JSON object with string ``error`` and ``message``;
no traceback, Python exception name, library name or server path in any reply (unless the
request itself carried that text); no token echoed; a request without the user's token is a
401 on every protected operation; and the admin store's ledger and archive for the user (and
for the datasets as a whole) change only on a successful, non-replayed release, by exactly the
archived cost. Findings are collected for the whole run and reported together, each with its
request and reply; the number of requests sent is printed (``pytest -s``) and is in the
failure message.

Generation is seeded per operation and variant, with no Hypothesis database (nothing is
written into the repository), so a run is repeatable. Environment:

- ``LOMAS_FUZZ_EXAMPLES``: generated requests per operation and variant (default 40; the
  default run sends about 7,500 requests in under three minutes on two cores);
- ``LOMAS_FUZZ_SEED``: base seed (default 0); change it to explore other inputs, e.g.
  ``LOMAS_FUZZ_EXAMPLES=300 LOMAS_FUZZ_SEED=$RANDOM pytest -s tests/handlers/test_fuzzing.py``.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from lomas_server.service.admin import AdminService
from lomas_server.store.base import AdminStore
from lomas_server.store.sqlite import SqliteStore
from tests.conftest import seed_datasets
from tests.servers import ServerProcess

EXAMPLES = int(os.environ.get("LOMAS_FUZZ_EXAMPLES", "40"))
BASE_SEED = int(os.environ.get("LOMAS_FUZZ_SEED", "0"))
DATASETS = ("PENGUIN", "TITANIC")
RELEASES = {
    ("POST", "/datasets/{name}/smartnoise-sql"),
    ("POST", "/datasets/{name}/opendp"),
    ("POST", "/datasets/{name}/synth"),
    ("POST", "/datasets/{name}/diffprivlib"),
}
PUBLIC = {("GET", "/health"), ("GET", "/openapi.json"), ("GET", "/openapi.yaml")}
# The contract itself: its text is api.yaml's (test_openapi.py compares them), not a reply
# that could carry library text, and the YAML form is not JSON.
DOCUMENTS = {("GET", "/openapi.json"), ("GET", "/openapi.yaml")}
MAX_FINDINGS_SHOWN = 12
# Kinds of findings, worst first (the order they are reported in).
SEVERITY = [
    "5xx",
    "no reply",
    "budget changed without a release",
    "a replay was charged",
    "release not archived as done",
    "release charged other than its archived cost",
    "no token but not 401",
    "secret echoed",
    "library text",
    "4xx without JSON error",
    "not JSON",
    "public endpoint refused",
    "undeclared method answered",
]

# Text that must never reach a client: tracebacks, Python exception names, the libraries'
# own words and module paths, the server's files. Matched case-sensitively, except the
# library names; a match is ignored when the request itself carried the same text (an echo
# of the analyst's own input, e.g. a dataset name in a 404).
LEAKS = [
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r'File "'),
    re.compile(r"\bline \d+, in\b"),
    re.compile(r"site-packages|dist-packages|/usr/lib/python|\.pyx?\b"),
    re.compile(r"\b[A-Z][A-Za-z0-9]*(Error|Exception|Warning)\b"),
    re.compile(r"\b(Error|Exception):"),
    re.compile(r"panicked at|RUST_BACKTRACE|\bFailed(Function|Cast|Map|Relation)\b"),
    re.compile(r"\bMake(Domain|Transformation|Measurement)\b"),
    re.compile(r"<html|<title>|<!DOCTYPE", re.IGNORECASE),
    re.compile(
        r"\b(snsql|sqlglot|polars|duckdb|pandas|numpy|pyarrow|antlr4?|tornado|jupyter_server|"
        r"sqlite3|pymongo|botocore|psycopg|pyspark|py4j|lomas_server)\b",
        re.IGNORECASE,
    ),
    re.compile(r"\bopendp\.[a-z_]"),  # a module path (the engine's name itself is public)
    re.compile(r"\bsys\.[a-z_]+"),  # the interpreter's advice
]


@dataclass
class Snapshot:
    """What the admin store holds for the fuzzing user and the datasets, in exact units."""

    spent: dict[str, Any]
    dataset_spent: dict[str, Any]
    archived: int


@dataclass
class Fuzzer:
    api: str
    store: AdminStore
    user: str
    token: str
    workdir: str
    session: requests.Session = field(default_factory=requests.Session)
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    by_operation: Counter = field(default_factory=Counter)
    findings: dict[tuple[str, ...], str] = field(default_factory=dict)
    released_texts: list[str] = field(default_factory=list)
    # Text a reply may carry though the request did not (the contract's own words).
    allowed_text: str = ""
    releases: int = 0
    replays: int = 0

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def snapshot(self) -> Snapshot:
        return Snapshot(
            spent={name: self.store.spent(self.user, name) for name in DATASETS},
            dataset_spent={name: self.store.dataset_spent(name) for name in DATASETS},
            archived=len(self.store.archive(self.user)),
        )

    def send(self, operation: Any, case: Any) -> None:
        before = self.snapshot()
        try:
            reply = case.call(base_url=self.api, session=self.session, timeout=120)
        except requests.RequestException as err:
            self._finding(("no reply", operation.label), case, None, f"{type(err).__name__}")
            return
        self.sent += 1
        self.statuses[reply.status_code] += 1
        self.by_operation[(operation.label, reply.status_code)] += 1
        self.check(operation, case, reply, before, self.snapshot())

    # -- the properties ------------------------------------------------------------------------
    def check(
        self, operation: Any, case: Any, reply: Any, before: Snapshot, after: Snapshot
    ) -> None:
        key = (operation.method.upper(), operation.path)
        method = case.method.upper()
        documented = method == key[0]
        status = reply.status_code
        text = reply.content.decode("utf-8", errors="replace")
        sent = reply.request
        sent_text = _request_text(sent)
        payload = None
        document = documented and key in DOCUMENTS and status == 200
        if text.strip() and not document:
            try:
                payload = json.loads(text)
            except ValueError:
                self._finding(("not JSON", operation.label, str(status)), case, reply, "")
        if status >= 500:
            self._finding(("5xx", operation.label, str(status), _code(payload)), case, reply, "")
        if 400 <= status < 500 and not (
            isinstance(payload, dict)
            and isinstance(payload.get("error"), str)
            and isinstance(payload.get("message"), str)
        ):
            self._finding(("4xx without JSON error", operation.label, str(status)), case, reply, "")
        echoable = sent_text + self.allowed_text
        if key == ("GET", "/queries"):
            echoable += "\n".join(self.released_texts)  # the archive shows the user's queries
        for pattern in LEAKS if not document else ():
            for match in pattern.finditer(text):
                if match.group(0) not in echoable:
                    self._finding(
                        ("library text", operation.label, pattern.pattern[:30], str(status)),
                        case,
                        reply,
                        f"found {match.group(0)!r}",
                    )
                    break
        if self.token in text or self.workdir in text:
            self._finding(("secret echoed", operation.label), case, reply, "token or server path")
        authenticated = sent.headers.get("Authorization") == self.auth["Authorization"]
        # Tornado reads form bodies (and refuses broken ones) before any handler runs.
        form = "form" in sent.headers.get("Content-Type", "")
        if documented and key not in PUBLIC and not authenticated and not form and status != 401:
            self._finding(("no token but not 401", operation.label, str(status)), case, reply, "")
        meta = getattr(case, "_meta", None)  # how schemathesis generated the case, if it did
        positive = meta is None or meta.generation.mode.is_positive
        if documented and key in PUBLIC and positive and not form and status != 200:
            self._finding(
                ("public endpoint refused", operation.label, str(status)), case, reply, ""
            )
        if not documented and 200 <= status < 300:
            self._finding(("undeclared method answered", operation.label, method), case, reply, "")
        self._check_budget(key, documented, case, reply, payload, before, after, sent_text)

    def _check_budget(
        self,
        key: tuple[str, str],
        documented: bool,
        case: Any,
        reply: Any,
        payload: Any,
        before: Snapshot,
        after: Snapshot,
        sent_text: str,
    ) -> None:
        label = f"{key[0]} {key[1]}"
        if not (documented and key in RELEASES and reply.status_code == 200):
            if after != before:
                self._finding(
                    ("budget changed without a release", label, str(reply.status_code)),
                    case,
                    reply,
                    f"before {before}, after {after}",
                )
            return
        if not isinstance(payload, dict):
            return  # reported as "not JSON"
        query_id = payload.get("query_id")
        if payload.get("replay_of") is not None:
            self.replays += 1
            if after != before:
                self._finding(("a replay was charged", label), case, reply, f"{before} -> {after}")
            return
        self.releases += 1
        self.released_texts.append(sent_text)
        entry = self.store.archive_entry(query_id) if isinstance(query_id, str) else None
        dataset = case.path_parameters.get("name")
        if entry is None or entry.user != self.user or entry.status != "done":
            self._finding(("release not archived as done", label), case, reply, repr(entry))
            return
        expected = dict(before.spent)
        expected_total = dict(before.dataset_spent)
        if dataset in expected:
            expected[dataset] = expected[dataset] + entry.cost
            expected_total[dataset] = expected_total[dataset] + entry.cost
        if (
            after.spent != expected
            or after.dataset_spent != expected_total
            or after.archived != before.archived + 1
            or entry.cost.is_zero()
        ):
            self._finding(
                ("release charged other than its archived cost", label),
                case,
                reply,
                f"cost {entry.cost}, before {before}, after {after}",
            )

    def _finding(self, kind: tuple[str, ...], case: Any, reply: Any, detail: str) -> None:
        if kind in self.findings:
            return
        request = reply.request if reply is not None else None
        if request is not None:
            body = request.body
            if isinstance(body, bytes):
                body = body.decode("utf-8", errors="replace")
            sent = f"{request.method} {request.url}\n  body: {str(body)[:600]}"
            headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
            sent += f"\n  auth: {_redact(headers, self.token)}"
        else:
            sent = f"{case.method} {case.formatted_path} body={str(case.body)[:600]}"
        answer = (
            ""
            if reply is None
            else f"{reply.status_code} {reply.content[:800].decode('utf-8', errors='replace')}"
        )
        self.findings[kind] = f"{' / '.join(kind)}: {detail}\n  {sent}\n  -> {answer}"


def _code(payload: Any) -> str:
    return str(payload.get("error")) if isinstance(payload, dict) else ""


def _redact(headers: dict[str, str], token: str) -> dict[str, str]:
    return {k: v.replace(token, "<user token>") for k, v in headers.items()}


def _request_text(request: requests.PreparedRequest) -> str:
    """Everything the request carried, decoded the ways a reply could echo it."""
    from urllib.parse import unquote

    body = request.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8", errors="replace")
    parts = [unquote(request.url or ""), body.decode("utf-8", errors="replace")]
    try:
        parts.append(repr(json.loads(body)))
    except (ValueError, RecursionError):
        pass
    parts.extend(str(v) for v in request.headers.values())
    text = "\n".join(parts)
    return text + "\n" + text.encode("unicode_escape").decode("ascii")


# -- strategies of near-valid queries ----------------------------------------------------------
# Two pools per language: requests of the accepted shape (typed values, bounded columns, public
# or thresholded groups, epsilon within the per-query maximum), so that releases happen and are
# paid for, and odd ones (refused constructs, mistyped values, extreme privacy parameters).

_ODD_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_PLAIN_TEXT = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "Zs", "P"], exclude_characters="\\"),
    max_size=12,
)
_NUMBERS = st.one_of(
    st.integers(-(10**16), 10**16),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -1, 0.5, 1e15, 1e-5, 1e-4, 2**53 + 1, 10**15 + 1]),
)
_ODD_EPSILON = st.one_of(
    st.sampled_from([1e-300, 1e-9, 1e-4, 10.5, 1000.0, 1e6]),
    st.floats(min_value=1e-6, max_value=20.0),
)
_EPSILON = st.sampled_from([0.05, 0.1, 0.5, 1.0, 2.0, 5.0])
_ODD_DELTA = st.sampled_from([1e-300, 1e-9, 0.01, 0.02, 0.5, 0.999999])
_DELTA = st.sampled_from([0.0, 1e-6, 1e-5])


def _typed(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value of the column's type in its one accepted format (docs/SECURITY.md)."""
    kind = spec["type"]
    if spec.get("categories"):
        return st.sampled_from(spec["categories"])
    if kind == "int":
        return st.integers(-(10**6), 10**6)
    if kind == "float":
        return st.one_of(st.integers(-(10**6), 10**6), st.sampled_from([0.5, 12.25, 4.0001]))
    if kind == "boolean":
        return st.booleans()
    if kind == "datetime":
        return st.sampled_from(["2000-01-01", "1999-12-31 23:59:59"])
    return _PLAIN_TEXT


def _sql_value(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


_ODD_SQL_VALUES = st.one_of(
    _NUMBERS.map(repr),
    _ODD_TEXT.map(lambda t: "'" + t.replace("'", "''") + "'"),
    st.sampled_from(["'2020/01/01'", "NULL", "'ten'", "1e400", "-0.0", "''", "'a\\b'", "1"]),
)


@st.composite
def sql_bodies(draw: Any, metadata: dict[str, Any], for_release: bool) -> dict[str, Any]:
    columns = metadata["columns"]
    names = sorted(columns)
    bounded = [n for n in names if "lower" in columns[n] and "upper" in columns[n]]
    public = [n for n in names if columns[n].get("public_keys")]
    odd = draw(st.integers(0, 2)) == 0
    column = st.sampled_from(names)
    if odd:
        aggregate = st.one_of(
            column.map(lambda c: f"COUNT(DISTINCT {c})"),
            st.tuples(st.sampled_from(["SUM", "AVG", "MIN", "LOG", "VARIANCE"]), column).map(
                lambda p: f"{p[0]}({p[1]})"
            ),
            st.sampled_from(bounded).map(lambda c: f"SUM({c}) / 0"),
            st.sampled_from(bounded).map(lambda c: f"SUM({c} * {c})"),
        )
    else:
        aggregate = st.one_of(
            st.just("COUNT(*)"),
            column.map(lambda c: f"COUNT({c})"),
            st.tuples(
                st.sampled_from(["SUM", "AVG", "VAR", "STDDEV"]), st.sampled_from(bounded)
            ).map(lambda p: f"{p[0]}({p[1]})"),
            st.sampled_from(bounded).map(lambda c: f"ROUND(AVG({c}) * 2 + 1, 3)"),
        )
    items = draw(st.lists(aggregate, min_size=1, max_size=3))
    select = [f"{item} AS a{i}" for i, item in enumerate(items)]
    group = draw(st.lists(st.sampled_from(names if odd else public), max_size=2, unique=True))
    conditions = []
    for _ in range(draw(st.integers(0, 2))):
        name = draw(column)
        value = _ODD_SQL_VALUES if odd else _typed(columns[name]).map(_sql_value)
        op = draw(st.sampled_from(["=", "<>", ">=", "IN", "BETWEEN", "IS NULL", "LIKE"]))
        if op == "IN":
            conditions.append(
                f"{name} IN ({', '.join(draw(st.lists(value, min_size=1, max_size=3)))})"
            )
        elif op == "BETWEEN":
            conditions.append(f"{name} BETWEEN {draw(value)} AND {draw(value)}")
        elif op == "IS NULL":
            conditions.append(f"{name} IS NULL")
        elif op == "LIKE" and not odd:
            conditions.append(f"{name} IS NOT NULL")
        elif columns[name]["type"] == "string" and op == ">=" and not odd:
            conditions.append(f"{name} <> {draw(value)}")
        else:
            conditions.append(f"{name} {op} {draw(value)}")
    table = draw(st.sampled_from(["df", metadata["_name"], "other"] if odd else ["df", "df"]))
    query = f"SELECT {', '.join(group + select)} FROM {table}"
    if conditions:
        query += " WHERE " + draw(st.sampled_from([" AND ", " OR "])).join(conditions)
    if group:
        query += f" GROUP BY {', '.join(group)}"
    if odd and draw(st.booleans()):
        query += draw(st.sampled_from([" LIMIT 5", " HAVING a0 > 2", "; SELECT 1", " --", " /*"]))
    body: dict[str, Any] = {"query": query, "epsilon": draw(_ODD_EPSILON if odd else _EPSILON)}
    if odd or draw(st.booleans()):
        body["delta"] = draw(_ODD_DELTA if odd else _DELTA)
    if for_release:
        if draw(st.integers(0, 3)) == 0:
            body["postprocess"] = draw(st.booleans())
        if draw(st.integers(0, 3)) == 0:
            body["fresh"] = draw(st.booleans())
    return body


_ODD_OPENDP_VALUES = st.one_of(
    _NUMBERS,
    _ODD_TEXT,
    st.none(),
    st.lists(st.one_of(_NUMBERS, _ODD_TEXT), max_size=3),
    st.sampled_from(["2020-01-01", "Adelie", "MALE", "male", True, 3]),
    st.builds(dict),
)


@st.composite
def opendp_bodies(draw: Any, metadata: dict[str, Any], for_release: bool) -> dict[str, Any]:
    columns = metadata["columns"]
    names = sorted(columns)
    bounded = [n for n in names if "lower" in columns[n] and "upper" in columns[n]]
    public = [n for n in names if columns[n].get("public_keys")]
    odd = draw(st.integers(0, 2)) == 0
    column = st.sampled_from(names + ["no_such_column"] if odd else names)
    filters = []
    for _ in range(draw(st.integers(0, 2))):
        name = draw(column)
        op = draw(
            st.sampled_from(["==", "!=", "in", "is_null", "is_not_null", "~"][: 6 if odd else 5])
        )
        item: dict[str, Any] = {"column": name, "op": op}
        if op not in ("is_null", "is_not_null") or odd:
            if odd:
                item["value"] = draw(_ODD_OPENDP_VALUES)
            elif op == "in":
                item["value"] = draw(st.lists(_typed(columns[name]), min_size=1, max_size=3))
            else:
                item["value"] = draw(_typed(columns[name]))
        filters.append(item)
    if odd:
        ops = ["count", "sum", "mean", "variance", "quantile", "median", "histogram", "max"]
        aggregate = st.fixed_dictionaries(
            {"op": st.sampled_from(ops)},
            optional={
                "column": column,
                "as": st.sampled_from(["x", "count", "", "a b"]),
                "q": st.sampled_from([0.5, 0.0, 1.0, 0.999, 2, "0.5"]),
            },
        )
    else:
        aggregate = st.one_of(
            st.just({"op": "count"}),
            st.tuples(
                st.sampled_from(["sum", "mean", "variance", "median"]), st.sampled_from(bounded)
            ).map(lambda p: {"op": p[0], "column": p[1]}),
            st.sampled_from(bounded).map(lambda c: {"op": "quantile", "column": c, "q": 0.25}),
        )
    aggregates = draw(st.lists(aggregate, min_size=1, max_size=3))
    if not odd:  # output names must differ
        aggregates = [{**a, "as": f"a{i}"} for i, a in enumerate(aggregates)]
    query: dict[str, Any] = {"aggregates": aggregates}
    if filters:
        query["filters"] = filters
    if draw(st.booleans()):
        query["group_by"] = draw(
            st.lists(column if odd else st.sampled_from(public), max_size=2, unique=not odd)
        )
    body: dict[str, Any] = {"query": query}
    mechanism = draw(st.sampled_from(["laplace", "gaussian", None] if odd else ["laplace", None]))
    if mechanism is not None:
        body["mechanism"] = mechanism
    budget = "rho" if mechanism == "gaussian" else "epsilon"
    if odd and draw(st.integers(0, 2)) == 0:
        body["accuracy"] = draw(
            st.fixed_dictionaries(
                {"half_width": st.sampled_from([1e-9, 0.5, 10.0, 1e6, 1e300])},
                optional={"confidence": st.sampled_from([0.5, 0.95, 0.999999, 1.0])},
            )
        )
    else:
        body[budget] = draw(_ODD_EPSILON if odd else _EPSILON)
    if odd and draw(st.booleans()):
        body["delta"] = draw(_ODD_DELTA)
    if for_release and draw(st.integers(0, 3)) == 0:
        body["fresh"] = draw(st.booleans())
    return body


def _modellable(metadata: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """Columns with a public domain (categories, booleans, bounds), the bounded numbers and
    booleans (features), and those with public classes (a classifier's target)."""
    columns = metadata["columns"]
    names = sorted(columns)
    bounded = [n for n in names if "lower" in columns[n] and "upper" in columns[n]]
    classes = [n for n in names if columns[n].get("categories") or columns[n]["type"] == "boolean"]
    booleans = [n for n in names if columns[n]["type"] == "boolean"]
    return sorted(set(bounded) | set(classes)), bounded + booleans, classes


_ODD_COLUMN_NAMES = st.one_of(_ODD_TEXT, st.sampled_from(["no_such_column", "", "df", "*"]))


@st.composite
def synth_bodies(draw: Any, metadata: dict[str, Any], for_release: bool) -> dict[str, Any]:
    """Synthetic-data requests: two or three columns with a public domain and few rows, so
    that each release is a quick MST fit; or odd ones (columns without a domain, one column,
    other synthesizers, extreme rows, bins and privacy parameters)."""
    names = sorted(metadata["columns"])
    modelled, _, _ = _modellable(metadata)
    odd = draw(st.integers(0, 2)) == 0
    if odd:
        columns = draw(st.lists(st.one_of(st.sampled_from(names), _ODD_COLUMN_NAMES), max_size=4))
        body: dict[str, Any] = {
            "synthesizer": draw(st.sampled_from(["mst", "aim", "gan", "MST", "pacsynth", ""])),
            "columns": columns,
            "epsilon": draw(_ODD_EPSILON),
        }
        if draw(st.booleans()):
            body["rows"] = draw(st.sampled_from([0, 1, 2, 10**5, 10**5 + 1, 10**9, -1]))
        if draw(st.booleans()):
            body["bins"] = draw(st.sampled_from([1, 2, 100, 101, 0]))
        if draw(st.booleans()):
            body["delta"] = draw(st.one_of(_ODD_DELTA, st.just(0.0)))
        if body["synthesizer"] == "aim" and set(columns) <= set(modelled):
            body["synthesizer"] = "mst"  # an AIM fit takes seconds: the HTTP tests have one
    else:
        columns = draw(st.lists(st.sampled_from(modelled), min_size=2, max_size=3, unique=True))
        body = {
            "synthesizer": "mst",
            "columns": columns,
            "epsilon": draw(_EPSILON),
            "rows": draw(st.integers(1, 30)),
            "bins": draw(st.sampled_from([2, 3, 5])),
        }
        if draw(st.booleans()):
            body["delta"] = draw(st.sampled_from([1e-6, 1e-5]))
    if for_release and draw(st.integers(0, 3)) == 0:
        body["fresh"] = draw(st.booleans())
    return body


_MODEL_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "C": st.sampled_from([1e-6, 0.5, 1.0, 1e6]),
        "fit_intercept": st.booleans(),
        "max_iter": st.sampled_from([1, 5, 100]),
        "n_clusters": st.sampled_from([1, 2, 8, 50]),
        "n_components": st.sampled_from([1, 2, 3]),
    },
)


@st.composite
def diffprivlib_bodies(draw: Any, metadata: dict[str, Any], for_release: bool) -> dict[str, Any]:
    """DP models: bounded features, a target with public classes for the classifier, the
    options each model takes; or odd ones (any column, any option, options that do not apply,
    n_components above the features, the withdrawn models, extreme epsilon)."""
    names = sorted(metadata["columns"])
    _, features, classes = _modellable(metadata)
    models = ["logistic_regression", "pca"]
    withdrawn = ["linear_regression", "gaussian_nb", "k_means"]
    odd = draw(st.integers(0, 2)) == 0
    model = draw(st.sampled_from([*models, *withdrawn, "random_forest", ""] if odd else models))
    column = st.one_of(st.sampled_from(names), _ODD_COLUMN_NAMES)
    if odd:
        chosen = draw(st.lists(column, max_size=4))
    else:
        chosen = draw(st.lists(st.sampled_from(features), min_size=1, max_size=4, unique=True))
    body: dict[str, Any] = {"model": model, "features": chosen}
    if odd:
        if draw(st.booleans()):
            body["target"] = draw(column)
        body["options"] = draw(_MODEL_OPTIONS)
        body["epsilon"] = draw(_ODD_EPSILON)
    else:
        options: dict[str, Any] = {}
        if model == "logistic_regression":
            body["target"] = draw(st.sampled_from([c for c in classes if c not in chosen]))
            if draw(st.booleans()):
                options = {"C": draw(st.sampled_from([0.5, 1.0])), "max_iter": 50}
        else:
            options = {"n_components": draw(st.integers(1, len(chosen)))}
        if options:
            body["options"] = options
        body["epsilon"] = draw(_EPSILON)
    if draw(st.integers(0, 3)) == 0:
        body["scaler"] = draw(st.booleans())
    if for_release and draw(st.integers(0, 3)) == 0:
        body["fresh"] = draw(st.booleans())
    return body


GRAMMARS = {
    "/datasets/{name}/smartnoise-sql": sql_bodies,
    "/datasets/{name}/smartnoise-sql/cost": sql_bodies,
    "/datasets/{name}/opendp": opendp_bodies,
    "/datasets/{name}/opendp/cost": opendp_bodies,
    "/datasets/{name}/synth": synth_bodies,
    "/datasets/{name}/synth/cost": synth_bodies,
    "/datasets/{name}/diffprivlib": diffprivlib_bodies,
    "/datasets/{name}/diffprivlib/cost": diffprivlib_bodies,
}
# Requests from a grammar per operation: a synthesizer's fit takes a second or two, so its
# releases get fewer (each odd one, and each replay, is quick).
GRAMMAR_EXAMPLES = {"/datasets/{name}/synth": max(4, EXAMPLES // 4)}


# -- the run -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _hypothesis_as_it_was(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Hypothesis's caches go to a temporary folder, not the repository's .hypothesis/; and
    schemathesis patches Hypothesis process-wide when it builds strategies (a printer that
    prints nothing, bigger buffers): put things back for the tests that run after these."""
    import hypothesis.configuration
    import hypothesis.core
    import hypothesis.internal.entropy
    from hypothesis.internal.conjecture import engine
    from hypothesis.strategies._internal import collections, core
    from schemathesis.generation.hypothesis import setup

    patched = [
        (hypothesis.core, "RepresentationPrinter"),
        (hypothesis.core, "BUFFER_SIZE"),
        (engine, "BUFFER_SIZE"),
        (collections, "BUFFER_SIZE"),
        (core, "is_first_param_referenced_in_function"),
        (hypothesis.internal.entropy, "register_random"),
    ]
    saved = [
        (module, name, getattr(module, name)) for module, name in patched if hasattr(module, name)
    ]
    home = hypothesis.configuration.storage_directory(intent_to_write=False).home_directory
    hypothesis.configuration.set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    hypothesis.configuration.set_hypothesis_home_dir(home)
    for module, name, value in saved:
        setattr(module, name, value)
    setup._is_patched = False  # type: ignore[attr-defined]


def _settings(count: int) -> settings:
    return settings(
        max_examples=count,
        database=None,
        deadline=None,
        derandomize=False,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )


def _run(fuzzer: Fuzzer, operation: Any, variant: str, strategy: Any, count: int) -> None:
    """Send ``count`` cases drawn from ``strategy``, seeded by operation and variant."""

    @seed(zlib.crc32(f"{BASE_SEED}:{operation.label}:{variant}".encode()))
    @_settings(count)
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        fuzzer.send(operation, case)

    fuzz()


def _with_name(operation: Any, case: Any, name: str) -> Any:
    return operation.Case(
        method=case.method,
        path_parameters={**(case.path_parameters or {}), "name": name},
        headers=dict(case.headers or {}),
        query=dict(case.query or {}),
        body=case.body,
        media_type=case.media_type,
    )


def _coverage(fuzzer: Fuzzer, schema: Any, operation: Any) -> None:
    """schemathesis's deterministic boundary cases, with the user's token where it sends one."""
    config = schema.config.generation_for(operation=operation, phase="coverage")
    cases = schema.iter_coverage_cases(
        operation, generation_modes=list(GenerationMode), generation_config=config
    )
    has_name = any(p.name == "name" for p in operation.path_parameters)
    for index, case in enumerate(cases):
        if case.headers and "Authorization" in case.headers:
            case.headers["Authorization"] = fuzzer.auth["Authorization"]
        fuzzer.send(operation, case)
        if has_name:
            granted = _with_name(operation, case, DATASETS[index % len(DATASETS)])
            fuzzer.send(operation, granted)


def _served(server: Any) -> tuple[dict[str, Any], Any, list[Any]]:
    """The served document, its schemathesis schema, and its operations."""
    document = requests.get(server.api + "/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    return document, schema, [result.ok() for result in schema.get_all_operations()]


# A larger run (LOMAS_FUZZ_EXAMPLES) gets time in proportion.
@pytest.mark.timeout(max(300, 20 * EXAMPLES))
def test_fuzz_every_operation(server, admin, make_user, record_property):
    started = time.monotonic()
    document, schema, operations = _served(server)
    served = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    served = {(m, p) for m, p in served if m in {"GET", "POST", "PUT", "PATCH", "DELETE"}}
    assert {(op.method.upper(), op.path) for op in operations} == served, (
        "schemathesis must see every operation of the served document"
    )

    user = make_user(PENGUIN=(500.0, 0.5), TITANIC=(500.0, 0.5))
    fuzzer = Fuzzer(server.api, admin.store, user.name, user.token, str(server.workdir))
    metadata = {}
    for name in DATASETS:
        metadata[name] = user.api.get(f"/datasets/{name}/metadata").json()
        metadata[name]["_name"] = name

    unmutable: list[str] = []
    for operation in operations:
        has_name = any(p.name == "name" for p in operation.path_parameters)
        _coverage(fuzzer, schema, operation)
        variants: list[tuple[str, Any, int]] = [
            ("positive", operation.as_strategy(headers=fuzzer.auth), EXAMPLES),
            (
                "negative",
                operation.as_strategy(GenerationMode.NEGATIVE, headers=fuzzer.auth),
                EXAMPLES,
            ),
            # The token may be mutated too: every such request must be a 401.
            ("negative, any token", operation.as_strategy(GenerationMode.NEGATIVE), EXAMPLES // 2),
        ]
        if has_name:
            for mode in GenerationMode:
                strategy = st.one_of(
                    *[
                        operation.as_strategy(
                            mode, headers=fuzzer.auth, path_parameters={"name": d}
                        )
                        for d in DATASETS
                    ]
                )
                variants.append((f"{mode.value} on own datasets", strategy, EXAMPLES))
        if any(p.name == "dataset" for p in operation.query):
            for mode in GenerationMode:
                strategy = st.one_of(
                    *[
                        operation.as_strategy(mode, headers=fuzzer.auth, query={"dataset": d})
                        for d in DATASETS
                    ]
                )
                variants.append((f"{mode.value} on own datasets", strategy, EXAMPLES))
        grammar = GRAMMARS.get(operation.path) if operation.method.upper() == "POST" else None
        if grammar is not None:
            release = operation.path in {path for _, path in RELEASES}
            strategy = st.sampled_from(DATASETS).flatmap(
                lambda name, op=operation, g=grammar, r=release: g(metadata[name], r).map(
                    lambda body, name=name, op=op: op.Case(
                        path_parameters={"name": name},
                        headers=dict(fuzzer.auth),
                        body=body,
                        media_type="application/json",
                    )
                )
            )
            count = GRAMMAR_EXAMPLES.get(operation.path, EXAMPLES * 3)
            variants.append(("query grammar", strategy, count))
        for variant, strategy, count in variants:
            try:
                _run(fuzzer, operation, variant, strategy, count)
            except Unsatisfiable:
                # Nothing of this operation can be mutated (no parameter, body or token):
                # its negative cases are the coverage phase's other methods and headers.
                assert variant.startswith("negative"), (operation.label, variant)
                unmutable.append(f"{operation.label} ({variant})")

    elapsed = time.monotonic() - started
    summary = (
        f"fuzzing: {fuzzer.sent} requests to {len(operations)} operations in {elapsed:.0f} s; "
        f"statuses {dict(sorted(fuzzer.statuses.items()))}; "
        f"{fuzzer.releases} paid releases, {fuzzer.replays} replays"
    )
    print("\n" + summary)
    print("  nothing to mutate: " + ", ".join(unmutable))
    for (label, status), count in sorted(fuzzer.by_operation.items()):
        print(f"  {label}: {status} x{count}")
    record_property("requests_sent", fuzzer.sent)
    ranked = sorted(fuzzer.findings.items(), key=lambda item: SEVERITY.index(item[0][0]))
    if ranked:
        pytest.fail(
            f"{summary}\n{len(ranked)} distinct finding(s):\n"
            + "\n".join("- " + " / ".join(kind) for kind, _ in ranked)
            + "\n\n"
            + "\n\n".join(detail for _, detail in ranked[:MAX_FINDINGS_SHOWN]),
            pytrace=False,
        )
    for operation in operations:
        assert any(label == operation.label for label, _ in fuzzer.by_operation), (
            f"{summary}: nothing reached {operation.label}"
        )
    assert fuzzer.releases > 0, f"{summary}: no release, the fuzzing stayed shallow"


# -- requests no generator here makes ------------------------------------------------------------
# Bodies that test the JSON layer itself, sent to every POST operation of the served document.
_SQL = '{"query": "SELECT COUNT(*) AS n FROM df", "epsilon": 1.0'
HOSTILE_BODIES: dict[str, bytes] = {
    "huge integer": b'{"rows": 1' + b"0" * 5000 + b"}",
    "float overflow": _SQL.encode() + b', "delta": 1e999999}',
    "utf-8 BOM": b"\xef\xbb\xbf" + _SQL.encode() + b"}",
    "utf-16": (_SQL + "}").encode("utf-16"),
    "invalid utf-8": b'{"query": "SELECT \xff", "epsilon": 1}',
    "lone surrogate": b'{"query": "SELECT \\ud800", "epsilon": 1}',
    "NaN": _SQL.encode()[:-3] + b"NaN}",
    "deep nesting": b"[" * 20000 + b"]" * 20000,
    "duplicate keys": _SQL.encode() + b', "epsilon": 1e9}',
    "NUL": b'{"query": "SELECT COUNT(*) AS n FROM df\\u0000", "epsilon": 1}',
    "not an object": b'"SELECT COUNT(*) FROM df"',
    "empty object": b"{}",
}
# Values no generator above produces, on the operations that plan and run queries.
HOSTILE_QUERIES: dict[str, tuple[str, dict[str, Any]]] = {
    "sql: lone surrogate compared": (
        "/datasets/{name}/smartnoise-sql",
        {"query": "SELECT COUNT(*) AS n FROM df WHERE species = '\ud800'", "epsilon": 1.0},
    ),
    "sql: lone surrogate in IN": (
        "/datasets/{name}/smartnoise-sql",
        {
            "query": "SELECT species, COUNT(*) AS n FROM df "
            "WHERE species IN ('Adelie', '\udfff\ud800') GROUP BY species",
            "epsilon": 1.0,
        },
    ),
    "sql: lone surrogate priced": (
        "/datasets/{name}/smartnoise-sql/cost",
        {"query": "SELECT COUNT(*) AS n FROM df WHERE island <> '\ud800'", "epsilon": 1.0},
    ),
    "sql: lone surrogate as alias": (
        "/datasets/{name}/smartnoise-sql",
        {"query": "SELECT COUNT(*) AS n\ud800 FROM df", "epsilon": 0.7},
    ),
    "sql: astral and combining text": (
        "/datasets/{name}/smartnoise-sql",
        {"query": "SELECT COUNT(*) AS n FROM df WHERE sex = 'e\u0301\U0001f600'", "epsilon": 0.6},
    ),
    "sql: longest text value": (
        "/datasets/{name}/smartnoise-sql",
        {"query": "SELECT COUNT(*) AS n FROM df WHERE sex = '" + "x" * 1000 + "'", "epsilon": 0.8},
    ),
    "opendp: lone surrogate compared": (
        "/datasets/{name}/opendp",
        {
            "query": {
                "aggregates": [{"op": "count"}],
                "filters": [{"column": "species", "op": "in", "value": ["\ud800", "Adelie"]}],
            },
            "epsilon": 0.9,
        },
    ),
    "synth: lone surrogate as column": (
        "/datasets/{name}/synth",
        {"synthesizer": "mst", "columns": ["species", "\ud800"], "epsilon": 1.0},
    ),
    "synth: lone surrogate priced": (
        "/datasets/{name}/synth/cost",
        {"synthesizer": "aim", "columns": ["\udfff\ud800", "sex"], "epsilon": 1.0},
    ),
    "diffprivlib: lone surrogate as feature": (
        "/datasets/{name}/diffprivlib",
        {"model": "pca", "features": ["body_mass_g", "\ud800"], "epsilon": 1.0},
    ),
    "diffprivlib: lone surrogate as target": (
        "/datasets/{name}/diffprivlib/cost",
        {
            "model": "gaussian_nb",
            "features": ["body_mass_g"],
            "target": "spe\ud800cies",
            "epsilon": 1.0,
        },
    ),
    "diffprivlib: lone surrogate as option": (
        "/datasets/{name}/diffprivlib",
        {"model": "pca", "features": ["body_mass_g"], "epsilon": 1.0, "options": {"\ud800": 1}},
    ),
    "opendp: lone surrogate as column": (
        "/datasets/{name}/opendp/cost",
        {"query": {"aggregates": [{"op": "sum", "column": "\ud800"}]}, "epsilon": 1.0},
    ),
}


def _send_raw(fuzzer: Fuzzer, operation: Any, name: str, body: bytes) -> None:
    case = operation.Case(
        # Every path parameter (a dataset, a user, a request id) gets the same name.
        path_parameters={p.name: name for p in operation.path_parameters},
        headers=dict(fuzzer.auth),
        body=body,
        media_type="application/json",
    )
    fuzzer.send(operation, case)


def _fail_on_findings(fuzzer: Fuzzer) -> None:
    if fuzzer.findings:
        pytest.fail("\n\n".join(fuzzer.findings.values()), pytrace=False)


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_hostile_body(server, admin, make_user, name):
    user = make_user(PENGUIN=(50.0, 1e-3))
    fuzzer = Fuzzer(server.api, admin.store, user.name, user.token, str(server.workdir))
    _, _, operations = _served(server)
    posts = [op for op in operations if op.method.upper() == "POST"]
    assert posts
    for operation in posts:
        _send_raw(fuzzer, operation, "PENGUIN", HOSTILE_BODIES[name])
    _fail_on_findings(fuzzer)


@pytest.mark.parametrize("name", list(HOSTILE_QUERIES))
def test_hostile_query(server, admin, make_user, name):
    path, body = HOSTILE_QUERIES[name]
    user = make_user(PENGUIN=(50.0, 1e-3))
    fuzzer = Fuzzer(server.api, admin.store, user.name, user.token, str(server.workdir))
    _, _, operations = _served(server)
    (operation,) = [op for op in operations if op.path == path and op.method.upper() == "POST"]
    _send_raw(fuzzer, operation, "PENGUIN", json.dumps(body).encode())
    assert fuzzer.sent == 1
    _fail_on_findings(fuzzer)


# -- the admin API, as an admin ------------------------------------------------------------------
@pytest.fixture
def own_server(tmp_path):
    """A server of its own: an admin's fuzzing changes limits, grants and users, which the
    shared server's other tests must not see."""
    store = SqliteStore(tmp_path / "admin.sqlite")
    service = AdminService(store)
    seed_datasets(service, tmp_path / "data")
    process = ServerProcess(tmp_path / "admin.sqlite", tmp_path).start()
    try:
        yield process, service
    finally:
        process.stop()
        store.close()


@pytest.mark.timeout(max(300, 10 * EXAMPLES))
def test_fuzz_the_admin_api_as_an_admin(own_server):
    """Every admin operation, fuzzed with an admin's token (the analyst's fuzzing above only
    reaches its 403): no 5xx, every 4xx a JSON error in the service's words, nothing of a
    library in any reply, and the admin's own budget untouched. (Admins do see where
    datasets live, so the server's folder is no secret to them.)"""
    server, admin = own_server
    name = f"fuzz-admin-{uuid.uuid4().hex[:8]}"
    token = admin.add_user(name, is_admin=True)
    fuzzer = Fuzzer(server.api, admin.store, name, token, workdir=uuid.uuid4().hex)
    # The contract's own choices, named back when a value is not one of them.
    fuzzer.allowed_text = "duckdb, spark"
    _, schema, operations = _served(server)
    operations = [op for op in operations if op.path.startswith("/admin/")]
    assert len(operations) >= 10
    for operation in operations:
        _coverage(fuzzer, schema, operation)
        for mode in GenerationMode:
            strategy = operation.as_strategy(mode, headers=fuzzer.auth)
            try:
                _run(fuzzer, operation, f"admin {mode.value}", strategy, EXAMPLES // 2)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label
    statuses = dict(sorted(fuzzer.statuses.items()))
    print(f"\nadmin fuzzing: {fuzzer.sent} requests; statuses {statuses}")
    _fail_on_findings(fuzzer)
    assert any(200 <= status < 300 for status in fuzzer.statuses), "nothing got through"
