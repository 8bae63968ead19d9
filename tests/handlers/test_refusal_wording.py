"""A refused SQL query is told why in the product's words, over the real API, and costs nothing.

A corpus of unsupported constructs and malformed queries, and seeded mutations of valid ones
(cut short, two tokens swapped, a stray quote), each sent to the estimate and the release
endpoints. Every reply must be a 400 ``invalid_query`` whose message is one line, free of the
parser's and libraries' vocabulary, and names the construct or the place where the query could
not be read. The parser's own words ("mismatched input 't' expecting {<EOF>, ';'}") list
grammar internals that help no analyst.
"""

from __future__ import annotations

import random
import re

import pytest

from lomas_server.engines.sql_guard import guard_query
from lomas_server.errors import InvalidQuery
from lomas_server.metadata import DatasetMetadata
from tests.conftest import sample_metadata

SQL = "/datasets/PENGUIN/smartnoise-sql"
OPENDP = "%%lomas_opendp"
POSITION = re.compile(r"\(line \d+, column \d+\)")
# What must never reach an analyst: ANTLR's and SmartNoise-SQL's wording, Python's reprs,
# exception and class names, module paths.
LIBRARY_WORDS = re.compile(
    r"(?i:mismatched input|expecting|extraneous input|no viable alternative|token recognition"
    r"|missing '|<EOF>|antlr|snsql|sqlglot|smartnoise\.|opendp\.|lomas_server|traceback"
    r"|nonetype|object at 0x|\.py\b|reportAmbiguity"
    r"|snsynth|sklearn|scikit|diffprivlib\.|\bmbi\b|ndarray|dtype|lbfgs)"
    r"|Error\b|Exception\b|\bNone\b|\\[nrtx]|[a-z](?:Function|Expression|Condition|Subquery)\b"
)

