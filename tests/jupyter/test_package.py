"""The package's shape: what it exports, how its modules import each other, and that a kernel
using it never loads the server's web stack."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import lomas_jupyter

PACKAGE = Path(lomas_jupyter.__file__).parent
WEB_STACK = ("tornado", "jupyter_server")


def test_the_public_surface_is_all_of_it():
    assert len(set(lomas_jupyter.__all__)) == len(lomas_jupyter.__all__)
    for name in lomas_jupyter.__all__:
        assert getattr(lomas_jupyter, name) is not None
    defined = {n for n in vars(lomas_jupyter) if not n.startswith("_") and n != "annotations"}
    assert defined - {"Any"} == set(lomas_jupyter.__all__), "exported, or imported privately"
    public_modules = [p.name for p in PACKAGE.glob("*.py") if not p.name.startswith("_")]
    assert public_modules == [], "the implementation lives in private modules"


def _package_imports(path: Path) -> set[str]:
    """The package's modules that ``path`` imports, those inside functions too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name.split(".", 1)[1] for name in found if name.startswith("lomas_jupyter.")}


def test_modules_import_one_way():
    graph = {p.stem: _package_imports(p) for p in PACKAGE.glob("_*.py") if p.stem != "__init__"}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "import cycle: " + " -> ".join((*path, module))
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
    assert "_client" not in graph["_opendp"] and "_magics" not in graph["_client"]


def test_no_module_is_long():
    lengths = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert max(lengths.values()) <= 400, lengths


KERNEL = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell

import lomas_jupyter

seen = {}
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "lomas_jupyter")
seen["load_ext"] = sorted(set(sys.modules) & set(WEB_STACK))
ip.run_line_magic("lomas_connect", sys.argv[1] + " --token " + sys.argv[2] + " --dataset PENGUIN")
frame = ip.run_cell_magic("lomas_sql", "--dummy", "SELECT COUNT(*) AS n FROM df")
assert list(frame.columns) == ["n"], frame
seen["sql --dummy"] = sorted(set(sys.modules) & set(WEB_STACK))
try:
    frame = ip.run_cell_magic("lomas_opendp", "--dummy", "aggregates: [{op: count}]")
    assert list(frame.columns) == ["count"], frame
    seen["opendp --dummy"] = sorted(set(sys.modules) & set(WEB_STACK))
except Exception as err:  # reported, so that the steps before it are still judged
    seen["opendp --dummy"] = f"failed: {type(err).__name__}: {err}"
try:
    cell = "{model: pca, features: [bill_length_mm, body_mass_g], options: {n_components: 2}}"
    model = ip.run_cell_magic("lomas_diffprivlib", "--dummy", cell)
    assert model.components_.shape == (2, 2), model
    seen["diffprivlib --dummy"] = sorted(set(sys.modules) & set(WEB_STACK))
except Exception as err:
    seen["diffprivlib --dummy"] = f"failed: {type(err).__name__}: {err}"
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def kernel_modules(admin, server):
    """The web-stack modules loaded in a fresh kernel after each step of a session."""
    name = f"user-{uuid.uuid4().hex[:10]}"
    token = admin.add_user(name)
    admin.grant(name, "PENGUIN", 1.0, 0.0)
    code = f"WEB_STACK = {WEB_STACK!r}\n" + KERNEL
    path = os.pathsep.join(filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code, server.url, token],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_kernel_never_loads_the_web_stack(kernel_modules):
    assert kernel_modules["load_ext"] == []
    assert kernel_modules["sql --dummy"] == []


def test_an_opendp_dummy_run_does_not_load_the_web_stack(kernel_modules):
    assert kernel_modules["opendp --dummy"] == []


def test_a_model_fitted_on_dummy_rows_does_not_load_the_web_stack(kernel_modules):
    assert kernel_modules["diffprivlib --dummy"] == []
