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


def nbval(notebooks: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", *notebooks],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_example_notebooks_run_with_nbval(demo):
    done = nbval(
        ["examples/quickstart.ipynb", "examples/opendp.ipynb"],
        {
            "LOMAS_CONNECTION_FILE": str(demo.folder / "connection.json"),
            "JUPYTER_RUNTIME_DIR": str(demo.folder / "runtime"),
        },
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_the_synthetic_data_and_ml_notebook_runs_with_nbval(demo):
    """examples/synthetic_data_and_ml.ipynb, on the demo the notebooks above used: its
    fits and counts fit in what they left of the analyst's budget."""
    done = nbval(
        ["examples/synthetic_data_and_ml.ipynb"],
        {
            "LOMAS_CONNECTION_FILE": str(demo.folder / "connection.json"),
            "JUPYTER_RUNTIME_DIR": str(demo.folder / "runtime"),
        },
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_the_admin_notebook_runs_with_nbval(demo):
    """examples/admin.ipynb, as the demo's admin (the demo writes admin-connection.json
    beside the analyst's connection.json; AdminClient.discover() finds it in lomas-demo/)."""
    env = {
        "LOMAS_CONNECTION_FILE": str(demo.folder / "admin-connection.json"),
        "JUPYTER_RUNTIME_DIR": str(demo.folder / "runtime"),
    }
    done = nbval(["examples/admin.ipynb"], env)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
    # and again: it can be run more than once on the same service
    done = nbval(["examples/admin.ipynb"], env)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
