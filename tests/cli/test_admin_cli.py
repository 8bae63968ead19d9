"""``lomas-admin`` as an administrator types it: real subprocesses on a real store file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lomas_server.tokens import hash_token
from tests.conftest import SAMPLE_DATA
from tests.servers import Api, ServerProcess


@pytest.fixture
def admin_cli(tmp_path):
    url = f"sqlite:///{tmp_path / 'admin.sqlite'}"

    def run(*args: str, expect: int = 0, as_json: bool = True):
        flags = ["--json"] if as_json else []
        done = subprocess.run(
            [sys.executable, "-m", "lomas_server.admin_cli", "--store", url, *flags, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == expect, done.stderr + done.stdout
        if expect != 0:
            return done.stderr
        return json.loads(done.stdout) if as_json else done.stdout

    return run


def _add_penguins(run):
    return run(
        "add-dataset",
        "PENGUIN",
        "--file",
        str(SAMPLE_DATA / "penguin.csv"),
        "--metadata",
        str(SAMPLE_DATA / "penguin.yaml"),
    )


def test_whole_admin_workflow(admin_cli, tmp_path):
    created = admin_cli("add-user", "alice")
    token = created["token"]
    assert token.startswith("lomas_") and "not shown again" in created["note"]
    assert _add_penguins(admin_cli)["columns"][0] == "species"
    admin_cli("grant", "alice", "PENGUIN", "--epsilon", "2", "--delta", "1e-5")
    budget = admin_cli("budget", "alice")
    assert budget == [
        {
            "dataset": "PENGUIN",
            "initial": {"epsilon": 2.0, "delta": 1e-5},
            "spent": {"epsilon": 0.0, "delta": 0.0},
            "remaining": {"epsilon": 2.0, "delta": 1e-5},
            "accounting": {"mode": "basic", "conversion_delta": 1e-6},
        }
    ]
    assert [u["name"] for u in admin_cli("list-users")] == ["alice"]
    datasets = admin_cli("list-datasets")
    assert datasets[0]["name"] == "PENGUIN" and datasets[0]["cap"] is None

    # a server on the same store sees the user; the CLI then sees the query
    server = ServerProcess(tmp_path / "admin.sqlite", tmp_path).start()
    try:
        api = Api(server.api, token)
        assert api.sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", 0.5).status_code == 200
        archive = admin_cli("archive", "alice")
        assert [(a["dataset"], a["status"], a["cost"]["epsilon"]) for a in archive] == [
            ("PENGUIN", "done", 0.5)
        ]
        assert admin_cli("budget", "alice")[0]["remaining"]["epsilon"] == 1.5

        rotated = admin_cli("rotate-token", "alice")["token"]
        assert api.get("/datasets").status_code == 401
        assert Api(server.api, rotated).get("/datasets").status_code == 200
    finally:
        server.stop()


def test_only_the_token_hash_is_stored(admin_cli, tmp_path):
    token = admin_cli("add-user", "bob")["token"]
    raw = (tmp_path / "admin.sqlite").read_bytes()
    for suffix in ("-wal", "-shm"):
        wal = tmp_path / f"admin.sqlite{suffix}"
        if wal.exists():
            raw += wal.read_bytes()
    assert token.encode() not in raw
    assert hash_token(token).encode() in raw


def test_limits_and_blocking(admin_cli):
    admin_cli("add-user", "carol")
    _add_penguins(admin_cli)
    admin_cli(
        "set-limits",
        "PENGUIN",
        "--max-query-epsilon",
        "1",
        "--max-query-delta",
        "0",
        "--cap-epsilon",
        "20",
        "--cap-delta",
        "0.001",
    )
    dataset = admin_cli("list-datasets")[0]
    assert dataset["max_query"] == {"epsilon": 1.0, "delta": 0.0}
    assert dataset["cap"] == {"epsilon": 20.0, "delta": 0.001}
    assert admin_cli("block", "carol") == {"user": "carol", "may_query": False}
    assert admin_cli("list-users")[0]["may_query"] is False
    assert admin_cli("unblock", "carol")["may_query"] is True


def test_text_output_is_a_readable_table(admin_cli):
    admin_cli("add-user", "dave")
    _add_penguins(admin_cli)
    admin_cli("grant", "dave", "PENGUIN", "--epsilon", "3", "--delta", "0")
    text = admin_cli("budget", "dave", as_json=False)
    lines = text.splitlines()
    assert lines[0].split() == ["dataset", "initial", "spent", "remaining", "accounting"]
    assert lines[1].split()[-1] == "basic"
    assert "eps=3 delta=0" in lines[1]


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (("grant", "nobody", "PENGUIN", "--epsilon", "1", "--delta", "0"), "no user 'nobody'"),
        (("grant", "erin", "NOPE", "--epsilon", "1", "--delta", "0"), "no dataset 'NOPE'"),
        (("grant", "erin", "PENGUIN", "--epsilon", "-1", "--delta", "0"), "epsilon"),
        (("grant", "erin", "PENGUIN", "--epsilon", "1", "--delta", "1"), "delta"),
        (("grant", "erin", "PENGUIN", "--epsilon", "nan", "--delta", "0"), "finite"),
        (("add-user", "erin"), "already exists"),
        (("add-user", " spaced "), "user name"),
        (("budget", "nobody"), "no user"),
        (
            (
                "add-dataset",
                "X",
                "--file",
                "/no/such.csv",
                "--metadata",
                str(SAMPLE_DATA / "penguin.yaml"),
            ),
            "cannot be read",
        ),
        (
            (
                "add-dataset",
                "X",
                "--file",
                str(SAMPLE_DATA / "titanic.csv"),
                "--metadata",
                str(SAMPLE_DATA / "penguin.yaml"),
            ),
            "no column",
        ),
        (
            (
                "add-dataset",
                "X",
                "--file",
                str(SAMPLE_DATA / "penguin.csv"),
                "--metadata",
                "/no/meta.yaml",
            ),
            "cannot read metadata",
        ),
        (
            (
                "add-dataset",
                "bad name",
                "--file",
                str(SAMPLE_DATA / "penguin.csv"),
                "--metadata",
                str(SAMPLE_DATA / "penguin.yaml"),
            ),
            "dataset name",
        ),
        (("set-limits", "PENGUIN", "--cap-delta", "0.1"), "--cap-epsilon"),
    ],
)
def test_mistakes_get_one_clear_line_and_exit_2(admin_cli, args, mentions):
    admin_cli("add-user", "erin")
    _add_penguins(admin_cli)
    stderr = admin_cli(*args, expect=2)
    assert stderr.startswith("lomas-admin: ") and mentions in stderr
    assert "Traceback" not in stderr


def test_help_lists_every_command():
    done = subprocess.run(
        [sys.executable, "-m", "lomas_server.admin_cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in (
        "add-user",
        "add-dataset",
        "grant",
        "budget",
        "list-users",
        "list-datasets",
        "archive",
        "rotate-token",
        "set-limits",
        "block",
        "budget-requests",
        "approve",
        "deny",
    ):
        assert command in done.stdout


def test_a_hub_user_is_added_without_a_token_to_grant_before_their_first_call(admin_cli):
    _add_penguins(admin_cli)
    created = admin_cli("add-user", "hana", "--hub")
    assert created == {
        "user": "hana",
        "token": None,
        "note": "signs in with their JupyterHub token",
    }
    admin_cli("grant", "hana", "PENGUIN", "--epsilon", "2", "--delta", "0")
    assert admin_cli("budget", "hana")[0]["initial"]["epsilon"] == 2.0
    refused = admin_cli("add-user", "ian", "--hub", "--admin", expect=2)
    assert "admin groups" in refused
