"""Moving over from lomas (its YAML collections), and backups that restore exactly."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lomas_server.accounting import PrivacyAmount
from lomas_server.errors import Conflict, InvalidRequest
from lomas_server.service.admin import AdminService
from lomas_server.service.backup import export_store, restore_store
from lomas_server.service.budget_requests import BudgetRequests
from lomas_server.store import open_store
from tests.conftest import SAMPLE_DATA, seed_datasets
from tests.servers import Api, ServerProcess

FIXTURES = Path(__file__).parents[1] / "fixtures" / "lomas"
SEABORN_PENGUINS = "https://raw.githubusercontent.com/mwaskom/seaborn-data/master/penguins.csv"


def lomas_admin(store_url: str, *args: str, expect: int = 0, env: dict[str, str] | None = None):
    done = subprocess.run(
        [sys.executable, "-m", "lomas_server.admin_cli", "--store", store_url, "--json", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == expect, done.stderr + done.stdout
    return json.loads(done.stdout) if expect == 0 else done.stderr


def test_import_lomas_collections_keeps_budgets_and_tokens_work(tmp_path):
    url = f"sqlite:///{tmp_path / 'admin.sqlite'}"
    report = lomas_admin(
        url,
        "import-lomas",
        str(FIXTURES / "user_collection.yaml"),
        str(FIXTURES / "dataset_collection.yaml"),
        "--remap",
        "../data/collections/metadata=metadata",
        "--remap",
        f"{SEABORN_PENGUINS}={SAMPLE_DATA / 'penguin.csv'}",
    )
    assert report["datasets"] == ["PENGUIN"]
    assert set(report["users"]) == {"Alice", "Dr. Antartica", "Dr. FSO", "Bob", "Jack"}
    # every dataset that could not be brought over is named, with the reason
    skipped = "\n".join(report["skipped"])
    for name in ("IRIS", "TITANIC", "FSO_INCOME_SYNTHETIC", "BIRTHDAYS"):
        assert f"dataset {name}:" in skipped
    assert "budget of Alice on IRIS: the dataset was not imported" in skipped

    budgets = {b["dataset"]: b for b in lomas_admin(url, "budget", "Alice")}
    alice = budgets["PENGUIN"]
    assert alice["initial"] == {"epsilon": 5.0, "delta": 0.0005}
    assert alice["spent"] == {"epsilon": 0.2, "delta": 1e-7}  # lomas's total_spent, carried over

    # lomas's PENGUIN releases any group key found in the data (censor_dims: false): the
    # import removes that, says so, and says what the admin may declare instead
    (note,) = [c for c in report["changed"] if c.startswith("dataset PENGUIN:")]
    assert "censor_dims" in note and "public_keys" in note and "species" in note

    server = ServerProcess(tmp_path / "admin.sqlite", tmp_path).start()
    try:
        api = Api(server.api, report["users"]["Alice"])
        assert api.sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", 0.3).status_code == 200
        assert api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.5
        # species is not declared public there: its groups need a threshold, hence delta
        grouped = api.sql("PENGUIN", "SELECT species, COUNT(*) AS n FROM df GROUP BY species", 0.3)
        assert grouped.status_code == 400 and "delta" in grouped.json()["message"]
    finally:
        server.stop()

    # importing again changes nothing and says why
    again = lomas_admin(url, "import-lomas", str(FIXTURES / "user_collection.yaml"))
    assert again["users"] == {} and "user Alice: already exists" in again["skipped"]


def test_import_lomas_s3_dataset_and_metadata(s3, tmp_path):
    client = s3.client()
    bucket = "example"
    if bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=bucket)
    # lomas's TITANIC metadata declares Ticket, Cabin and Embarked too: give the rows those columns
    rows = pd.read_csv(SAMPLE_DATA / "titanic.csv").assign(Ticket="T", Cabin="C", Embarked="S")
    rows["Survived"] = rows["Survived"].astype(bool)
    buffer = io.StringIO()
    rows.to_csv(buffer, index=False)
    client.put_object(Bucket=bucket, Key="data/titanic.csv", Body=buffer.getvalue().encode())
    client.put_object(
        Bucket=bucket,
        Key="metadata/titanic_metadata.yaml",
        Body=(FIXTURES / "metadata" / "titanic_metadata.yaml").read_bytes(),
    )
    collection = tmp_path / "datasets.yaml"
    local = yaml.safe_load((FIXTURES / "dataset_collection_local.yaml").read_text())
    collection.write_text(
        yaml.safe_dump(
            {"datasets": [d for d in local["datasets"] if d["dataset_name"] == "TITANIC"]}
        )
    )
    url = f"sqlite:///{tmp_path / 'admin.sqlite'}"
    remap = f"http://minio:9000={s3.endpoint}"
    # The data's entry names lomas's server credentials ('credentials_name'), which it does not
    # carry: without any, the dataset is skipped with the reason; with the server's own AWS
    # environment it is imported. The metadata's entry carries its keys and is read with them.
    no_keys = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }
    refused = lomas_admin(url, "import-lomas", str(collection), "--remap", remap, env=no_keys)
    assert refused["datasets"] == [] and "no S3 credentials" in refused["skipped"][0]
    keys = {"AWS_ACCESS_KEY_ID": s3.KEY_ID, "AWS_SECRET_ACCESS_KEY": s3.SECRET}
    report = lomas_admin(url, "import-lomas", str(collection), "--remap", remap, env=keys)
    assert report["datasets"] == ["TITANIC"], report["skipped"]
    listed = lomas_admin(url, "list-datasets")[0]
    assert (
        listed["source"]["bucket"] == "example" and listed["source"]["endpoint_url"] == s3.endpoint
    )


@pytest.fixture
def busy_store(tmp_path, s3):
    """A store with users, datasets (one on S3, with credentials; one with zCDP accounting),
    limits, grants, spends, an import, archive entries of every status and budget requests
    (approved, denied, pending)."""
    url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    store = open_store(url)
    admin = AdminService(store)
    seed_datasets(admin, tmp_path / "data")
    bucket = f"b-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    s3.client().put_object(
        Bucket=bucket, Key="p.csv", Body=(SAMPLE_DATA / "penguin.csv").read_bytes()
    )
    admin.add_dataset(
        "ONS3",
        f"s3://{bucket}/p.csv",
        yaml.safe_load((SAMPLE_DATA / "penguin.yaml").read_text()),
        source_options=s3.options(),
        cap=(20.0, 1e-3),
    )
    admin.add_dataset(
        "ZCDP",
        tmp_path / "data" / "penguin.csv",
        yaml.safe_load((SAMPLE_DATA / "penguin.yaml").read_text()),
        accounting="zcdp",
        conversion_delta=1e-7,
    )
    admin.set_limits("TITANIC", max_query=(2.0, 1e-4), cap=None)
    token = admin.add_user("ana")
    admin.add_user("blocked-bo")
    admin.set_may_query("blocked-bo", False)
    for dataset in ("PENGUIN", "TITANIC", "ONS3"):
        admin.grant("ana", dataset, 5.0, 1e-4)
    admin.store.record_spend("ana", "PENGUIN", PrivacyAmount.cost(0.25, 0), kind="import")
    requests = BudgetRequests(store)
    approved = requests.ask("ana", "TITANIC", 1.0, 0, "more\nplease")["id"]
    requests.approve(approved, "root", epsilon=0.5, note="half")
    denied = requests.ask("ana", "PENGUIN", 100, 0, "a lot")["id"]
    requests.deny(denied, "root", "too much")
    requests.ask("ana", "PENGUIN", 1, 1e-6, "again, less")
    store.close()
    server = ServerProcess(tmp_path / "source.sqlite", tmp_path).start()
    api = Api(server.api, token)
    api.sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", 0.5)
    api.sql("ONS3", "SELECT species, COUNT(*) AS n FROM df GROUP BY species", 0.5)
    api.sql("TITANIC", "SELECT Sex, COUNT(*) AS n FROM df GROUP BY Sex", 0.5, 1e-5)
    server.stop()
    return url, token


@pytest.mark.parametrize("target", ["sqlite", "mongo"])
def test_backup_round_trip(busy_store, target, tmp_path, request):
    url, token = busy_store
    source = open_store(url)
    backup = export_store(source)
    source.close()
    assert len(backup["archive"]) == 3 and len(backup["ledger"]) == 4
    assert [r["state"] for r in backup["budget_requests"]] == ["approved", "denied", "pending"]
    assert [d["accounting"] for d in backup["datasets"] if d["name"] == "ZCDP"] == ["zcdp"]
    if target == "mongo":
        restored_url = request.getfixturevalue("ferretdb").database_url(f"r_{uuid.uuid4().hex[:8]}")
    else:
        restored_url = f"sqlite:///{tmp_path / 'restored.sqlite'}"
    restored = open_store(restored_url)
    counts = restore_store(restored, yaml.safe_load(yaml.safe_dump(backup)))
    assert counts == {
        "users": 2,
        "datasets": 4,
        "grants": 3,
        "ledger": 4,
        "archive": 3,
        "budget_requests": 3,
    }
    assert export_store(restored) == backup
    assert restored.get_dataset("ZCDP").conversion_delta == 1e-7
    # the one-pending rule holds in the restored store too
    with pytest.raises(Conflict):
        BudgetRequests(restored).ask("ana", "PENGUIN", 1, 0, "once more")
    restored.close()
    # the restored store serves: old tokens work, budgets are what they were, replays still replay
    server = ServerProcess(
        restored_url if target == "mongo" else tmp_path / "restored.sqlite", tmp_path
    ).start()
    try:
        api = Api(server.api, token)
        assert api.get("/datasets/PENGUIN/budget").json()["spent"]["epsilon"] == 0.75
        replay = api.sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", 0.5).json()
        assert replay["replay_of"] is not None and replay["cost"]["epsilon"] == 0.0
    finally:
        server.stop()


def test_a_version_1_backup_restores_without_budget_requests(busy_store, tmp_path):
    """Backups written before budget requests (and before datasets kept their rule) restore
    as they always did."""
    url, _ = busy_store
    source = open_store(url)
    backup = export_store(source)
    source.close()
    old = {**backup, "version": 1}
    del old["budget_requests"]
    old["datasets"] = [
        {k: v for k, v in d.items() if k not in ("accounting", "conversion_delta")}
        for d in backup["datasets"]
        if d["name"] != "ZCDP"  # no zCDP dataset existed then
    ]
    old["grants"] = [g for g in backup["grants"] if g["dataset"] != "ZCDP"]
    target = open_store(f"sqlite:///{tmp_path / 'from-v1.sqlite'}")
    counts = restore_store(target, yaml.safe_load(yaml.safe_dump(old)))
    assert counts["budget_requests"] == 0 and counts["ledger"] == 4
    assert target.budget_requests() == []
    assert {d.accounting for d in target.list_datasets()} == {"basic"}
    again = export_store(target)
    assert again["version"] == 2 and again["ledger"] == backup["ledger"]
    target.close()


def test_a_backup_from_a_newer_server_is_refused(tmp_path):
    target = open_store(f"sqlite:///{tmp_path / 'x.sqlite'}")
    future = {"format": "lomas-jupyter-backup", "version": 3}
    with pytest.raises(InvalidRequest, match="version 3 is not supported"):
        restore_store(target, future)
    target.close()


def test_export_and_restore_commands(busy_store, tmp_path):
    url, _ = busy_store
    backup_file = tmp_path / "backup.yaml"
    summary = lomas_admin(url, "export", str(backup_file))
    assert summary["users"] == 2 and oct(backup_file.stat().st_mode & 0o777) == "0o600"
    target = f"sqlite:///{tmp_path / 'new.sqlite'}"
    restored = lomas_admin(target, "restore", str(backup_file))
    assert restored["archive"] == 3 and restored["budget_requests"] == 3
    assert lomas_admin(target, "budget-requests") == lomas_admin(url, "budget-requests")
    assert lomas_admin(target, "budget", "ana") == lomas_admin(url, "budget", "ana")
    message = lomas_admin(target, "restore", str(backup_file), expect=2)
    assert "empty admin store" in message
    (tmp_path / "junk.yaml").write_text("format: something-else\n")
    assert "not a lomas-jupyter-backup" in lomas_admin(
        f"sqlite:///{tmp_path / 'x.sqlite'}", "restore", str(tmp_path / "junk.yaml"), expect=2
    )
