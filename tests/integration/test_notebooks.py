"""The example notebooks, executed by nbval against a fresh demo server.

In lax mode: every cell must run without an error (a cell tagged raises-exception must
raise), and no output is compared. The notebooks are committed without outputs
(tests/test_examples.py): compared outputs pinned noisy numbers, budgets left by earlier
notebooks and the exact layout of each display, and went stale with each change to them;
what the magics show is checked in tests/jupyter/ instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import DemoProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    process = DemoProcess(tmp_path_factory.mktemp("nb") / "lomas-demo").start()
    yield process
    process.stop()


def test_example_notebooks_run_with_nbval(demo):
    env = {
        **os.environ,
        "LOMAS_CONNECTION_FILE": str(demo.folder / "connection.json"),
        "LOMAS_STORE_URL": f"sqlite:///{demo.folder / 'admin.sqlite'}",
        # so that '!lomas-admin' in a notebook finds this installation's command
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "JUPYTER_RUNTIME_DIR": str(demo.folder / "runtime"),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-p",
            "no:cacheprovider",
            "-q",
            "examples/quickstart.ipynb",
            "examples/opendp.ipynb",
            "examples/admin.ipynb",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
