"""The example notebooks are committed as sources: no outputs, counts or timings.

A committed output goes stale as soon as a display, a budget or a server changes, and a
reader takes it for what the notebook does today. tests/integration/test_notebooks.py runs
them (nbval in lax mode: every cell must run, and no output is compared), and
tests/jupyter/ checks what the magics show.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
CLEAR = (
    "jupyter nbconvert --clear-output --inplace "
    "--ClearOutputPreprocessor.remove_metadata_fields=execution"
)


def test_there_are_notebooks_to_check():
    assert {p.name for p in NOTEBOOKS} >= {
        "quickstart.ipynb",
        "opendp.ipynb",
        "admin.ipynb",
        "synthetic_data_and_ml.ipynb",
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_committed_notebook_holds_no_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    stale = []
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            stale.append(f"cell {number}: outputs")
        if cell.get("execution_count") is not None:
            stale.append(f"cell {number}: execution count")
        if "execution" in cell.metadata:
            stale.append(f"cell {number}: execution timings")
        # With no stored output to compare, nbval would fail such a cell as soon as it prints.
        if "nbval-check-output" in cell.metadata.get("tags", ()):
            stale.append(f"cell {number}: tag nbval-check-output")
    assert not stale, f"{path.name}: " + "; ".join(stale) + f". Clear them: {CLEAR} {path}"
