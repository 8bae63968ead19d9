"""``lomas-server demo``: one command to a working service; re-running keeps what was spent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import requests

from tests.servers import free_port


def _start_demo(folder, port):
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(folder / "runtime")}
    process = subprocess.Popen(
        [sys.executable, "-m", "lomas_server", "demo", "--dir", str(folder), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode()
        try:
            if requests.get(f"http://127.0.0.1:{port}/lomas/api/v1/health", timeout=2).ok:
                return process
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("demo server did not start")


def _stop(process):
    process.send_signal(signal.SIGTERM)
    process.wait(20)


def test_demo_serves_sample_data_and_keeps_budget_across_runs(tmp_path):
    folder = tmp_path / "demo"
    port = free_port()
    process = _start_demo(folder, port)
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
        _stop(process)

    port2 = free_port()
    process = _start_demo(folder, port2)
    try:
        info2 = json.loads((folder / "connection.json").read_text())
        assert info2["token"] == info["token"] and info2["url"].endswith(str(port2))
        budget = requests.get(
            info2["url"] + "/lomas/api/v1/datasets/PENGUIN/budget",
            headers={"Authorization": f"token {info2['token']}"},
        ).json()
        assert budget["spent"]["epsilon"] == 0.5
    finally:
        _stop(process)


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
