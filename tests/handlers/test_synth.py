"""Synthetic data over HTTP: a synthesizer the server builds from metadata, its cost, replays,
and the requests it must refuse."""

from __future__ import annotations

import base64
import json
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lomas_server.service.admin import AdminService
from lomas_server.store.sqlite import SqliteStore
from tests.conftest import SAMPLE_DATA, sample_metadata, seed_datasets
from tests.servers import Api, ServerProcess

SYNTH = "/datasets/PENGUIN/synth"
COST = SYNTH + "/cost"
# Two small public domains: the quickest fit there is (about two seconds).
SMALL = {"synthesizer": "mst", "columns": ["species", "sex"], "epsilon": 1.0, "rows": 20}
ROWS_PER_PERSON = 3
PEOPLE_METADATA = {
    "max_ids": ROWS_PER_PERSON,
    "row_privacy": False,
    "rows": 5000,
    "columns": {
        "pid": {"type": "int", "private_id": True, "nullable": False},
        "kind": {"type": "string", "categories": ["a", "b"], "nullable": False},
        "level": {"type": "int", "lower": 1, "upper": 3, "nullable": False},
        "flag": {"type": "boolean"},
        "x": {"type": "float", "lower": 0.0, "upper": 10.0},
        "y": {"type": "float", "lower": -5.0, "upper": 5.0},
        "note": {"type": "string"},
    },
}


