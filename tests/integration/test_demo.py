"""``lomas-server demo``: one command to a working service; re-running keeps what was spent."""

from __future__ import annotations

import json
import subprocess
import sys

import requests

from tests.servers import DemoProcess


def test_demo_serves_sample_data_and_keeps_budget_across_runs(tmp_path):
    folder = tmp_path / "demo"
    demo = DemoProcess(folder).start()
    port = demo.port
    try:
        info = json.loads((folder / "connection.json").read_text())
        assert info["url"] == f"http://127.0.0.1:{port}"
        assert info["user"] == "demo" and info["datasets"] == ["PENGUIN", "TITANIC"]
        assert oct((folder / "connection.json").stat().st_mode & 0o777) == "0o600"
        headers = {"Authorization": f"token {info['token']}"}
        api = info["url"] + "/lomas/api/v1"
        names = [
            d["name"] for d in requests.get(api + "/datasets", headers=headers).json()["datasets"]
        ]
        assert names == ["PENGUIN", "TITANIC"]
        reply = requests.post(
            api + "/datasets/PENGUIN/smartnoise-sql",
            headers=headers,
            json={
                "query": "SELECT species, COUNT(*) AS n FROM df GROUP BY species",
                "epsilon": 0.5,
            },
        )
        assert reply.status_code == 200
    finally:
        demo.stop()

    again = DemoProcess(folder).start()
    port2 = again.port
    try:
        info2 = json.loads((folder / "connection.json").read_text())
        assert info2["token"] == info["token"] and info2["url"].endswith(str(port2))
        budget = requests.get(
            info2["url"] + "/lomas/api/v1/datasets/PENGUIN/budget",
            headers={"Authorization": f"token {info2['token']}"},
        ).json()
        assert budget["spent"]["epsilon"] == 0.5
    finally:
        again.stop()


def test_demo_setup_only_prints_how_to_connect(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lomas_server",
            "demo",
            "--dir",
            str(tmp_path / "d"),
            "--setup-only",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "curl -H" in done.stdout and "connection file" in done.stdout
    assert (tmp_path / "d" / "admin.sqlite").exists()
