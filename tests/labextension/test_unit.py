"""The JupyterLab extension: its TypeScript unit tests (Vitest, ``npm test`` in labextension/)
pass, and the package installs it prebuilt and enabled."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LABEXTENSION = ROOT / "labextension"

pytestmark = pytest.mark.labextension


def _npm() -> str:
    npm = shutil.which("npm")
    # Not a skip: without npm the extension cannot be built or tested at all.
    assert npm, "the JupyterLab extension's tests need Node.js (20 or newer) and npm"
    return npm


@pytest.mark.timeout(900)
def test_the_typescript_unit_tests_pass():
    npm = _npm()
    if not (LABEXTENSION / "node_modules" / ".package-lock.json").exists():
        # Exactly the lock file's versions, as the package build installs them.
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=LABEXTENSION, check=True, timeout=600
        )
    done = subprocess.run(
        [npm, "test"],
        cwd=LABEXTENSION,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0", "CI": "true"},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-8000:]
    summary = re.search(r"Tests\s+(\d+) passed \((\d+)\)", output)
    assert summary, output[-3000:]
    assert summary.group(1) == summary.group(2) and int(summary.group(1)) > 0, summary.group(0)


def test_the_package_installs_the_extension_prebuilt_and_enabled():
    listed = subprocess.run(
        [sys.executable, "-m", "jupyterlab.labextensions", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    output = listed.stdout + listed.stderr
    line = next((ln for ln in output.splitlines() if "lomas-jupyter" in ln), "")
    assert re.search(r"lomas-jupyter v\S+ .*enabled.*OK", line), output
    installed = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "lomas-jupyter"
    metadata = json.loads((installed / "package.json").read_text())
    assert (installed / metadata["jupyterlab"]["_build"]["load"]).is_file()
    assert json.loads((installed / "install.json").read_text())["packageName"] == "lomas-jupyter"