# (query, what the message must say): one or more constructs of each class the subset leaves
# out, and the common ways of writing a query the parser cannot read.
CORPUS = [
    # quantiles: OpenDP's
    ("SELECT MEDIAN(body_mass_g) AS m FROM df", OPENDP),
    ("SELECT PERCENTILE_CONT(body_mass_g) AS p FROM df", OPENDP),
    ("SELECT PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY body_mass_g) FROM df", OPENDP),
    ("SELECT QUANTILE(body_mass_g, 0.9) AS q FROM df", OPENDP),
    ("SELECT MAX(body_mass_g) AS m FROM df", OPENDP),
    # one table, one SELECT
    ("SELECT COUNT(*) AS n FROM (SELECT * FROM df) AS t", "run two queries"),
    ("SELECT COUNT(*) AS n FROM df WHERE island IN (SELECT island FROM df)", "subqueries"),
    ("SELECT COUNT(*) FROM df WHERE body_mass_g > (SELECT AVG(body_mass_g) FROM df)", "subquer"),
    ("WITH t AS (SELECT * FROM df) SELECT COUNT(*) FROM t", "WITH"),
    ("SELECT COUNT(*) FROM df UNION SELECT COUNT(*) FROM df", "UNION"),
    ("SELECT COUNT(*) FROM df JOIN df AS b ON df.island = b.island", "one table"),
    ("SELECT COUNT(*) FROM df, df AS b", "one table"),
    ("SELECT COUNT(*) FROM df; DROP TABLE df", "remove the ';'"),
    ("DELETE FROM df", "only SELECT"),
    # windows, DISTINCT aggregates, patterns
    ("SELECT COUNT(*) OVER (PARTITION BY island) FROM df", "OVER"),
    ("SELECT ROW_NUMBER() OVER (ORDER BY body_mass_g) FROM df", "ROW_NUMBER"),
    ("SELECT SUM(DISTINCT body_mass_g) AS s FROM df", "SUM(DISTINCT"),
    ("SELECT COUNT(*) FROM df WHERE species LIKE 'Ad%'", "LIKE"),
    ("SELECT COUNT(*) FROM df WHERE species ~ '^Ad'", "regular expressions"),
    ("SELECT COUNT(*) FROM df WHERE REGEXP_LIKE(species, 'Ad')", "REGEXP_LIKE"),
    # functions outside the allow-list: named, with what is allowed
    ("SELECT COUNT(*) FROM df WHERE UPPER(species) = 'ADELIE'", "UPPER"),
    ("SELECT COUNT(*) FROM df WHERE LENGTH(species) > 5", "LENGTH"),
    ("SELECT MYFUNC(body_mass_g) FROM df", "'MYFUNC'"),
    ("SELECT LOG(SUM(body_mass_g)) AS l FROM df", "LOG"),
    ("SELECT COUNT(*) FROM df WHERE CAST(body_mass_g AS INTEGER) > 3000", "CAST"),
    ("SELECT COUNT(*) FROM df WHERE body_mass_g::int > 3000", "'::'"),
    ("SELECT CASE WHEN SUM(body_mass_g) > 1 THEN 1 ELSE 0 END FROM df", "CASE"),
    ("SELECT COALESCE(SUM(body_mass_g), 0) AS s FROM df", "COALESCE"),
    ("SELECT ROUND(AVG(body_mass_g)) AS r FROM df", "ROUND(x, 0)"),
    ("SELECT COUNT(*) * -1 AS n FROM df", "0 - x"),
    ("SELECT species FROM df GROUP BY species", "COUNT(*)"),
    ("SELECT COUNT(*) FROM df WHERE body_mass_g > ?", "placeholders"),
    ("SELECT COUNT(*) AS n FROM df LIMIT 5 OFFSET 10", "LIMIT n"),
    # syntax errors: where, and a hint when a common cause shows
    ("SELECT COUNT(*) AS n FROM df t WHERE t.body_mass_g > 3000", "near 't' (line 1, column 30)"),
    ('SELECT COUNT(*) FROM df WHERE species = "Adelie"', "single quotes"),
    ("SELECT COUNT(*) FROM df WHERE species = 'Adelie", "not closed"),
    ("SELECT COUNT(*) AS n", "no FROM"),
    ("SELECT COUNT(*) AS count FROM df", "COUNT is a keyword"),
    ("SELECT COUNT(*) AS n FORM df", "did you mean FROM?"),
    ("SELECT COUNT(*) AS n\nFROM df\nWHERE body_mass_g > 3000 AND AND island = 'Dream'", "line 3"),
    ("SELECT COUNT(*) FROM df WHERE body_mass_g > 1e3", "capital E"),
    ("SELECT COUNT(*) AS n FROM df WHERE body_mass_g > 3000 " + "x" * 100, "xxx..."),
]

VALID = [
    "SELECT COUNT(*) AS n FROM df",
    "SELECT species, COUNT(*) AS n FROM df GROUP BY species",
    "SELECT island, AVG(body_mass_g) AS m FROM df WHERE sex = 'FEMALE' GROUP BY island",
    "SELECT SUM(flipper_length_mm) AS s FROM df WHERE body_mass_g BETWEEN 3000 AND 5000",
    "SELECT species, COUNT(*) AS n FROM df GROUP BY species ORDER BY n DESC LIMIT 2",
    "SELECT COUNT(*) AS n FROM df WHERE island IN ('Dream', 'Biscoe') AND sex IS NOT NULL",
]
_TOKEN = re.compile(r"'[^']*'|\w+|<>|!=|<=|>=|\S")
_METADATA = DatasetMetadata.from_dict(sample_metadata("penguin"))


