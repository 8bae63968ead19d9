"""binder/start really brings the demo server up before it runs the notebook server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, os, urllib.request
from lomas_jupyter import Client
client = Client.discover()
print(json.dumps({"datasets": [d.name for d in client.datasets()],
                  "store": os.environ["LOMAS_STORE_URL"]}))
"""


def test_start_script_serves_the_demo_to_the_command_it_runs(tmp_path):
    demo_dir = tmp_path / "lomas-demo"
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "LOMAS_DEMO_PORT": str(free_port()),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    env.pop("LOMAS_URL", None)
    env.pop("LOMAS_TOKEN", None)
    try:
        done = subprocess.run(
            [str(ROOT / "binder" / "start"), sys.executable, "-c", PROBE],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr + (demo_dir / "server.log").read_text()
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen["datasets"] == ["PENGUIN", "TITANIC"]
        assert seen["store"].endswith("lomas-demo/admin.sqlite")
    finally:
        pid_file = demo_dir / "server.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass


def test_binder_installs_the_project_and_a_notebook_front_end():
    assert "pip install" in (ROOT / "binder" / "postBuild").read_text()
    assert "jupyterlab" in (ROOT / "binder" / "requirements.txt").read_text()
    assert os.access(ROOT / "binder" / "start", os.X_OK) and os.access(
        ROOT / "binder" / "postBuild", os.X_OK
    )
