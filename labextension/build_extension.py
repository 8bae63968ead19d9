"""Builds the JupyterLab extension into the Python package: hatch-jupyter-builder's build
function (pyproject.toml, ``[tool.hatch.build.hooks.jupyter-builder]``).

Unlike its stock ``npm_builder``, which runs ``npm install`` and a build on every install, this
installs exactly the lock file (``npm ci``) when ``node_modules`` is missing or older than the
lock, and builds only when a source is newer than the built extension. A ``pip install -e .``
with nothing changed then costs no npm at all, and a wheel built from the sdist (which carries
the built extension) needs no Node.js.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE.parent / "lomas_jupyter" / "labextension"
# What the build reads; node_modules follows package-lock.json.
SOURCES = ("src", "style", "package.json", "package-lock.json", "tsconfig.json")

log = logging.getLogger(__name__)


def _newest(path: Path) -> float:
    if path.is_dir():
        return max((_newest(p) for p in path.iterdir()), default=0.0)
    return path.stat().st_mtime if path.exists() else 0.0


def is_stale() -> bool:
    """Whether a source changed since the last build (the builder writes package.json last)."""
    built = OUTPUT / "package.json"
    if not (built.exists() and (OUTPUT / "static" / "style.js").exists()):
        return True
    return max(_newest(HERE / name) for name in SOURCES) > built.stat().st_mtime


def build(target_name: str, version: str) -> None:
    if not is_stale():
        log.info("lomas-jupyter: the JupyterLab extension is up to date")
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "Building lomas-jupyter's JupyterLab extension from source needs Node.js (20 or "
            "newer) and npm; a wheel or an sdist of lomas-jupyter has it built already."
        )
    installed = HERE / "node_modules" / ".package-lock.json"
    if not installed.exists() or _newest(installed) < _newest(HERE / "package-lock.json"):
        log.info("lomas-jupyter: npm ci (the extension's build tools, from package-lock.json)")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)
    log.info("lomas-jupyter: building the JupyterLab extension")
    subprocess.run([npm, "run", "build"], cwd=HERE, check=True)
