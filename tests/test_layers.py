"""The layers of docs/ARCHITECTURE.md import one way: handlers -> service -> engines,
accounting, store, datasets; engines and datasets never import each other; leaf modules
import no layer. Every import in every module counts, those inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lomas_server

PACKAGE = Path(lomas_server.__file__).parent
LAYERS = ("handlers", "service", "engines", "datasets", "accounting", "store")
# What each layer may import of the others (leaf modules at the top are open to all).
ALLOWED = {
    "handlers": {"service"},
    "service": {"engines", "datasets", "accounting", "store"},
    "engines": {"accounting"},
    "datasets": set(),
    "accounting": set(),
    "store": {"accounting"},
}
# Modules around the layers that wire them (the app) or that the client shares.
WIRING = {"__init__", "__main__", "app", "demo", "admin_cli", "admin_cli_options", "standalone"}


def _part(module: str) -> str | None:
    """The layer (or top-level module) of a lomas_server module name."""
    parts = module.split(".")
    if parts[0] != "lomas_server" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # "from lomas_server import limits" names a module too
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_one_way(path):
    relative = path.relative_to(PACKAGE)
    own = relative.parts[0] if len(relative.parts) > 1 else relative.stem
    if own in WIRING:
        return
    wrong = []
    for line, module in _imports(path):
        target = _part(module)
        if target is None or target == own:
            continue
        if own in LAYERS:
            if target in LAYERS and target not in ALLOWED[own]:
                wrong.append(f"line {line}: {own} imports {module}")
        elif target in LAYERS or target in WIRING:
            # a leaf module (metadata, errors, limits, ...) imports no layer
            wrong.append(f"line {line}: leaf module {own} imports {module}")
    assert not wrong, f"{relative}:\n" + "\n".join(wrong)


def test_the_rule_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from lomas_server.engines.spark_reader import x\n")
    assert (2, "lomas_server.engines.spark_reader") in _imports(sample)


# Modules that turn bytes into objects (and so can run code): the server never deserializes
# what a client sends (synthesizers and models included), so it imports none of them.
DESERIALIZERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal"}
DESERIALIZERS |= {"shelve", "jsonpickle", "skops"}


def _deserializing(path: Path) -> list[str]:
    """Where a module could turn bytes into objects."""
    found = [
        f"line {line}: imports {module}"
        for line, module in _imports(path)
        if module.split(".")[0] in DESERIALIZERS
    ]
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        # yaml.load / yaml.unsafe_load build arbitrary objects; safe_load does not
        if isinstance(node, ast.Attribute) and node.attr in ("unsafe_load", "full_load", "load"):
            if isinstance(node.value, ast.Name) and node.value.id == "yaml":
                found.append(f"line {node.lineno}: yaml.{node.attr}")
        # pandas' read_pickle and numpy's allow_pickle=True unpickle too
        if isinstance(node, ast.Attribute) and node.attr == "read_pickle":
            found.append(f"line {node.lineno}: read_pickle")
        if isinstance(node, ast.keyword) and node.arg == "allow_pickle":
            if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                found.append(f"line {node.lineno}: allow_pickle")
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_can_deserialize_objects(path):
    found = _deserializing(path)
    assert not found, f"{path.relative_to(PACKAGE)}:\n" + "\n".join(found)


def test_the_deserialization_rule_sees_what_it_looks_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import yaml\n"
        "def f(b):\n"
        "    from joblib import load\n"
        "    import pickle\n"
        "    np.load(b, allow_pickle=True)\n"
        "    yaml.safe_load(b)\n"
        "    return yaml.load(b), pd.read_pickle(b), pickle.loads(b)\n"
    )
    assert _deserializing(sample) == [
        "line 3: imports joblib",
        "line 3: imports joblib.load",
        "line 4: imports pickle",
        "line 5: allow_pickle",
        "line 7: yaml.load",
        "line 7: read_pickle",
    ]