def _mutations(count: int, seed: int = 20240) -> list[str]:
    """Valid queries cut short, with two tokens swapped or with a stray quote; those that
    happen to stay valid are dropped (a query the guard accepts tests no refusal)."""
    rng = random.Random(seed)
    found: list[str] = []
    while len(found) < count:
        tokens = _TOKEN.findall(rng.choice(VALID))
        kind = len(found) % 3
        if kind == 0:
            tokens = tokens[: rng.randrange(1, len(tokens))]
        elif kind == 1:
            i = rng.randrange(len(tokens) - 1)
            tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
        else:
            tokens.insert(rng.randrange(1, len(tokens) + 1), rng.choice(["'", '"']))
        query = " ".join(tokens)
        try:
            guard_query(query, _METADATA, "PENGUIN")
        except InvalidQuery:
            if query not in found:
                found.append(query)
    return found


MUTATIONS = _mutations(24)


def _names_what_or_where(message: str, query: str) -> bool:
    """Whether the message gives a place, or names something the query holds: a quoted part
    of it, or one of its words in capitals (a keyword or function)."""
    if POSITION.search(message):
        return True
    lowered = query.lower()
    quoted = [a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", message)]
    if any(len(q) > 1 and q.removesuffix("...").lower() in lowered for q in quoted):
        return True
    words = set(re.findall(r"\w+", query.upper()))
    return any(word in words for word in re.findall(r"\b[A-Z_]{2,}\b", message))


def _problems(reply, query: str, mentions: str | None) -> list[str]:
    if reply.status_code != 400 or reply.json().get("error") != "invalid_query":
        return [f"{reply.status_code} {reply.text[:200]}"]
    message = reply.json()["message"]
    found = []
    if "\n" in message or "\r" in message or message != message.strip():
        found.append("not one line")
    if LIBRARY_WORDS.search(message):
        found.append(f"library words: {LIBRARY_WORDS.search(message).group()!r}")
    if len(message) > 400:
        found.append("longer than 400 characters")
    for quoted in re.findall(r"near '([^']*)'|near \"([^\"]*)\"", message):
        if len("".join(quoted)) > 40:
            found.append("quotes more than 40 characters of the query")
    # A construct is named by what the corpus expects; a mutation by a place or a word of it.
    if mentions is not None and mentions not in message:
        found.append(f"does not say {mentions!r}")
    if mentions is None and not _names_what_or_where(message, query):
        found.append("names neither a construct of the query nor a place")
    return [f"{problem}: {message}" for problem in found]


def _send_all(user, corpus: list[tuple[str, str | None]]) -> list[str]:
    failures = []
    for query, mentions in corpus:
        for path in (SQL + "/cost", SQL):
            reply = user.api.post(path, {"query": query, "epsilon": 0.5, "delta": 1e-6})
            failures += [f"{path} {query!r}: {p}" for p in _problems(reply, query, mentions)]
    return failures


def _assert_nothing_spent(user):
    assert user.api.get("/datasets/PENGUIN/budget").json()["spent"] == {
        "epsilon": 0.0,
        "delta": 0.0,
    }
    assert user.api.get("/queries").json()["queries"] == []


@pytest.fixture
def user(make_user):
    return make_user(PENGUIN=(5.0, 1e-4))


def test_the_corpus_covers_every_class_of_refusal():
    assert len(CORPUS) >= 42 and len(MUTATIONS) == 24
    assert sum(OPENDP == mentions for _, mentions in CORPUS) >= 4


def test_unsupported_and_malformed_queries_are_refused_in_our_words(user):
    failures = _send_all(user, CORPUS)
    assert not failures, "\n".join(failures)
    _assert_nothing_spent(user)


def test_mutated_queries_are_refused_in_our_words(user):
    failures = _send_all(user, [(query, None) for query in MUTATIONS])
    assert not failures, "\n".join(failures)
    _assert_nothing_spent(user)


# Synthetic data and DP models: requests the engines refuse, each with what the message must
# name. JSON bodies, not a language: the wording is the server's for every field.
SYNTH_CORPUS = [
    ({"synthesizer": "mst", "columns": ["species"]}, "'columns'"),
    ({"synthesizer": "mst", "columns": ["species", "Name"]}, "'Name'"),
    ({"synthesizer": "mst", "columns": ["species", "nope"]}, "'nope'"),
    ({"synthesizer": "aim", "columns": ["species", "species"]}, "'columns'"),
    ({"synthesizer": "pacsynth", "columns": ["species", "sex"]}, "'synthesizer'"),
    ({"synthesizer": "mwem", "columns": ["species", "sex"]}, "'synthesizer'"),
    (
        {"synthesizer": "aim", "columns": ["bill_length_mm", "bill_depth_mm"], "bins": 100},
        "'bins'",
    ),
    ({"synthesizer": "mst", "columns": ["species", "sex"], "rows": 0}, "'rows'"),
    ({"synthesizer": "mst", "columns": ["species", "sex"], "bins": 1}, "'bins'"),
    ({"synthesizer": "mst", "columns": ["species", "sex"], "delta": 0}, "'delta'"),
    ({"synthesizer": "mst", "columns": ["species", "sex"], "transformer": {}}, "'transformer'"),
]
MODEL_CORPUS = [
    ({"model": "random_forest", "features": ["bill_length_mm"]}, "'model'"),
    ({"model": "pca", "features": ["species"]}, "'species'"),
    ({"model": "pca", "features": ["bill_length_mm"], "target": "species"}, "'target'"),
    ({"model": "logistic_regression", "features": ["bill_length_mm"]}, "'target'"),
    (
        {"model": "logistic_regression", "features": ["bill_length_mm"], "target": "body_mass_g"},
        "'body_mass_g'",
    ),
    ({"model": "linear_regression", "features": ["bill_length_mm"]}, "is not offered"),
    ({"model": "gaussian_nb", "features": ["bill_length_mm"]}, "is not offered"),
    ({"model": "k_means", "features": ["bill_length_mm"]}, "is not offered"),
    (
        {
            "model": "logistic_regression",
            "features": ["bill_length_mm"],
            "target": "bill_length_mm",
        },
        "'bill_length_mm'",
    ),
    ({"model": "pca", "features": ["bill_length_mm"], "options": {"n_components": 2}}, "'n_comp"),
    ({"model": "pca", "features": ["bill_length_mm"], "options": {"C": 1.0}}, "'C'"),
    ({"model": "pca", "features": ["bill_length_mm"], "options": {"n_clusters": 2}}, "'n_cl"),
    ({"model": "logistic_regression", "features": ["x"], "target": "sex"}, "'x'"),
    ({"model": "pca", "features": ["bill_length_mm"], "pipeline": "gASV"}, "'pipeline'"),
]


def _json_problems(reply, mentions: str) -> list[str]:
    if reply.status_code != 400 or reply.json().get("error") not in (
        "invalid_request",
        "invalid_query",
    ):
        return [f"{reply.status_code} {reply.text[:200]}"]
    message = reply.json()["message"]
    found = []
    if "\n" in message or message != message.strip():
        found.append("not one line")
    if LIBRARY_WORDS.search(message):
        found.append(f"library words: {LIBRARY_WORDS.search(message).group()!r}")
    if len(message) > 400:
        found.append("longer than 400 characters")
    if mentions not in message:
        found.append(f"does not say {mentions!r}")
    return [f"{problem}: {message}" for problem in found]


@pytest.mark.parametrize(
    ("path", "corpus"),
    [("/datasets/PENGUIN/synth", SYNTH_CORPUS), ("/datasets/PENGUIN/diffprivlib", MODEL_CORPUS)],
)
def test_refused_synthesizers_and_models_are_told_why_in_our_words(user, path, corpus):
    failures = []
    for body, mentions in corpus:
        for target in (path + "/cost", path):
            reply = user.api.post(target, {"epsilon": 0.5, **body})
            failures += [f"{target} {body}: {p}" for p in _json_problems(reply, mentions)]
    assert not failures, "\n".join(failures)
    _assert_nothing_spent(user)
