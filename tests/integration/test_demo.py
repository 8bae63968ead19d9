"""The demo: ``lomas-server demo`` (one command to a working service; re-running keeps what was
spent) and ``scripts/demo`` as a user runs it, JupyterLab included.

``scripts/demo`` installs into the repository's ``.venv-demo`` the first time (about a minute),
as it does for a user; ``LOMAS_DEMO_VENV=.venv`` lets it use the test environment instead."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.servers import DemoProcess

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo"
LAB_URL = re.compile(r"(http://127\.0\.0\.1:\d+)/lab/tree/(\S+)\?token=(\w+)")


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


class DemoScript:
    """``scripts/demo`` in its own process group, so that Ctrl-C reaches it as from a terminal."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.folder = tmp_path / "lomas-demo"
        self.output = tmp_path / "demo-output.txt"
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
        # A user's own server settings must not redirect the demo's notebooks.
        env.pop("LOMAS_URL", None)
        env.pop("LOMAS_TOKEN", None)
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [str(DEMO), "--dir", str(self.folder), *args],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.search(self.text())
            if found:
                return found
            if self.process.poll() is not None:
                pytest.fail(f"scripts/demo exited with {self.process.returncode}:\n{self.text()}")
            time.sleep(0.5)
        pytest.fail(f"scripts/demo printed no JupyterLab URL within {timeout} s:\n{self.text()}")

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C: SIGINT to the whole foreground group, as a terminal sends it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise


def demo_venv() -> Path:
    return (ROOT / os.environ.get("LOMAS_DEMO_VENV", ".venv-demo")).resolve()


def answers(url: str) -> bool:
    try:
        requests.get(url, timeout=5)
        return True
    except requests.ConnectionError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


async def run_in_kernel(lab: str, token: str, kernel_id: str, code: str) -> str:
    """Run code in a JupyterLab kernel over its websocket; return what it printed."""
    url = lab.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
    connection = await websocket_connect(
        HTTPRequest(url, headers={"Authorization": f"token {token}"})
    )
    msg_id = uuid.uuid4().hex
    request = {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "test",
            "session": uuid.uuid4().hex,
            "date": datetime.now(UTC).isoformat(),
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "channel": "shell",
        "buffers": [],
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    }
    await connection.write_message(json.dumps(request))
    printed, replied, idle = [], None, False
    try:
        while replied is None or not idle:
            raw = await asyncio.wait_for(connection.read_message(), 120)
            assert raw is not None, "the kernel's websocket closed"
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["header"]["msg_type"], message["content"]
            if kind == "stream":
                printed.append(content["text"])
            elif kind == "error":
                printed.append("\n".join(content["traceback"]))
            elif kind == "execute_reply":
                replied = content["status"]
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
    finally:
        connection.close()
    output = "".join(printed)
    assert replied == "ok", output
    return output


@pytest.mark.timeout(900)
def test_scripts_demo_opens_the_quickstart_notebook_in_jupyterlab_connected(tmp_path):
    demo = DemoScript(tmp_path)
    kernel_pid = None
    try:
        # The first run on a machine installs the demo's environment.
        found = demo.wait_for(LAB_URL, timeout=800)
        lab, path, token = found.groups()
        assert path == "quickstart.ipynb"
        auth = {"Authorization": f"token {token}"}
        assert requests.get(lab + "/api/status", headers=auth, timeout=10).status_code == 200
        assert requests.get(lab + "/api/status", timeout=10).status_code == 403
        page = requests.get(f"{lab}/lab/tree/{path}", params={"token": token}, timeout=30)
        assert page.status_code == 200 and "JupyterLab" in page.text

        # The notebook opened is the repository's quickstart (the analyst's own copy of it).
        opened = requests.get(f"{lab}/api/contents/{path}", headers=auth, timeout=30).json()
        example = json.loads((ROOT / "examples" / "quickstart.ipynb").read_text())
        sources = ["".join(cell["source"]) for cell in example["cells"]]
        assert [cell["source"] for cell in opened["content"]["cells"]] == sources

        info = json.loads((demo.folder / "connection.json").read_text())
        health = requests.get(info["url"] + "/lomas/api/v1/health", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"

        # A kernel of this JupyterLab runs the notebook's first cell (%lomas_connect with no
        # URL or file) and is connected to the demo; it runs on the demo's environment.
        first_code = next(c for c in opened["content"]["cells"] if c["cell_type"] == "code")
        assert "%lomas_connect" in first_code["source"]
        session = requests.post(
            lab + "/api/sessions",
            headers=auth,
            json={"path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}},
            timeout=120,
        )
        assert session.status_code == 201, session.text
        kernel_id = session.json()["kernel"]["id"]
        connected = asyncio.run(run_in_kernel(lab, token, kernel_id, first_code["source"]))
        assert info["url"] in connected
        probe = asyncio.run(
            run_in_kernel(lab, token, kernel_id, "import os, sys\nprint(os.getpid(), sys.prefix)")
        )
        pid, prefix = probe.split()
        kernel_pid = int(pid)
        assert Path(prefix).resolve() == demo_venv()

        # Ctrl-C stops JupyterLab, its kernel and the demo server.
        assert demo.interrupt() == 130
        assert not answers(lab + "/api/status")
        assert not answers(info["url"] + "/lomas/api/v1/health")
        deadline = time.monotonic() + 20
        while pid_alive(kernel_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pid_alive(kernel_pid)
    finally:
        demo.interrupt()
        if kernel_pid is not None and pid_alive(kernel_pid):
            os.kill(kernel_pid, signal.SIGKILL)

    if "LOMAS_DEMO_VENV" not in os.environ:
        # The user's path is the minimal install: none of the test set-up.
        site = next(demo_venv().glob("lib/python3*/site-packages"))
        for heavy in ("pyspark", "moto", "pytest", "ruff", "mypy", "schemathesis"):
            assert not (site / heavy).exists(), heavy


@pytest.mark.timeout(900)
def test_scripts_demo_without_lab_checks_the_server_and_stops(tmp_path):
    done = subprocess.run(
        [str(DEMO), "--dir", str(tmp_path / "lomas-demo"), "--no-lab", "--check"],
        cwd=tmp_path,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Noisy result" in done.stdout and "the demo works" in done.stdout
    assert "lab/tree" not in done.stdout
    assert not (tmp_path / "lomas-demo" / "jupyterlab.log").exists()
    info = json.loads((tmp_path / "lomas-demo" / "connection.json").read_text())
    assert not answers(info["url"] + "/lomas/api/v1/health")


def test_scripts_demo_help_describes_its_options(tmp_path):
    done = subprocess.run(
        [str(DEMO), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    for option in ("--dir", "--port", "--lab-port", "--no-lab", "--check"):
        assert option in done.stdout
    assert list(tmp_path.iterdir()) == []
    wrong = subprocess.run([str(DEMO), "--bogus"], capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 2 and "--help" in wrong.stderr