def people_dataset(admin: AdminService, folder: Path) -> str:
    """A dataset of persons with 1 to 6 rows each (max_ids 3): kind and level go together,
    y grows with x, flag is kind 'a'."""
    rng = np.random.default_rng(11)
    owners = np.repeat(np.arange(400), rng.integers(1, 7, 400))
    kind = rng.choice(["a", "b"], len(owners))
    x = rng.uniform(0, 10, len(owners))
    frame = pd.DataFrame(
        {
            "pid": owners,
            "kind": kind,
            "level": np.where(kind == "a", 1, 3),
            "flag": kind == "a",
            "x": x.round(3),
            "y": (x - 5 + rng.normal(0, 0.5, len(owners))).clip(-5, 5).round(3),
            "note": [f"n{i}" for i in range(len(owners))],
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "people.csv"
    frame.to_csv(path, index=False)
    name = f"PEOPLE{uuid.uuid4().hex[:6]}"
    admin.add_dataset(name, path, PEOPLE_METADATA)
    return name


def zcdp_dataset(admin: AdminService) -> str:
    name = f"Z{uuid.uuid4().hex[:6]}"
    admin.add_dataset(
        name,
        SAMPLE_DATA / "penguin.csv",
        sample_metadata("penguin"),
        accounting="zcdp",
        conversion_delta=1e-6,
    )
    return name


def pickled(value: object = None) -> str:
    """What a client could send to smuggle an object in: base64 of a pickle."""
    return base64.b64encode(pickle.dumps(value if value is not None else {"fit": "me"})).decode()


@pytest.fixture
def user(make_user):
    return make_user(PENGUIN=(10.0, 1e-4), TITANIC=(10.0, 1e-4))


@pytest.fixture(scope="module")
def people(admin, tmp_path_factory):
    return people_dataset(admin, tmp_path_factory.mktemp("people"))


def _spent(user, dataset="PENGUIN"):
    return user.api.get(f"/datasets/{dataset}/budget").json()["spent"]


def _assert_nothing_spent(user, dataset="PENGUIN"):
    assert _spent(user, dataset) == {"epsilon": 0.0, "delta": 0.0}
    assert user.api.get("/queries").json()["queries"] == []


def test_mst_returns_rows_of_the_declared_domain_and_charges_what_was_asked(user):
    body = {
        "synthesizer": "mst",
        "columns": ["species", "island", "bill_length_mm"],
        "epsilon": 3.0,
        "delta": 1e-6,
        "rows": 200,
    }
    reply = user.api.post(SYNTH, body)
    assert reply.status_code == 200, reply.text
    result = reply.json()["result"]
    assert result["columns"] == ["species", "island", "bill_length_mm"]
    assert len(result["data"]) == 200
    assert {row[0] for row in result["data"]} <= {"Adelie", "Chinstrap", "Gentoo"}
    assert all(30.0 <= row[2] <= 65.0 for row in result["data"] if row[2] is not None)
    assert reply.json()["cost"] == {"epsilon": 3.0, "delta": 1e-6}
    assert _spent(user) == {"epsilon": 3.0, "delta": 1e-6}


def test_the_cost_is_exact_spends_nothing_and_describes_the_domain(user):
    body = {**SMALL, "columns": ["species", "bill_depth_mm", "sex"], "bins": 4, "delta": 1e-6}
    estimate = user.api.post(COST, body)
    assert estimate.status_code == 200, estimate.text
    described = estimate.json()
    assert described["cost"] == {"epsilon": 1.0, "delta": 1e-6} and described["fits"] is True
    assert described["delta_used"] == 1e-6 and described["replay_of"] is None
    assert described["synthesizer"] == "mst" and described["rows_per_person"] == 1
    assert described["domain"] == [
        {"column": "species", "values": 3, "nullable": False},
        {"column": "bill_depth_mm", "bins": 4, "nullable": True},
        {"column": "sex", "values": 2, "nullable": True},
    ]
    assert "species" in described["query_text"] and "4 bins" in described["query_text"]
    _assert_nothing_spent(user)
    # and the release charges exactly what its estimate said (on a quicker domain)
    small = {**SMALL, "delta": 1e-6}
    estimated = user.api.post(COST, small).json()["cost"]
    released = user.api.post(SYNTH, small).json()
    assert released["cost"] == estimated == _spent(user)


def test_without_delta_the_server_chooses_one(user):
    estimate = user.api.post(COST, SMALL).json()
    assert (
        0 < estimate["delta_used"] <= 1e-4 and estimate["cost"]["delta"] == estimate["delta_used"]
    )


# -- refusals: every field, in the server's words, nothing spent ----------------------------------
REFUSED = [
    ({"columns": ["species", "sex"], "epsilon": 1.0}, "synthesizer"),
    ({"synthesizer": "mst", "epsilon": 1.0}, "columns"),
    ({"synthesizer": "mst", "columns": ["species", "sex"]}, "epsilon"),
    ({**SMALL, "synthesizer": "gan"}, "'synthesizer' must be 'aim' or 'mst'"),
    ({**SMALL, "synthesizer": "MST"}, "'synthesizer' must be 'aim' or 'mst'"),
    ({**SMALL, "synthesizer": 5}, "'synthesizer' must be 'aim' or 'mst'"),
    ({**SMALL, "synthesizer": ["mst"]}, "'synthesizer' must be 'aim' or 'mst'"),
    ({**SMALL, "columns": []}, "'columns' must be a list of 2 to 12 different column names"),
    ({**SMALL, "columns": "species"}, "'columns' must be a list"),
    ({**SMALL, "columns": ["species", "species"]}, "'columns' must be a list of 2 to 12 different"),
    ({**SMALL, "columns": [f"c{i}" for i in range(13)]}, "'columns' takes at most 12"),
    ({**SMALL, "columns": ["species", 3]}, "item 2 of 'columns' must be a string"),
    ({**SMALL, "columns": ["species", ""]}, "item 2 of 'columns' must not be empty"),
    ({**SMALL, "columns": ["species", "nope"]}, "no column 'nope' in this dataset"),
    (
        {**SMALL, "columns": ["species"]},
        "'columns' must be a list of 2 to 12 different column names",
    ),
    (
        {**SMALL, "synthesizer": "aim", "columns": ["island"]},
        "'columns' must be a list of 2 to 12 different column names",
    ),
    (
        {**SMALL, "synthesizer": "aim", "columns": ["bill_length_mm", "body_mass_g"], "bins": 100},
        "aim models pairs of columns with at most 10000 value combinations",
    ),
    ({**SMALL, "epsilon": "1"}, "'epsilon' must be a number"),
    ({**SMALL, "epsilon": True}, "epsilon"),
    ({**SMALL, "epsilon": 0}, "'epsilon' must be from"),
    ({**SMALL, "epsilon": -1}, "'epsilon' must be from"),
    ({**SMALL, "epsilon": 1e6}, "'epsilon' must be from"),
    # a synthesizer needs delta: the contract's range for it has no 0
    ({**SMALL, "delta": 0}, "'delta' must be from 1e-15 to 0.1"),
    ({**SMALL, "delta": 0.0}, "'delta' must be from 1e-15 to 0.1"),
    ({**SMALL, "delta": 0.5}, "'delta' must be"),
    ({**SMALL, "delta": -1e-9}, "delta"),
    ({**SMALL, "delta": "1e-6"}, "delta"),
    ({**SMALL, "rows": 0}, "'rows' must be a whole number, 1 or more"),
    ({**SMALL, "rows": -5}, "'rows' must be a whole number, 1 or more"),
    ({**SMALL, "rows": 2.5}, "'rows' must be a whole number"),
    ({**SMALL, "rows": "20"}, "'rows' must be a whole number"),
    ({**SMALL, "rows": 100_001}, "'rows' is at most 100000 on this server"),
    ({**SMALL, "bins": 1}, "'bins' must be a whole number from 2 to 100"),
    ({**SMALL, "bins": 101}, "'bins' must be a whole number from 2 to 100"),
    ({**SMALL, "bins": 2.5}, "'bins' must be a whole number"),
    ({**SMALL, "seed": 3}, "unknown field(s) 'seed'"),
    ({**SMALL, "preprocessor_eps": 0.5}, "unknown field(s) 'preprocessor_eps'"),
    ({**SMALL, "query": "SELECT 1"}, "unknown field(s) 'query'"),
]


@pytest.mark.parametrize("path", [COST, SYNTH])
@pytest.mark.parametrize(("body", "mentions"), REFUSED)
def test_every_field_is_checked_and_refused_in_our_words(user, path, body, mentions):
    reply = user.api.post(path, body)
    assert reply.status_code == 400, reply.text
    payload = reply.json()
    assert payload["error"] in ("invalid_request", "invalid_query")
    assert mentions in payload["message"], payload["message"]
    _assert_nothing_spent(user)


def test_fresh_is_a_release_field_only(user):
    reply = user.api.post(COST, {**SMALL, "fresh": True})
    assert reply.status_code == 400 and "unknown field(s) 'fresh'" in reply.json()["message"]
    reply = user.api.post(SYNTH, {**SMALL, "fresh": "yes"})
    assert reply.status_code == 400 and "'fresh' must be true or false" in reply.json()["message"]
    _assert_nothing_spent(user)


@pytest.mark.parametrize(
    ("column", "mentions"),
    [
        ("Name", "column 'Name' has neither declared categories nor numeric bounds"),
        ("Name\u0000", "no column"),
    ],
)
def test_a_column_whose_values_would_come_from_the_data_is_refused(user, column, mentions):
    body = {**SMALL, "columns": ["Sex", column]}
    for path in ("/datasets/TITANIC/synth/cost", "/datasets/TITANIC/synth"):
        reply = user.api.post(path, body)
        assert reply.status_code == 400 and reply.json()["error"] == "invalid_query"
        assert mentions in reply.json()["message"]
    _assert_nothing_spent(user, "TITANIC")


def test_the_persons_id_column_is_refused(make_user, people):
    user = make_user(**{people: (5.0, 1e-4)})
    for path in (f"/datasets/{people}/synth/cost", f"/datasets/{people}/synth"):
        reply = user.api.post(path, {**SMALL, "columns": ["kind", "pid"]})
        assert reply.status_code == 400
        assert "column 'pid' identifies people" in reply.json()["message"]
        reply = user.api.post(path, {**SMALL, "columns": ["kind", "note"]})
        assert reply.status_code == 400 and "'note' has neither" in reply.json()["message"]
    _assert_nothing_spent(user, people)


SMUGGLED = [
    {**SMALL, "synthesizer": pickled()},
    {**SMALL, "synthesizer": pickled(["mst"])},
    {**SMALL, "synthesizer": {"py/object": "snsynth.mst.MSTSynthesizer"}},
    {**SMALL, "synthesizer": {"__reduce__": ["os.system", ["true"]]}},
    {**SMALL, "columns": ["species", pickled()]},
    {**SMALL, "columns": {"species": pickled()}},
    {**SMALL, "columns": [{"py/object": "pandas.DataFrame"}, "sex"]},
    {**SMALL, "epsilon": pickled(1.0)},
    {**SMALL, "rows": pickled(20)},
    {**SMALL, "pipeline": pickled()},
    {**SMALL, "model_pickle": pickled()},
    {**SMALL, "synthesizer_pickle": pickled()},
    {**SMALL, "transformer": pickled()},
    {**SMALL, "transformer": {"py/object": "snsynth.transform.TableTransformer"}},
    {**SMALL, "options": {"pickle": pickled()}},
]


@pytest.mark.parametrize("body", SMUGGLED)
def test_a_pickled_or_serialized_synthesizer_is_refused_with_nothing_spent(user, body):
    """The server builds the synthesizer; nothing sent is deserialized. Each of these is a
    400 before anything is spent or archived, and its bytes are never quoted back whole."""
    for path in (COST, SYNTH):
        reply = user.api.post(path, body)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"] in ("invalid_request", "invalid_query")
        assert len(reply.json()["message"]) < 300
    _assert_nothing_spent(user)


# -- what is charged -------------------------------------------------------------------------------
def test_many_rows_per_person_are_charged_what_was_asked(make_user, people):
    """With up to three rows per person the synthesizer fits at the per-row share; the analyst
    pays the (epsilon, delta) asked, which is the share's group guarantee."""
    user = make_user(**{people: (5.0, 1e-4)})
    body = {**SMALL, "columns": ["kind", "level"], "epsilon": 1.5, "delta": 1e-6}
    estimate = user.api.post(f"/datasets/{people}/synth/cost", body).json()
    assert estimate["rows_per_person"] == ROWS_PER_PERSON
    assert estimate["cost"] == {"epsilon": 1.5, "delta": 1e-6}
    reply = user.api.post(f"/datasets/{people}/synth", body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["cost"] == {"epsilon": 1.5, "delta": 1e-6}
    assert _spent(user, people) == {"epsilon": 1.5, "delta": 1e-6}
    assert {tuple(r) for r in reply.json()["result"]["data"]} <= {
        (k, level) for k in "ab" for level in (1, 2, 3)
    }


def test_a_zcdp_dataset_is_charged_by_its_rule(admin, make_user):
    """(epsilon, delta) approximate DP enters a zCDP ledger as delta-approximate
    epsilon^2/2-zCDP (accounting/rules.py)."""
    name = zcdp_dataset(admin)
    user = make_user(**{name: (5.0, 1e-4)})
    body = {**SMALL, "epsilon": 0.8, "delta": 1e-6}
    estimate = user.api.post(f"/datasets/{name}/synth/cost", body).json()
    reply = user.api.post(f"/datasets/{name}/synth", body)
    assert reply.status_code == 200, reply.text
    budget = user.api.get(f"/datasets/{name}/budget").json()
    assert budget["accounting"]["spent"]["rho"] == pytest.approx(0.8**2 / 2)
    assert budget["accounting"]["spent"]["delta"] == pytest.approx(1e-6)
    assert reply.json()["cost"] == estimate["cost"]
    assert reply.json()["cost"]["rho"] == pytest.approx(0.32)


# -- replays and the archive -----------------------------------------------------------------------
def test_an_identical_request_replays_the_same_rows_for_free_and_fresh_pays(user):
    body = {**SMALL, "delta": 1e-6}
    first = user.api.post(SYNTH, body).json()
    again = user.api.post(SYNTH, {**body, "columns": ["species", "sex"]}).json()
    assert again["replay_of"] == first["query_id"] == again["query_id"]
    assert again["result"] == first["result"]
    assert again["cost"] == {"epsilon": 0.0, "delta": 0.0}
    assert user.api.post(COST, body).json()["replay_of"] == first["query_id"]
    assert _spent(user) == {"epsilon": 1.0, "delta": 1e-6}
    fresh = user.api.post(SYNTH, {**body, "fresh": True}).json()
    assert fresh["replay_of"] is None and fresh["query_id"] != first["query_id"]
    assert _spent(user) == {"epsilon": 2.0, "delta": 2e-6}
    archive = user.api.get("/queries").json()["queries"]  # checked against api.yaml
    assert [q["query_id"] for q in archive] == [first["query_id"], fresh["query_id"]]
    for entry, reply in zip(archive, (first, fresh), strict=True):
        assert entry["engine"] == "smartnoise_synth" and entry["status"] == "done"
        assert entry["result"] == reply["result"] and entry["cost"] == reply["cost"]
        assert entry["synth"] == {
            "synthesizer": "mst",
            "columns": ["species", "sex"],
            "rows": 20,
            "bins": 10,
        }
        assert entry["epsilon"] == 1.0 and entry["delta"] == 1e-6


@pytest.mark.parametrize(
    "change",
    [{"rows": 21}, {"bins": 9}, {"columns": ["sex", "species"]}, {"epsilon": 1.1}, {"delta": 2e-6}],
)
def test_a_different_request_is_a_new_release(user, change):
    body = {**SMALL, "delta": 1e-6}
    first = user.api.post(SYNTH, body).json()
    other = user.api.post(SYNTH, {**body, **change}).json()
    assert other["replay_of"] is None and other["query_id"] != first["query_id"]
    assert _spent(user)["epsilon"] > 1.0


# -- failures and limits ---------------------------------------------------------------------------
def limited_server(folder: Path) -> Iterator[tuple[ServerProcess, AdminService]]:
    """A server of its own whose admin allows at most 30 synthetic rows per request and
    1 ms for a query's run on the rows: every fit passes it, after its budget was reserved."""
    store = SqliteStore(folder / "admin.sqlite")
    service = AdminService(store)
    seed_datasets(service, folder / "data")
    process = ServerProcess(
        folder / "admin.sqlite",
        folder,
        extra_args=(
            "--LomasServerApp.max_synth_rows=30",
            "--LomasServerApp.query_time_limit=0.001",
        ),
    ).start()
    try:
        yield process, service
    finally:
        process.stop()
        store.close()


def limited_user(service: AdminService, server: ServerProcess) -> Api:
    name = f"limited-{uuid.uuid4().hex[:6]}"
    token = service.add_user(name)
    service.grant(name, "PENGUIN", 5.0, 1e-4)
    return Api(server.api, token)


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    yield from limited_server(tmp_path_factory.mktemp("synth-limits"))


def test_a_fit_stopped_after_the_reservation_keeps_the_spend(limited):
    """A real fault after the reservation: the fit passes the query time limit. One generic
    reply naming the query id, the spend kept, the query archived as stopped, and no
    silent re-run: the same request again is a new release (or refused before paying while
    the first is still ending)."""
    server, service = limited
    api = limited_user(service, server)
    body = {**SMALL, "delta": 1e-6}
    reply = api.post(SYNTH, body)
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"] == "time_limit_exceeded"
    assert "budget stays spent" in reply.json()["message"]
    (archived,) = api.get("/queries").json()["queries"]
    assert archived["status"] == "stopped" and archived["result"] is None
    assert archived["query_id"] in reply.json()["message"]
    assert archived["cost"] == {"epsilon": 1.0, "delta": 1e-6}
    assert api.get("/datasets/PENGUIN/budget").json()["spent"] == archived["cost"]
    again = api.post(SYNTH, body)
    assert again.status_code == 503 and again.json()["error"] in (
        "time_limit_exceeded",
        "engine_busy",
    )
    paid = 2.0 if again.json()["error"] == "time_limit_exceeded" else 1.0
    assert api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == paid


def test_rows_above_the_admins_maximum_are_refused(limited):
    server, service = limited
    api = limited_user(service, server)
    assert api.post(COST, {**SMALL, "rows": 30}).status_code == 200
    for path in (COST, SYNTH):
        reply = api.post(path, {**SMALL, "rows": 31})
        assert reply.status_code == 400 and reply.json()["error"] == "invalid_query"
        assert reply.json()["message"] == "'rows' is at most 30 on this server"
    assert api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.0
    assert api.get("/queries").json()["queries"] == []


# -- what the rows are worth -----------------------------------------------------------------------
def _shares(values: list, categories: list) -> np.ndarray:
    counts = np.array([sum(v == c for v in values) for c in categories], dtype=float)
    return counts / counts.sum()


def test_synthetic_marginals_are_close_to_the_true_ones_at_a_generous_epsilon(user):
    truth = pd.read_csv(SAMPLE_DATA / "penguin.csv")
    body = {
        "synthesizer": "mst",
        "columns": ["species", "island"],
        "epsilon": 8.0,
        "delta": 1e-5,
        "rows": 3000,
    }
    reply = user.api.post(SYNTH, body)
    assert reply.status_code == 200, reply.text
    rows = reply.json()["result"]["data"]
    species = ["Adelie", "Chinstrap", "Gentoo"]
    islands = ["Torgersen", "Biscoe", "Dream"]
    for index, (column, categories) in enumerate((("species", species), ("island", islands))):
        synthetic = _shares([r[index] for r in rows], categories)
        real = _shares(truth[column].tolist(), categories)
        assert 0.5 * np.abs(synthetic - real).sum() < 0.1, (column, synthetic, real)
    # and how they go together: Gentoo live on Biscoe, Chinstrap on Dream
    gentoo = [island for s, island in rows if s == "Gentoo"]
    chinstrap = [island for s, island in rows if s == "Chinstrap"]
    assert gentoo.count("Biscoe") > 0.8 * len(gentoo)
    assert chinstrap.count("Dream") > 0.8 * len(chinstrap)


def test_aim_returns_rows_of_the_domain(make_user, people):
    """AIM once over HTTP (its fits are the slowest), on rows of up to three per person."""
    user = make_user(**{people: (5.0, 1e-4)})
    body = {
        "synthesizer": "aim",
        "columns": ["kind", "flag"],
        "epsilon": 4.0,
        "delta": 1e-6,
        "rows": 500,
    }
    reply = user.api.post(f"/datasets/{people}/synth", body)
    assert reply.status_code == 200, reply.text
    rows = reply.json()["result"]["data"]
    assert len(rows) == 500 and {tuple(r) for r in rows} <= {
        (k, f) for k in "ab" for f in (True, False, None)
    }
    # flag is kind 'a': most synthetic rows keep it so
    assert sum((k == "a") == f for k, f in rows) > 0.7 * len(rows)
    assert reply.json()["cost"] == {"epsilon": 4.0, "delta": 1e-6}


def test_the_reply_is_plain_json(user):
    reply = user.api.post(SYNTH, {**SMALL, "delta": 1e-6})
    assert json.loads(reply.text)["result"]["columns"] == ["species", "sex"]
    assert set(reply.json()) == {
        "query_id",
        "replay_of",
        "result",
        "cost",
        "delta_used",
        "budget",
        "queries_left",
        "accuracy",
    }
